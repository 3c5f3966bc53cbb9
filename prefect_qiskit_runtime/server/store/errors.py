"""Why the store refused an operation."""

from __future__ import annotations


class StoreError(Exception):
    """A repository operation was refused; ``code`` names why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class DuplicateProgramError(StoreError):
    """The user already has a program with this name."""

    def __init__(self, name: str) -> None:
        super().__init__("DUPLICATE_PROGRAM", f"A program named {name!r} already exists.")


class ForbiddenError(StoreError):
    """The user sees the object but may not change it."""


class DatabaseUnavailable(StoreError):
    """The store cannot use its database: a bad URL, a missing driver, no connection, a schema it
    cannot upgrade. The message is one line, fit to be shown as is (no password in it)."""

    def __init__(self, message: str) -> None:
        super().__init__("DATABASE_UNAVAILABLE", message)
