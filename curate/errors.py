"""Errors a user can act on: each names where the problem is and what it is.

The CLI turns a ``ThresherError`` into one line on stderr and its exit code;
anything else is a bug and may show a traceback.
"""

from __future__ import annotations


class ThresherError(Exception):
    """A failure the user can fix; ``exit_code`` follows the CLI's convention (2 = usage/input)."""

    exit_code = 2


class InputError(ThresherError):
    """A whole input cannot be read: missing file, unknown type, undecodable bytes."""

    def __init__(self, path: str, reason: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {reason}")
        self.path, self.line, self.reason = path, line, reason

    def __reduce__(self):  # worker processes send it back to the parent
        return type(self), (self.path, self.reason, self.line)


class RecordError(ValueError):
    """One record breaks the contract; ``field`` is named as the source file spells it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field, self.reason = field, reason

    def __reduce__(self):
        return type(self), (self.field, self.reason)
