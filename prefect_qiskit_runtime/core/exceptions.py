"""One exception hierarchy for the client, the service and the Prefect layer.

The names follow the original ``qiskit.providers.ibmq.runtime`` API so that code written against
``IBMRuntimeService`` catches the same types. Every exception that stems from an HTTP answer carries
``status_code`` and the service's ``error_code``; ``retryable`` tells the Prefect layer whether
running the same step again can help (a lost worker) or cannot (a program's own exception, a
bad input).
"""

from __future__ import annotations


class QiskitRuntimeError(Exception):
    """Base class of every error raised by this package.

    Args:
        message: What went wrong, in words a user can act on.
        status_code: The HTTP status of the answer that caused it, if any.
        error_code: The service's machine-readable error code, if any.
        retryable: Whether repeating the same operation may succeed.
    """

    retryable_default: bool = False

    def __init__(
        self,
        message: str = "",
        *,
        status_code: int | None = None,
        error_code: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.error_code = error_code
        self.retryable = self.retryable_default if retryable is None else retryable

    def __str__(self) -> str:
        return self.message


class IBMQInputValueError(QiskitRuntimeError, ValueError):
    """An argument or program input is invalid (caught before or by the service)."""


class IBMQNotAuthorizedError(QiskitRuntimeError):
    """The token is valid but not allowed to do this (for example upload a program)."""


class RuntimeAuthenticationError(QiskitRuntimeError):
    """The token is missing or unknown (HTTP 401)."""


class RequestsApiError(QiskitRuntimeError):
    """An HTTP request failed in a way no more specific exception describes."""


class RuntimeServiceUnavailable(RequestsApiError):
    """The service could not be reached or stayed unavailable through every retry."""

    retryable_default = True


class RuntimeProgramNotFound(QiskitRuntimeError):
    """The program does not exist or is not visible to this user."""


class RuntimeJobNotFound(QiskitRuntimeError):
    """The job does not exist or is not visible to this user."""


class RuntimeDuplicateProgramError(QiskitRuntimeError):
    """A program with the same name already exists for this user."""


class RuntimeInvalidStateError(QiskitRuntimeError):
    """The operation is not valid in the job's current state (for example cancelling a done job)."""


class RuntimeJobFailureError(QiskitRuntimeError):
    """The job ended without a result: the program raised, ran too long, or its worker was lost."""


class RuntimeJobTimeoutError(QiskitRuntimeError, TimeoutError):
    """Waiting for a job exceeded the caller's timeout (the job itself goes on)."""


class RuntimeJobCancelled(RuntimeJobFailureError):
    """The job was cancelled before it produced a result."""


class RuntimePayloadError(QiskitRuntimeError, ValueError):
    """A payload could not be encoded or decoded by the runtime codec."""


class RuntimeChannelError(QiskitRuntimeError):
    """A call into a running job got no reply: the channel closed, or the service refused it.

    ``retryable`` is true when the job is gone or the connection dropped (a new job or a new
    connection may answer), false for a refused call.
    """


class RuntimeCallFailed(RuntimeChannelError):
    """The job's program answered a call with an error (``Call.fail``, or its handler raised)."""


class EmbeddedServiceError(QiskitRuntimeError):
    """The embedded service could not be started or reached."""


class MissingExtraError(QiskitRuntimeError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


__all__ = [
    "EmbeddedServiceError",
    "IBMQInputValueError",
    "IBMQNotAuthorizedError",
    "MissingExtraError",
    "QiskitRuntimeError",
    "RequestsApiError",
    "RuntimeAuthenticationError",
    "RuntimeCallFailed",
    "RuntimeChannelError",
    "RuntimeDuplicateProgramError",
    "RuntimeInvalidStateError",
    "RuntimeJobCancelled",
    "RuntimeJobFailureError",
    "RuntimeJobNotFound",
    "RuntimeJobTimeoutError",
    "RuntimePayloadError",
    "RuntimeProgramNotFound",
    "RuntimeServiceUnavailable",
]
