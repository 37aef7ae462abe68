"""The `earmark` command: parses the subcommand and hands its flags to the step.

Every user error prints one line (`earmark: error: ...`) and exits 2; `--verbose`
shows the traceback too.
"""
import argparse
import logging
import os
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
    from pipelines import prepare
    prepare.main(argv)


def _label(argv):
    from pipelines import label
    label.main(argv)


def _demo(argv):
    from earmark import demo
    demo.main(argv)


def _report(argv):
    from earmark import report
    report.main(argv)


def _train(argv):
    from model import train
    train.main(argv)


def _evaluate(argv):
    from model import evaluate
    evaluate.main(argv)


HANDLERS = {"prepare": _prepare, "label": _label, "demo": _demo, "train": _train,
            "evaluate": _evaluate, "report": _report}


def _argparse_error_as_user_error(parser, message):
    """argparse's own errors (unknown flag, bad choice, missing value) as one line with the
    fix, like every other user error, instead of a usage block."""
    from model.errors import UserError
    raise UserError(f"{parser.prog}: {message} (see '{parser.prog} --help')")


def _quiet_beam_root_records(record) -> bool:
    """False for Beam's own below-error records that bypass its named loggers."""
    return record.levelno >= logging.ERROR or "apache_beam" not in record.pathname


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
    from model.errors import UserError
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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose else "3")
    if not verbose:  # google-api-core's Python-support notices are not the user's business
        warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        HANDLERS[args.command](argv[1:])
    except UserError as e:
        if verbose:
            raise
        print(f"earmark: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("earmark: interrupted", file=sys.stderr)
        return 130
    return 0
