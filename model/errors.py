"""Errors a user can fix; the CLI prints them as one line, without a traceback."""


class UserError(Exception):
    """Bad input from the user (path, flag, manifest row): say what is wrong and how to fix it."""
