"""Errors of the local stack runtime."""


class StackError(RuntimeError):
    """A problem starting or stopping the local stack, worded for the user (no traceback is shown)."""
