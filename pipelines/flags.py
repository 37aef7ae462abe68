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


def add_label_column(p: argparse.ArgumentParser) -> None:
    """--label-column of a command that reads --annotations (model/annotations.py)."""
    p.add_argument("--label-column", default="Annotation",
                   help="Raven tables: the column holding the label (default Annotation)")


def add_precision(p: argparse.ArgumentParser, help: str) -> None:
    """--precision of a command that runs a model's image base (model/precision.py)."""
    p.add_argument("--precision", default=DEFAULT_PRECISION, choices=PRECISIONS, help=help)


def add_annotation_encoding(p: argparse.ArgumentParser) -> None:
    """--annotation-encoding of a command that reads --annotations (model/annotations.py)."""
    p.add_argument("--annotation-encoding", default=None,
                   help="text encoding of the annotation tables when they are not UTF-8 and "
                        "not Windows-1252 (e.g. latin-1, utf-16, shift_jis); default: UTF-8, "
                        "UTF-16 with a byte-order mark, else Windows-1252 with a note")
