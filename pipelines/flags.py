"""The argument parser of every `earmark` command: argparse's own errors (unknown flag, bad
choice, missing value) raise a one-line `UserError` naming the fix, like every other user
error, instead of printing a usage block and exiting.

Here (not in earmark/) because the Beam pipelines' parsers use it too and pipelines/ never
imports earmark/; not in model/, which knows no argparse.
"""
import argparse

from earmark.model.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """argparse.ArgumentParser whose `error()` raises
    `UserError("PROG: MESSAGE (see 'PROG --help')")`."""

    def error(self, message):
        raise UserError(f"{self.prog}: {message} (see '{self.prog} --help')")
