"""Typed errors of the use cases.

A use case says what went wrong in its own terms; the app's exception handler
(:func:`prefect_qiskit_runtime.server.app.create_app`) turns each kind into its HTTP status and the
service's error body, so no use case knows about status codes.
"""

from __future__ import annotations


class UseCaseError(Exception):
    """A request the service refuses, with a stable ``code`` and a message for people.

    Args:
        code: Stable error code such as ``INVALID_INPUT``.
        message: What went wrong and, where it helps, what to do.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InvalidArgument(UseCaseError):
    """An input is malformed or breaks a rule (HTTP 400)."""


class NotAuthenticated(UseCaseError):
    """The caller's credentials are missing, unknown or expired (HTTP 401)."""

    def __init__(self, message: str) -> None:
        super().__init__("UNAUTHORIZED", message)


class PermissionDenied(UseCaseError):
    """The caller may not do this (HTTP 403)."""

    def __init__(self, message: str) -> None:
        super().__init__("FORBIDDEN", message)


class NotFound(UseCaseError):
    """The caller has no such object (HTTP 404)."""


class ProgramNotFound(NotFound):
    """The caller can see no program with this id.

    Args:
        program_id: The id asked for.
    """

    def __init__(self, program_id: str) -> None:
        super().__init__("PROGRAM_NOT_FOUND", f"Program not found: {program_id}")


class JobNotFound(NotFound):
    """The caller has no job with this id.

    Args:
        job_id: The id asked for.
    """

    def __init__(self, job_id: str) -> None:
        super().__init__("JOB_NOT_FOUND", f"Job not found: {job_id}")


class SessionNotFound(NotFound):
    """The caller has no session (or batch) with this id.

    Args:
        session_id: The id asked for.
    """

    def __init__(self, session_id: str) -> None:
        super().__init__("SESSION_NOT_FOUND", f"Session not found: {session_id}")


class InvalidState(UseCaseError):
    """The object is in a state that does not allow this (HTTP 409)."""

    def __init__(self, message: str) -> None:
        super().__init__("INVALID_STATE", message)


__all__ = [
    "InvalidArgument",
    "InvalidState",
    "JobNotFound",
    "NotAuthenticated",
    "NotFound",
    "PermissionDenied",
    "ProgramNotFound",
    "SessionNotFound",
    "UseCaseError",
]
