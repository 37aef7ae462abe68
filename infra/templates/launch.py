"""Dataflow Flex Template launcher for `earmark prepare`, `earmark label` and `earmark embed`.

Template parameters are snake_case (`min_duration`); Dataflow hands each one to this file
as `--min_duration=0.5`. `to_cli_argv` turns them into the CLI's own flags:

    --min_duration=0.5          ->  --min-duration 0.5
    --incremental=true          ->  --incremental        (false, 0, no: left out)
    --threshold=snore=0.8,0.6   ->  --threshold snore=0.8 --threshold 0.6   (repeatable flags)
    --hop_seconds=              ->  (left out: the CLI default applies)

and leaves every other argument (Beam's options: --runner, --temp_location, ...) as it is.
`main` runs the pipeline named by $EARMARK_PIPELINE (set in the image: prepare, label or embed).
"""
import argparse
import importlib
import logging
import os
import sys

PIPELINES = ("prepare", "label", "embed")
TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no", "")


def long_flag(action: argparse.Action) -> str:
    """The action's `--long-name` option string."""
    return max(action.option_strings, key=len)


def parameter_name(action: argparse.Action) -> str:
    """The template parameter name of a CLI flag: `--min-duration` -> `min_duration`."""
    return long_flag(action)[2:].replace("-", "_")


def cli_actions(parser: argparse.ArgumentParser) -> dict:
    """Template parameter name -> argparse action, for every flag of `parser` but --help."""
    return {parameter_name(a): a for a in parser._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)}


def _cli_args(action: argparse.Action, name: str, value: str) -> list:
    """The CLI arguments for one template parameter's value."""
    flag = long_flag(action)
    if isinstance(action, argparse._StoreTrueAction):
        word = value.strip().lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            raise SystemExit(f"launch: --{name}={value!r}: expected true or false")
        return [flag] if word in TRUE_WORDS else []
    if isinstance(action, argparse._AppendAction):
        return [arg for item in value.split(",") if item.strip() for arg in (flag, item.strip())]
    return [flag, value] if value != "" else []


def to_cli_argv(argv: list, parser: argparse.ArgumentParser) -> list:
    """Template-style arguments -> the CLI's; arguments the CLI does not define pass through."""
    actions, out, rest = cli_actions(parser), [], list(argv)
    while rest:
        arg = rest.pop(0)
        name, has_value, value = arg[2:].partition("=") if arg.startswith("--") else (None, "", "")
        action = actions.get(name)
        if action is None:
            out.append(arg)
            continue
        if not has_value:  # `--name value`, or a bare boolean `--name`
            if isinstance(action, argparse._StoreTrueAction):
                value = "true"
            elif rest:
                value = rest.pop(0)
            else:
                raise SystemExit(f"launch: --{name} needs a value")
        out += _cli_args(action, name, value)
    return out


def main(argv=None):
    """Run $EARMARK_PIPELINE's `run()` with the converted arguments."""
    name = os.environ.get("EARMARK_PIPELINE", "")
    if name not in PIPELINES:
        raise SystemExit(f"launch: set EARMARK_PIPELINE to one of {', '.join(PIPELINES)} "
                         f"(got {name!r})")
    pipeline = importlib.import_module(f"earmark.pipelines.{name}")
    cli_argv = to_cli_argv(sys.argv[1:] if argv is None else list(argv), pipeline.build_arg_parser())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("earmark.launch").info("earmark %s %s", name, " ".join(cli_argv))
    return pipeline.run(cli_argv)


if __name__ == "__main__":
    main()
