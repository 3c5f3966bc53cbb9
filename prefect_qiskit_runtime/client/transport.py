"""The only place the client speaks HTTP: a ``requests.Session``, timeouts, retries, error mapping.

Retry policy (see :class:`RetryPolicy`): connection errors, timeouts and the answers 408, 429, 502,
503 and 504 are retried with exponential backoff and jitter, honouring ``Retry-After``, bounded both
in attempts and in total time. Every other 4xx is final. A ``POST`` is retried only when it carries
an ``Idempotency-Key``, because the service may have acted on a request whose answer was lost; with
the key the service answers the repeat with the first answer and creates nothing. ``GET``, ``PUT``,
``PATCH`` and ``DELETE`` are idempotent and always retried.

Tokens travel only in the ``X-Access-Token`` header and never appear in exceptions, reprs or logs.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_result,
    stop_after_attempt,
    stop_before_delay,
)
from tenacity.stop import stop_base

from prefect_qiskit_runtime._version import __version__
from prefect_qiskit_runtime.core.exceptions import (
    IBMQInputValueError,
    IBMQNotAuthorizedError,
    QiskitRuntimeError,
    RequestsApiError,
    RuntimeAuthenticationError,
    RuntimeServiceUnavailable,
)

logger = logging.getLogger(__name__)

#: HTTP statuses that mean "try again later": the service did not act on the request.
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
#: Methods that may be repeated without an idempotency key.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})

Timeout = float | tuple[float, float]
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 60.0)
Verify = bool | str


@dataclass(frozen=True)
class RetryPolicy:
    """How the transport retries a request that failed transiently.

    Args:
        max_attempts: Attempts in total, the first one included (1 disables retries).
        max_total_seconds: No retry starts once this much time (plus the next wait) has passed
            since the first attempt.
        initial_backoff: First backoff in seconds; it doubles on every retry.
        max_backoff: Upper bound of one backoff.
        jitter: Up to this many random seconds are added to each backoff, so that many clients
            that failed together do not retry together.
        max_retry_after: A ``Retry-After`` longer than this is shortened to it.

    Example:
        >>> RetryPolicy(max_attempts=3).max_attempts
        3
    """

    max_attempts: int = 6
    max_total_seconds: float = 90.0
    initial_backoff: float = 0.2
    max_backoff: float = 10.0
    jitter: float = 0.2
    max_retry_after: float = 30.0

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_attempts=1)

    def backoff(self, retry_number: int) -> float:
        """Seconds to wait before retry number ``retry_number`` (from 1), jitter included."""
        base = min(self.max_backoff, self.initial_backoff * (2 ** max(0, retry_number - 1)))
        return base + random.uniform(0, self.jitter)


class _StopBefore(stop_base):
    """Stop retrying when the next attempt would start after ``deadline`` (monotonic clock)."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        """Whether no retry may start any more."""
        if self.deadline is None:
            return False
        return time.monotonic() + retry_state.upcoming_sleep >= self.deadline


def normalise_root(url: str) -> str:
    """Reduce a service URL to its root (``scheme://host:port``, optional path prefix kept).

    ``ROOT``, ``ROOT/api`` and ``ROOT/runtime`` (with or without a trailing slash) all name the same
    service.

    Args:
        url: The URL the user gave.

    Returns:
        The root without a trailing slash.

    Raises:
        IBMQInputValueError: If ``url`` is not an ``http`` or ``https`` URL.

    Example:
        >>> normalise_root("http://127.0.0.1:8000/runtime/")
        'http://127.0.0.1:8000'
    """
    root = url.strip().rstrip("/")
    parts = urlsplit(root)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise IBMQInputValueError(f"Not an http(s) URL: {url!r}")
    for suffix in ("/api", "/runtime"):
        if root.endswith(suffix):
            root = root[: -len(suffix)]
            break
    return root


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header (seconds or an HTTP date) into seconds from now.

    Args:
        value: The header value, or ``None``.
        now: The current UNIX time (for tests); defaults to ``time.time()``.

    Returns:
        Seconds to wait (never negative), or ``None`` when the header is absent or unreadable.
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc)
    return max(0.0, (when - current).total_seconds())


def error_details(response: requests.Response) -> tuple[str, str | None]:
    """Extract the service's message and code from an error answer.

    Understands ``{"error": {"message", "code"}}`` (this service) and ``{"detail": ...}`` (a bare
    FastAPI answer); anything else yields the start of the body text.

    Returns:
        ``(message, code)``.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or response.reason or ""), _opt_str(err.get("code"))
        if isinstance(err, str):
            return err, None
        if "detail" in body:
            return str(body["detail"]), None
    text = (response.text or "").strip()
    return (text[:500] or response.reason or f"HTTP {response.status_code}"), None


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


