"""Errors worded for the user: the CLI prints them on one line, without a traceback."""


class CommandError(RuntimeError):
    """A command that cannot do its job (unreachable broker, missing topics, refused login, …)."""
