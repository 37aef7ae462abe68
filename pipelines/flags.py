"""The argument parser of every `earmark` command: argparse's own errors (unknown flag, bad
choice, missing value) raise a one-line `UserError` naming the fix, like every other user
error, instead of printing a usage block and exiting.

Here (not in earmark/) because the Beam pipelines' parsers use it too and pipelines/ never
imports earmark/; not in model/, which knows no argparse.
"""
import argparse

from earmark.model.errors import UserError
from earmark.model.precision import DEFAULT_PRECISION, PRECISIONS


class ArgumentParser(argparse.ArgumentParser):
    """argparse.ArgumentParser whose `error()` raises
    `UserError("PROG: MESSAGE (see 'PROG --help')")`."""

    def error(self, message):
        raise UserError(f"{self.prog}: {message} (see '{self.prog} --help')")


# --- flags several commands share, defined once ---------------------------------------------

def add_output_folder(p: argparse.ArgumentParser) -> None:
    """--output of a Beam pipeline (`earmark prepare`, `earmark label`)."""
    p.add_argument("--output", required=True, help="output folder, local or gs://")


def add_overwrite(p: argparse.ArgumentParser) -> None:
    """--overwrite of a command that claims its --output (pipelines/outputs.py `claim`)."""
    p.add_argument("--overwrite", action="store_true",
                   help="--output is not empty: remove what earmark wrote there before (listed "
                        "in its earmark_outputs.json) and nothing else, then run")


RAVEN_LABEL_COLUMN = "Annotation"   # --label-column with --annotations
MANIFEST_LABEL_COLUMN = "label"     # --label-column with --manifest


def add_label_column(p: argparse.ArgumentParser) -> None:
    """--label-column of a command that reads --annotations or --manifest: one flag, whose
    default follows the input (`resolve_label_column`)."""
    p.add_argument("--label-column", default=None,
                   help=f"the column holding the label: with --annotations, Raven tables' "
                        f"(default {RAVEN_LABEL_COLUMN}); with --manifest, the manifest's "
                        f"(default {MANIFEST_LABEL_COLUMN}; e.g. category for ESC-50)")


def resolve_label_column(args) -> None:
    """Fill in --label-column's default for the input given (in place, once, right after
    parsing): Annotation with --annotations, label otherwise."""
    if args.label_column is None:
        args.label_column = (RAVEN_LABEL_COLUMN if getattr(args, "annotations", None)
                             else MANIFEST_LABEL_COLUMN)


def add_corpus_flags(p: argparse.ArgumentParser) -> None:
    """--input or --manifest, and the manifest's column flags: the corpus `label` and
    `embed` read (pipelines/corpus.py)."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="folder (searched recursively) or glob; local or gs://")
    src.add_argument("--manifest", help="CSV with a path column (or the one --path-column "
                                        "names); local or gs://")
    add_manifest_flags(p)


def add_manifest_flags(p: argparse.ArgumentParser, split: str = None) -> None:
    """The flags choosing a --manifest's columns (pipelines/corpus.py `ManifestColumns`), so
    a dataset's metadata CSV is read as it ships. `split`: "prepare" adds --group-column,
    --split-column, --test-values and --validation-values; "evaluate" adds --split-column and
    --test-values (the rows evaluated); None: neither (`earmark label`)."""
    p.add_argument("--path-column", default=None,
                   help="with --manifest: the column holding each file's path (default path; "
                        "e.g. filename for ESC-50), or a template of columns in braces, e.g. "
                        "'fold{fold}/{slice_file_name}' for UrbanSound8K")
    p.add_argument("--audio-root", default=None,
                   help="with --manifest: the folder its relative paths are relative to "
                        "(default: the manifest's own folder; e.g. ESC-50's audio/ beside "
                        "meta/esc50.csv); local or gs://")
    if split == "prepare":
        p.add_argument("--group-column", default=None,
                       help="with --manifest: files sharing a value never span two splits "
                            "(default: the column group, when there is one; e.g. src_file "
                            "for ESC-50, fsID for UrbanSound8K)")
        p.add_argument("--split-column", default=None,
                       help="with --manifest: a column whose values choose the split, e.g. "
                            "fold; rows with --test-values are test, the others train and "
                            "validation by --split's train:validation ratio")
        p.add_argument("--test-values", default=None,
                       help="with --split-column: its values of the test rows, comma-separated "
                            "(e.g. 5)")
        p.add_argument("--validation-values", default=None,
                       help="with --split-column: its values of the validation rows (e.g. "
                            "4); the other rows are then all train")
    elif split == "evaluate":
        p.add_argument("--split-column", default=None,
                       help="with --manifest: evaluate only the rows whose value in this "
                            "column is one of --test-values (e.g. fold)")
        p.add_argument("--test-values", default=None,
                       help="with --split-column: the values of the rows to evaluate, "
                            "comma-separated (e.g. 5)")


def add_precision(p: argparse.ArgumentParser, help: str) -> None:
    """--precision of a command that runs a model's image base (model/precision.py)."""
    p.add_argument("--precision", default=DEFAULT_PRECISION, choices=PRECISIONS, help=help)


