"""The `earmark` command: parses the subcommand and hands its flags to the step.

Every user error prints one line (`earmark: error: ...`) and exits 2; `--verbose`
shows the traceback too.
"""
import argparse
import errno
import logging
import os
import re
import sys
import warnings

COMMANDS = {
    "prepare": "labeled recordings → sharded log-mel TFRecords (Beam)",
    "label": "a trained model over a corpus → labeled time segments (Beam)",
    "train": "prepared patches → transfer-learned classifier (model.keras + model.json)",
    "evaluate": "score a trained model on prepared data or labeled clips (JSON + plots)",
    "report": "a self-contained HTML report of a labeling run and/or a trained model",
    "demo": "the whole product offline in ~1 minute: generate, prepare, train, label, report",
}


def _prepare(argv):
    from earmark.pipelines import prepare
    prepare.main(argv)


def _label(argv):
    from earmark.pipelines import label
    label.main(argv)


def _demo(argv):
    from earmark import demo
    demo.main(argv)


def _report(argv):
    from earmark import report
    report.main(argv)


def _train(argv):
    from earmark.model import train
    train.main(argv)


def _evaluate(argv):
    from earmark.model import evaluate
    evaluate.main(argv)


HANDLERS = {"prepare": _prepare, "label": _label, "demo": _demo, "train": _train,
            "evaluate": _evaluate, "report": _report}


def _argparse_error_as_user_error(parser, message):
    """argparse's own errors (unknown flag, bad choice, missing value) as one line with the
    fix, like every other user error, instead of a usage block."""
    from earmark.model.errors import UserError
    raise UserError(f"{parser.prog}: {message} (see '{parser.prog} --help')")


def _quiet_beam_root_records(record) -> bool:
    """False for Beam's own below-error records that bypass its named loggers."""
    return record.levelno >= logging.ERROR or "apache_beam" not in record.pathname


def _drop_user_error_tracebacks(record) -> bool:
    """False for a log record carrying the traceback of a UserError or a full disk (Beam
    logs a failed step's exception before re-raising it): the CLI prints those as one line."""
    from earmark.model.errors import UserError
    error = record.exc_info[1] if record.exc_info else None
    return not (isinstance(error, UserError) or (error is not None and disk_full(error)))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    parser = argparse.ArgumentParser(
        prog="earmark",
        description="Label sound events in large audio collections by transfer learning.",
        epilog="commands:\n" + "\n".join(f"  {k:<9} {v}" for k, v in COMMANDS.items())
               + "\n\nrun 'earmark COMMAND --help' for a command's flags; "
                 "--verbose shows tracebacks.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    # the subcommands' parsers live in pipelines/ and model/; under this command their
    # errors read like every other user error (restored on return: tests call main in-process)
    default_error = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = _argparse_error_as_user_error
    try:
        return _run(parser, argv, verbose)
    finally:
        argparse.ArgumentParser.error = default_error


def _run(parser, argv, verbose) -> int:
    from earmark.model.errors import UserError
    try:
        args = parser.parse_args(argv[:1])
    except UserError as e:
        print(f"earmark: error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("apache_beam", "absl", "tensorflow"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:  # Beam also logs through the root logger (resource notices, batch stats)
        for handler in logging.getLogger().handlers:
            handler.addFilter(_quiet_beam_root_records)
            handler.addFilter(_drop_user_error_tracebacks)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose else "3")
    if not verbose:  # google-api-core's Python-support notices are not the user's business
        warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        HANDLERS[args.command](argv[1:])
    except UserError as e:
        if verbose:
            raise
        print(f"earmark: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("earmark: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        full = disk_full(e, _output_flag(argv[1:]))
        if full is None or verbose:
            raise
        print(f"earmark: error: {full}", file=sys.stderr)
        return 2
    return 0


def one_line(error) -> str:
    """A UserError's message on one line, without the step name Beam appends when the
    error was raised inside a pipeline step (` [while running 'Step']`)."""
    text = re.sub(r"( \[while running '[^']*'\])+$", "", str(error))
    return " ".join(text.splitlines())


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _output_flag(argv):
    """The command's output path as given (`--output`, `--model-dir`, `--report`), or None."""
    for i, a in enumerate(argv):
        for flag in ("--output", "--model-dir", "--report"):
            if a == flag and i + 1 < len(argv):
                return f"{flag} {argv[i + 1]}"
            if a.startswith(flag + "="):
                return f"{flag} {a.split('=', 1)[1]}"
    return None


def disk_full(error, output=None):
    """The one-line message for a write that ran out of disk space (ENOSPC, or a quota)
    anywhere in `error`'s chain (Beam re-raises a step's OSError as a RuntimeError holding
    its text), naming the file when the error does, else `output` (the command's output
    flag and path); None for any other error."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        text = str(error)
        if isinstance(error, OSError) and error.errno in _NO_SPACE:
            where = error.filename
        elif any(f"[Errno {n}]" in text for n in _NO_SPACE):
            found = re.search(r"\[Errno \d+\] [^:']*: '([^']*)'", text)
            where = found.group(1) if found else None
        else:
            error = error.__cause__ or error.__context__
            continue
        where = f"writing {where}" if where else f"writing {output}" if output else "writing"
        return f"no space left on the disk {where}; free space on it or write to another disk"
    return None
