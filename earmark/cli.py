"""The `earmark` command: parses the subcommand and hands its flags to the step.

Every user error prints one line (`earmark: error: ...`) and exits 2; `--verbose`
shows the traceback too.
"""
import argparse
import errno
import importlib
import logging
import os
import re
import sys
import warnings

# name → (summary, the module whose `main(argv)` runs it, the module whose
# `build_arg_parser()` defines its flags). A module is imported only when its command runs,
# and `earmark COMMAND --help` imports only the flags module: `earmark label --help` and
# `earmark prepare --help` load neither Beam nor TensorFlow (well under a second).
COMMANDS = {
    "prepare": ("labeled recordings → sharded log-mel TFRecords (Beam)",
                "earmark.pipelines.prepare", "earmark.pipelines.prepare_flags"),
    "label": ("a trained model over a corpus → labeled time segments (Beam)",
              "earmark.pipelines.label", "earmark.pipelines.label_flags"),
    "embed": ("every window of a corpus → its embedding (and scores), sharded Parquet (Beam)",
              "earmark.pipelines.embed", "earmark.pipelines.embed_flags"),
    "search": ("audio examples → the most similar windows of an embedded corpus",
               "earmark.search_page", "earmark.pipelines.search_flags"),
    "train": ("prepared patches → transfer-learned classifier (model.keras + model.json)",
              "earmark.commands.train", "earmark.commands.train"),
    "evaluate": ("score a trained model on prepared data or labeled clips (JSON + plots)",
                 "earmark.commands.evaluate", "earmark.commands.evaluate"),
    "report": ("a self-contained HTML report of a labeling run and/or a trained model",
               "earmark.report", "earmark.report"),
    "review": ("choose what to verify from a label run → review.csv, Raven tables, review.html",
               "earmark.review", "earmark.review"),
    "demo": ("the whole product offline in ~1 minute: generate, prepare, train, label, report",
             "earmark.demo", "earmark.demo"),
}


def build_arg_parser() -> argparse.ArgumentParser:
    """`earmark COMMAND ...`: one sub-command per entry of COMMANDS. Each sub-parser here only
    names its command; the command's own parser (in its module, defined once) parses the rest
    when the command runs, so its flags, help and examples live next to its code."""
    from earmark.pipelines.flags import ArgumentParser
    parser = ArgumentParser(
        prog="earmark",
        description="Label sound events in large audio collections by transfer learning.",
        epilog="run 'earmark COMMAND --help' for a command's flags; "
               "--verbose shows tracebacks.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                                     required=True, parser_class=ArgumentParser)
    for name, (summary, _, _) in COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def run_command(command: str, argv) -> None:
    """The command's module's `main(argv)`; with -h/--help, its flags module's help alone."""
    _, module, flags_module = COMMANDS[command]
    if "-h" in argv or "--help" in argv:
        importlib.import_module(flags_module).build_arg_parser().parse_known_args(argv)
    importlib.import_module(module).main(argv)


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
    parser = build_arg_parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    return _run(parser, argv, verbose)


def main_then_exit() -> None:
    """The installed `earmark` command and `python -m earmark`: `main()`, then the process
    ends without the interpreter's teardown, which frees TensorFlow's and Beam's objects one
    by one: 1.2 s after a `label` run, 5 % of a 20-minute recording's wall time (measured
    when this was added; no docs page lists it).
    Unreachable objects are collected first (closing any file left open) and the exit
    handlers run (logging, temporary folders), so nothing written is lost. A command that
    raised exits the usual way, with its traceback."""
    import atexit
    import gc
    code = main()
    gc.collect()
    atexit._run_exitfuncs()   # what the interpreter runs at exit (private, stable since 2.x)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run(parser, argv, verbose) -> int:
    from earmark.model.errors import UserError
    try:  # the command's own parser reads the rest (`run_command`)
        args, _ = parser.parse_known_args(argv)
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
    quiet_libraries(verbose)
    try:
        run_command(args.command, argv[1:])
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


def quiet_libraries(verbose: bool) -> None:
    """Users see earmark's lines only: TensorFlow's C++ start-up notices (cuDNN/cuFFT/cuBLAS
    factories, CPU features) and google-api-core's Python-support FutureWarnings are hidden
    unless --verbose, in this process and, through the environment, in the worker processes
    Beam starts (`--direct_running_mode multi_processing`, portable workers)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose else "3")
    if verbose:
        return
    warnings.filterwarnings("ignore", category=FutureWarning)
    inherited = os.environ.get("PYTHONWARNINGS", "")
    if "ignore::FutureWarning" not in inherited.split(","):
        os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [inherited, "ignore::FutureWarning"]))


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