def add_annotation_encoding(p: argparse.ArgumentParser) -> None:
    """--annotation-encoding of a command that reads --annotations (model/annotations.py)."""
    p.add_argument("--annotation-encoding", default=None,
                   help="text encoding of the annotation tables when they are not UTF-8 and "
                        "not Windows-1252 (e.g. latin-1, utf-16, shift_jis); default: UTF-8, "
                        "UTF-16 with a byte-order mark, else Windows-1252 with a note")


# --- values checked as they are parsed: argparse `type=`s -----------------------------------
# Each raises a one-line UserError naming the flag, the value and what a good one is
# (`earmark: error: --threshold 2: must be a number in [0, 1], e.g. 0.7`) before anything
# is read or written; argparse passes a UserError raised by a `type=` through as it is.

_INFINITY = float("inf")  # v < _INFINITY: finite (False for nan too)

def shown(text: str) -> str:
    """A flag's value as a message shows it: as typed, quoted when empty or holding spaces."""
    return text if text and not any(c.isspace() for c in text) else repr(text)


def checked(flag: str, parse, example) -> callable:
    """An argparse `type=` for `flag`: `parse(text)` → the value; its ValueError("must be
    ...") → UserError("FLAG TEXT: must be ..., e.g. EXAMPLE")."""
    def convert(text):
        try:
            return parse(text)
        except ValueError as e:
            raise UserError(f"{flag} {shown(text)}: {e}, e.g. {example}") from None
    return convert


def number(kind, ok, what: str) -> callable:
    """text → `kind(text)` when `ok` of it, else ValueError("must be WHAT")."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"must be {what}") from None
        if not ok(value):
            raise ValueError(f"must be {what}")
        return value
    return parse


def positive_float(flag: str, example) -> callable:
    """A finite number > 0 (seconds, a learning rate)."""
    return checked(flag, number(float, lambda v: 0 < v < _INFINITY, "a number > 0"),
                   example)


def non_negative_float(flag: str, example) -> callable:
    """A finite number >= 0."""
    return checked(flag, number(float, lambda v: 0 <= v < _INFINITY, "a number >= 0"),
                   example)


def fraction(flag: str, example, below_one: bool = False) -> callable:
    """A number in [0, 1] (in [0, 1) with `below_one`: a dropout rate)."""
    if below_one:
        return checked(flag, number(float, lambda v: 0 <= v < 1, "a number in [0, 1)"), example)
    return checked(flag, number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]"), example)


def positive_int(flag: str, example) -> callable:
    """A whole number >= 1 (a count, a batch size)."""
    return checked(flag, number(int, lambda v: v >= 1, "a whole number >= 1"), example)


def non_negative_int(flag: str, example) -> callable:
    """A whole number >= 0."""
    return checked(flag, number(int, lambda v: v >= 0, "a whole number >= 0"), example)


def comma_choices(flag: str, choices, example: str) -> callable:
    """A comma-separated list of at least one of `choices` → the list (each once, in the
    order given)."""
    def parse(text):
        names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
        unknown = [n for n in names if n not in choices]
        if unknown:
            raise ValueError(f"unknown {', '.join(unknown)}; it must name some of "
                             f"{','.join(choices)}, comma-separated")
        if not names:
            raise ValueError(f"must name at least one of {','.join(choices)}, comma-separated")
        return names
    return checked(flag, parse, example)