class Transport:
    """HTTP access to one runtime service: authentication, timeouts, retries and error mapping.

    Args:
        url: The service root (``ROOT``, ``ROOT/api`` or ``ROOT/runtime``).
        token: The API token, sent as ``X-Access-Token``.
        verify: ``True`` to check TLS certificates against the system store, ``False`` not to check,
            or the path of a CA bundle (a service with a self-signed certificate).
        timeout: Seconds for connect and read, or a ``(connect, read)`` pair.
        retry: The retry policy; ``None`` for the default.

    Example:
        >>> t = Transport("http://127.0.0.1:1/runtime", "secret")
        >>> t.runtime_url
        'http://127.0.0.1:1/runtime'
        >>> "secret" in repr(t)
        False
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        verify: Verify = True,
        timeout: Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.root_url = normalise_root(url)
        self._token = token
        self.verify = verify
        self.timeout: tuple[float, float] = (
            (float(timeout), float(timeout)) if isinstance(timeout, int | float) else timeout
        )
        self.retry = retry or RetryPolicy()
        self._session = requests.Session()
        self._session.verify = verify
        self._session.headers.update(
            {
                "X-Access-Token": token,
                "User-Agent": f"prefect-qiskit-runtime/{__version__}",
                "X-Qx-Client-Application": f"prefect-qiskit-runtime/{__version__}",
            }
        )
        host = urlsplit(self.root_url).hostname or ""
        if host in ("127.0.0.1", "localhost", "::1"):
            # A proxy configured for the internet must not intercept a service on this machine.
            self._session.trust_env = False

    def __repr__(self) -> str:
        return f"Transport({self.root_url!r})"

    @property
    def token(self) -> str:
        """The API token (kept out of ``repr`` and of every message)."""
        return self._token

    @property
    def runtime_url(self) -> str:
        """Base URL of the runtime API."""
        return self.root_url + "/runtime"

    @property
    def api_url(self) -> str:
        """Base URL of the account-discovery API."""
        return self.root_url + "/api"

    def ws_url(self, path: str) -> str:
        """The websocket URL of ``path`` under the runtime API (``http`` → ``ws``)."""
        base = self.runtime_url
        if base.startswith("https"):
            base = "wss" + base[len("https") :]
        else:
            base = "ws" + base[len("http") :]
        return base + path

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        base: str = "runtime",
        what: str = "",
        params: Mapping[str, Any] | None = None,
        json_text: str | None = None,
        data: bytes | str | None = None,
        content_type: str | None = None,
        idempotency_key: str | None = None,
        read_timeout: float | None = None,
        deadline: float | None = None,
        errors: Mapping[int, type[QiskitRuntimeError]] | None = None,
        fallback: type[QiskitRuntimeError] = RequestsApiError,
    ) -> requests.Response:
        """Send one request with the retry policy and map a failing answer to an exception.

        Args:
            method: HTTP method.
            path: Path under the base URL (starting with ``/``).
            base: ``"runtime"``, ``"api"`` or ``"root"``.
            what: What the call does, for messages ("get job 1a2b").
            params: Query parameters.
            json_text: A JSON body, already serialised (the runtime codec encodes inputs).
            data: A raw body.
            content_type: Content type of the body.
            idempotency_key: Sent as ``Idempotency-Key``; makes a ``POST`` retryable.
            read_timeout: Read timeout for this call (long-polls pass their wait plus a margin).
            deadline: ``time.monotonic()`` value after which no retry starts (a caller's
                timeout), in addition to the policy's own limits.
            errors: Exception types for specific statuses (404 → ``RuntimeJobNotFound``...).
            fallback: Exception type for statuses without a more specific mapping.

        Returns:
            The successful response (status < 400).

        Raises:
            RuntimeAuthenticationError: 401.
            IBMQNotAuthorizedError: 403.
            IBMQInputValueError: 400 or 422 (unless ``errors`` says otherwise).
            RuntimeServiceUnavailable: The service stayed unreachable or busy through every retry.
            QiskitRuntimeError: ``errors[status]`` or ``fallback`` for any other failure.
        """
        method = method.upper()
        url = {"runtime": self.runtime_url, "api": self.api_url, "root": self.root_url}[base] + path
        headers: dict[str, str] = {}
        if content_type:
            headers["Content-Type"] = content_type
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        body: bytes | str | None = json_text if json_text is not None else data
        if json_text is not None and not content_type:
            headers["Content-Type"] = "application/json"
        timeout = (self.timeout[0], read_timeout if read_timeout is not None else self.timeout[1])
        retryable = method in IDEMPOTENT_METHODS or bool(idempotency_key)
        label = f"{method} {urlsplit(url).path}"
        what = what or label

        answer_lost = False

        def attempt() -> requests.Response:
            nonlocal answer_lost
            try:
                return self._session.request(
                    method, url, params=params, data=body, headers=headers, timeout=timeout
                )
            except requests.RequestException:
                answer_lost = True
                raise

        policy = self.retry
        retrying = Retrying(
            retry=(
                retry_if_exception(lambda exc: retryable and _is_transient(exc))
                | retry_if_result(lambda r: retryable and r.status_code in RETRY_STATUSES)
            ),
            stop=stop_after_attempt(max(1, policy.max_attempts))
            | stop_before_delay(policy.max_total_seconds)
            | _StopBefore(deadline),
            wait=self._wait,
            before_sleep=lambda state: self._log_retry(label, state),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
            reraise=True,
        )
        try:
            response: requests.Response = retrying(attempt)
        except requests.exceptions.SSLError:
            raise RequestsApiError(
                f"Failed to {what}: the TLS certificate of {self.root_url} was not accepted "
                "(pass verify=<CA bundle path> for a self-signed certificate)"
            ) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RuntimeServiceUnavailable(
                f"Failed to {what}: service at {self.root_url} unreachable ({type(exc).__name__})"
            ) from None
        except requests.RequestException as exc:
            raise RequestsApiError(f"Failed to {what}: {type(exc).__name__}") from None
        if response.status_code == 404 and method == "DELETE" and answer_lost:
            # An earlier attempt may have reached the service and deleted the object before its
            # answer was lost; the 404 of the repeat is then the expected outcome.
            logger.info("%s answered 404 after a lost answer; treating it as deleted", label)
            return response
        if response.status_code >= 400:
            raise self._error(response, what, errors or {}, fallback)
        return response

    def _wait(self, state: RetryCallState) -> float:
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            response = outcome.result()
            after = parse_retry_after(response.headers.get("Retry-After"))
            if after is not None:
                return min(after, self.retry.max_retry_after)
        return self.retry.backoff(state.attempt_number)

    def _log_retry(self, label: str, state: RetryCallState) -> None:
        outcome = state.outcome
        if outcome is None:
            return
        cause = (
            type(outcome.exception()).__name__
            if outcome.failed
            else f"HTTP {outcome.result().status_code}"
        )
        sleep = state.next_action.sleep if state.next_action else 0.0
        logger.info(
            "Retrying %s after %s (attempt %d of %d) in %.2fs",
            label,
            cause,
            state.attempt_number + 1,
            self.retry.max_attempts,
            sleep,
        )

    def _error(
        self,
        response: requests.Response,
        what: str,
        errors: Mapping[int, type[QiskitRuntimeError]],
        fallback: type[QiskitRuntimeError],
    ) -> QiskitRuntimeError:
        status = response.status_code
        message, code = error_details(response)
        cls: type[QiskitRuntimeError]
        if status in errors:
            cls = errors[status]
        elif status == 401:
            cls = RuntimeAuthenticationError
        elif status == 403:
            cls = IBMQNotAuthorizedError
        elif status in (400, 422):
            cls = IBMQInputValueError
        elif status in RETRY_STATUSES:
            cls = RuntimeServiceUnavailable
        else:
            cls = fallback
        return cls(f"Failed to {what}: [{status}] {message}", status_code=status, error_code=code)


def _is_transient(exc: BaseException) -> bool:
    """Connection failures and timeouts; a malformed URL or a TLS error is not transient."""
    if isinstance(exc, requests.exceptions.SSLError | requests.exceptions.InvalidURL):
        return False
    return isinstance(
        exc,
        requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError,
    )


def new_idempotency_key() -> str:
    """A fresh random idempotency key."""
    return uuid.uuid4().hex


__all__ = [
    "DEFAULT_TIMEOUT",
    "RETRY_STATUSES",
    "RetryPolicy",
    "Transport",
    "error_details",
    "new_idempotency_key",
    "normalise_root",
    "parse_retry_after",
]
