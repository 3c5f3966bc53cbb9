"""``RuntimeJob``: one execution of a program, its status, result, logs and interim results.

Waiting never sleeps: it long-polls ``GET /runtime/jobs/{id}?wait=S``, which the service answers the
moment the job is final, so a result is seen within milliseconds of the job's end. ``result()``
long-polls the results themselves (``GET /runtime/jobs/{id}/results?wait=S``, whose answer names
the job's status in ``X-Job-Status``), so a successful job costs one request after its submission.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from dateutil import parser as dateparser

from prefect_qiskit_runtime.client.stream import Callback, ResultStream, decode_with
from prefect_qiskit_runtime.client.transport import Transport, new_idempotency_key
from prefect_qiskit_runtime.core.exceptions import (
    QiskitRuntimeError,
    RuntimeInvalidStateError,
    RuntimeJobCancelled,
    RuntimeJobFailureError,
    RuntimeJobNotFound,
    RuntimeJobTimeoutError,
)
from prefect_qiskit_runtime.core.models import JobState, ReasonCode

if TYPE_CHECKING:
    from qiskit.providers import JobStatus

logger = logging.getLogger(__name__)

#: Longest single long-poll (the service allows 60; shorter keeps idle proxies from cutting it).
LONG_POLL_SECONDS = 30.0
#: How long ``result()`` waits after the job's end for the stream to deliver the last messages.
STREAM_DRAIN_SECONDS = 30.0

_NOT_FOUND = {404: RuntimeJobNotFound}
#: Header of the results answer naming the job's status (a wire extension of this service).
JOB_STATUS_HEADER = "X-Job-Status"


def parse_time(value: Any) -> datetime | None:
    """Parse an ISO-8601 time from the wire into an aware UTC ``datetime`` (or ``None``)."""
    if not value:
        return None
    parsed = value if isinstance(value, datetime) else dateparser.isoparse(str(value))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def decode_params(params: Any) -> dict[str, Any]:
    """Decode a job's ``params`` (an object, a JSON string or a one-element list) into inputs."""
    from prefect_qiskit_runtime.core.codec import RuntimeDecoder

    if params is None:
        return {}
    if isinstance(params, list) and len(params) == 1:
        params = params[0]
    text = params if isinstance(params, str) else json.dumps(params)
    decoded = json.loads(text, cls=RuntimeDecoder)
    return decoded if isinstance(decoded, dict) else {"params": decoded}


class RuntimeJob:
    """A runtime job: status, result, cancellation, logs, metrics and interim results.

    Instances come from :meth:`RuntimeService.run`, :meth:`RuntimeService.job` and
    :meth:`RuntimeService.jobs`.

    Args:
        transport: The transport of the service that holds the job.
        job_id: The job's id.
        program_id: The program it runs.
        backend_name: The backend it runs on.
        inputs: The program inputs.
        creation_date: When it was created, if known.
        result_decoder: Default decoder of results and interim results (``ResultDecoder``).
        user_callback: If given, interim results are streamed to it at once.
        image: The runtime image option it was submitted with.
        raw: The job object from the service, if already fetched.

    Example:
        >>> job = service.run("hello-world", {"backend_name": "aer_simulator"}, {"iterations": 2})
        ... # doctest: +SKIP
        >>> job.result()  # doctest: +SKIP
        'All done!'
    """

    def __init__(
        self,
        transport: Transport,
        job_id: str,
        program_id: str,
        *,
        backend_name: str = "",
        inputs: dict[str, Any] | None = None,
        creation_date: datetime | None = None,
        result_decoder: Any = None,
        user_callback: Callback | None = None,
        image: str = "",
        raw: dict[str, Any] | None = None,
    ) -> None:
        self._transport = transport
        self._job_id = job_id
        self._program_id = program_id
        self._backend_name = backend_name
        self._inputs = inputs if inputs is not None else {}
        self._creation_date = creation_date
        self._result_decoder = result_decoder
        self._image = image
        self._raw: dict[str, Any] = {}
        self._state: JobState | None = None
        self._results_text: str | None = None
        self._lock = threading.Lock()
        self._stream: ResultStream | None = None
        if raw:
            self._absorb(raw)
        if user_callback is not None:
            self._start_stream(user_callback, None)

    @classmethod
    def from_wire(
        cls, transport: Transport, obj: dict[str, Any], result_decoder: Any = None
    ) -> RuntimeJob:
        """Build a job from the service's job object (spec §3.3).

        Args:
            transport: The service's transport.
            obj: The job object.
            result_decoder: Default decoder for its results.

        Returns:
            The job.
        """
        program = obj.get("program") or {}
        return cls(
            transport,
            obj["id"],
            program.get("id", "") if isinstance(program, dict) else str(program),
            backend_name=obj.get("backend") or "",
            inputs=decode_params(obj.get("params")),
            creation_date=parse_time(obj.get("created")),
            result_decoder=result_decoder,
            image=obj.get("runtime") or "",
            raw=obj,
        )

    def __repr__(self) -> str:
        state = self._state.value if self._state else "unknown"
        return f"<RuntimeJob {self._job_id!r} program={self._program_id!r} status={state!r}>"

    # --- identity -------------------------------------------------------------------------------

    def job_id(self) -> str:
        """The job's id."""
        return self._job_id

    def backend(self) -> str:
        """The name of the backend the job runs on."""
        return self._backend_name

    @property
    def inputs(self) -> dict[str, Any]:
        """The program inputs of the job."""
        return self._inputs

    @property
    def program_id(self) -> str:
        """The id of the program the job runs."""
        return self._program_id

    @property
    def image(self) -> str:
        """The runtime image option (``name:tag``), or ``""``."""
        return self._image

    @property
    def creation_date(self) -> datetime | None:
        """When the job was created (UTC), fetched from the service when not yet known."""
        if self._creation_date is None:
            self.refresh()
        return self._creation_date

    @property
    def reason_code(self) -> ReasonCode | None:
        """Why the job ended other than ``COMPLETED``, as of the last refresh."""
        code = self._raw.get("reason_code")
        try:
            return ReasonCode(code) if code else None
        except ValueError:
            return None

    @property
    def retryable(self) -> bool:
        """Whether running the same job again may succeed (as of the last refresh)."""
        return bool(self._raw.get("retryable", False))

    @property
    def state(self) -> JobState | None:
        """The wire status as of the last refresh (``None`` before the first)."""
        return self._state

    # --- status ---------------------------------------------------------------------------------

    def refresh(self, wait: float = 0.0) -> dict[str, Any]:
        """Fetch the job object, long-polling up to ``wait`` seconds for a final state.

        Args:
            wait: Seconds the service may hold the request until the job is final (at most 60).

        Returns:
            The job object.

        Raises:
            RuntimeJobNotFound: If the job does not exist (or was deleted).
            RequestsApiError: If the request failed.
        """
        params = {"wait": _fmt_seconds(wait)} if wait > 0 else None
        response = self._transport.request(
            "GET",
            f"/jobs/{self._job_id}",
            what=f"get job {self._job_id}",
            params=params,
            read_timeout=self._transport.timeout[1] + wait,
            errors=_NOT_FOUND,
        )
        obj = response.json()
        self._absorb(obj)
        return obj

    def _absorb(self, obj: dict[str, Any]) -> None:
        try:
            state = JobState.parse(str(obj.get("status", "")))
        except ValueError:
            raise QiskitRuntimeError(
                f"Job {self._job_id} has an unknown status {obj.get('status')!r}"
            ) from None
        with self._lock:
            if self._state == JobState.CANCELLED and not state.is_final:
                return  # a cancel was accepted; the service reports CANCELLED from then on
            self._raw = obj
            self._state = state
        if self._creation_date is None:
            self._creation_date = parse_time(obj.get("created"))
        if not self._backend_name:
            self._backend_name = obj.get("backend") or ""

    def _is_final(self) -> bool:
        return self._state is not None and self._state.is_final

    def status(self) -> JobStatus:
        """The job's status as a Qiskit ``JobStatus`` (``DONE``, ``ERROR``, ``CANCELLED``...).

        Once the job is final the cached status is returned without a request.
        """
        if not self._is_final():
            self.refresh()
        assert self._state is not None
        return self._state.to_job_status()

    def wait_for_final_state(self, timeout: float | None = None, wait: float = 5) -> None:
        """Block until the job is final.

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.
            wait: Accepted for compatibility; the service's long-poll replaces polling.

        Raises:
            RuntimeJobTimeoutError: If the job is not final within ``timeout`` (it keeps running).
        """
        del wait  # polling interval of the original API; long-polling makes it unnecessary
        windows = self._long_polls(timeout)
        while not self._is_final():
            self.refresh(wait=next(windows))
        self._drain_stream()

    def _long_polls(self, timeout: float | None) -> Iterator[float]:
        """The length of each long-poll, until ``timeout`` seconds from now have passed.

        Raises:
            RuntimeJobTimeoutError: When asked for a long-poll after the time is up.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is None:
                yield LONG_POLL_SECONDS
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeJobTimeoutError(
                    f"Timed out waiting for job {self._job_id} after {timeout} seconds"
                )
            yield min(LONG_POLL_SECONDS, remaining)

    def _drain_stream(self) -> None:
        """Let an active stream deliver the job's last interim results before returning."""
        stream = self._stream
        if stream is None or not stream.running or stream.on_worker_thread():
            return
        if not stream.join(STREAM_DRAIN_SECONDS):
            logger.warning(
                "Interim results of job %s still streaming %.0fs after the job ended",
                self._job_id,
                STREAM_DRAIN_SECONDS,
            )

    # --- results --------------------------------------------------------------------------------

    def _await_results(self, timeout: float | None) -> None:
        """Long-poll the results until the job is final; cache its status and results text.

        Falls back to :meth:`wait_for_final_state` when the service does not name the job's status
        (a service without the extension).

        Raises:
            RuntimeJobTimeoutError: If the job is not final within ``timeout``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        windows = self._long_polls(timeout)
        while not self._is_final():
            window = next(windows)
            response = self._transport.request(
                "GET",
                f"/jobs/{self._job_id}/results",
                what=f"get the result of job {self._job_id}",
                params={"wait": _fmt_seconds(window)},
                read_timeout=self._transport.timeout[1] + window,
                errors=_NOT_FOUND,
            )
            try:
                state = JobState.parse(response.headers.get(JOB_STATUS_HEADER, ""))
            except ValueError:
                remaining_time = None if deadline is None else deadline - time.monotonic()
                self.wait_for_final_state(timeout=remaining_time)
                return
            if response.status_code == 204 or not state.is_final:
                continue
            if state != JobState.COMPLETED:
                # The error's code and retryable flag live in the job object: one more request,
                # on failures only.
                self.refresh()
            with self._lock:
                if state == JobState.COMPLETED and self._state != JobState.CANCELLED:
                    self._state = state
            self._results_text = _text(response)
        self._drain_stream()

    def _results_raw(self) -> str:
        if self._results_text is None:
            response = self._transport.request(
                "GET",
                f"/jobs/{self._job_id}/results",
                what=f"get the result of job {self._job_id}",
                errors=_NOT_FOUND,
            )
            if response.status_code == 204 or not self._is_final():
                return _text(response)  # not final yet; do not cache
            self._results_text = _text(response)
        return self._results_text

    def error_message(self) -> str | None:
        """Why the job failed (the program's traceback), or ``None`` if it did not fail."""
        if not self._is_final():
            self.refresh()
        if self._state == JobState.FAILED:
            return f"Job {self._job_id} has failed:\n{self._results_raw()}"
        if self._state == JobState.CANCELLED_RAN_TOO_LONG:
            return (
                f"Job {self._job_id} ran longer than maximum execution time. "
                f"Job was cancelled:\n{self._results_raw()}"
            )
        return None

    def result(self, timeout: float | None = None, wait: float = 5, decoder: Any = None) -> Any:
        """Wait for the job and return its decoded final result.

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.
            wait: Accepted for compatibility (waiting uses the service's long-poll).
            decoder: A ``ResultDecoder`` class (for example ``RunnerResult``) to use instead of the
                job's default.

        Returns:
            The final result.

        Raises:
            RuntimeJobFailureError: If the job failed or ran too long; the message holds the
                program's traceback and ``retryable`` says whether running it again may help.
            RuntimeJobCancelled: If the job was cancelled.
            RuntimeJobTimeoutError: If ``timeout`` passed first.
        """
        del wait  # polling interval of the original API; long-polling makes it unnecessary
        self._await_results(timeout)
        if self._state in (JobState.FAILED, JobState.CANCELLED_RAN_TOO_LONG):
            reason = self.reason_code
            raise RuntimeJobFailureError(
                f"Unable to retrieve job result. {self.error_message()}",
                error_code=reason.value if reason else None,
                retryable=self.retryable,
            )
        if self._state == JobState.CANCELLED:
            reason = self.reason_code
            raise RuntimeJobCancelled(
                f"Job {self._job_id} was cancelled and has no result.",
                error_code=reason.value if reason else None,
                retryable=self.retryable,
            )
        return decode_with(self._decoder(decoder), self._results_raw())

    def _decoder(self, decoder: Any) -> Any:
        if decoder is not None:
            return decoder
        if self._result_decoder is not None:
            return self._result_decoder
        from prefect_qiskit_runtime.core.codec import ResultDecoder

        return ResultDecoder

    def cancel(self) -> None:
        """Cancel the job; its streaming stops and its status becomes ``CANCELLED``.

        Cancelling a job that is already cancelled succeeds (so a retried cancel whose first answer
        was lost does too).

        Raises:
            RuntimeInvalidStateError: If the job has already ended otherwise.
            RuntimeJobNotFound: If the job does not exist.
            QiskitRuntimeError: If the request failed.
        """
        try:
            self._transport.request(
                "POST",
                f"/jobs/{self._job_id}/cancel",
                what=f"cancel job {self._job_id}",
                idempotency_key=new_idempotency_key(),
                errors={404: RuntimeJobNotFound, 409: RuntimeInvalidStateError},
                fallback=QiskitRuntimeError,
            )
        except RuntimeInvalidStateError:
            self.refresh()
            if self._state != JobState.CANCELLED:
                raise
        self.cancel_result_streaming()
        with self._lock:
            self._state = JobState.CANCELLED

    def logs(self) -> str:
        """The job's captured stdout, stderr and logging output (``""`` if there is none).

        Raises:
            QiskitRuntimeError: If the request failed.
        """
        if not self._is_final():
            logger.warning("Job %s is not final; its logs may be incomplete", self._job_id)
        try:
            response = self._transport.request(
                "GET",
                f"/jobs/{self._job_id}/logs",
                what=f"get the logs of job {self._job_id}",
                errors=_NOT_FOUND,
                fallback=QiskitRuntimeError,
            )
        except RuntimeJobNotFound:
            return ""
        return _text(response)

    def interim_results(self, decoder: Any = None) -> list[Any]:
        """Every interim result the job has published so far, decoded, in order.

        Args:
            decoder: Decoder to use instead of the job's default.

        Returns:
            The decoded messages.
        """
        response = self._transport.request(
            "GET",
            f"/jobs/{self._job_id}/interim_results",
            what=f"get the interim results of job {self._job_id}",
            errors=_NOT_FOUND,
        )
        use = self._decoder(decoder)
        messages = sorted(response.json().get("messages", []), key=lambda m: m["seq"])
        return [decode_with(use, m["message"]) for m in messages]

    def metrics(self) -> dict[str, Any]:
        """Timestamps and durations of the job.

        Returns:
            ``created``, ``started``, ``finished`` (aware UTC datetimes or ``None``),
            ``queue_seconds`` (created → started), ``run_seconds`` (started → finished),
            ``total_seconds`` (created → finished), plus ``status``, ``backend``, ``program_id``,
            ``message_count`` and ``reason_code``.
        """
        raw = self._raw
        if not self._is_final() or not _final_object(raw):
            # The status may be known from a results answer, which carries no timestamps.
            raw = self.refresh()
        created = parse_time(raw.get("created"))
        started = parse_time(raw.get("started"))
        finished = parse_time(raw.get("ended"))

        def span(a: datetime | None, b: datetime | None) -> float | None:
            return None if a is None or b is None else max(0.0, (b - a).total_seconds())

        return {
            "job_id": self._job_id,
            "program_id": self._program_id,
            "backend": self._backend_name,
            "status": self._state.value if self._state else None,
            "created": created,
            "started": started,
            "finished": finished,
            "queue_seconds": span(created, started),
            "run_seconds": span(started, finished),
            "total_seconds": span(created, finished),
            "message_count": raw.get("message_count"),
            "reason_code": raw.get("reason_code"),
        }

    # --- streaming ------------------------------------------------------------------------------

    def stream_results(self, callback: Callback, decoder: Any = None, *, after: int = 0) -> None:
        """Stream interim results to ``callback(job_id, message)`` on a worker thread.

        Messages already published are delivered too (all those after sequence number ``after``),
        so nothing published before this call is missed.

        Args:
            callback: Called once per interim result, in order.
            decoder: Decoder to use instead of the job's default.
            after: Skip messages up to this sequence number.

        Raises:
            RuntimeInvalidStateError: If the job has already ended or is already streaming.
        """
        if self._is_final():
            raise RuntimeInvalidStateError("Job already finished.")
        if self._stream is not None and self._stream.running:
            raise RuntimeInvalidStateError("A callback function is already streaming results.")
        self._start_stream(callback, decoder, after)

    def _start_stream(self, callback: Callback, decoder: Any, after: int = 0) -> None:
        self._stream = ResultStream(
            self._transport, self._job_id, callback, self._decoder(decoder), after=after
        ).start()

    def cancel_result_streaming(self) -> None:
        """Stop streaming interim results (the job goes on)."""
        if self._stream is not None:
            self._stream.cancel()


def _text(response: Any) -> str:
    """The body as text: the service writes UTF-8, even where a text/* answer lacks a charset."""
    return bytes(response.content or b"").decode("utf-8", errors="replace")


def _final_object(obj: dict[str, Any]) -> bool:
    """Whether ``obj`` is a job object in a final state."""
    try:
        return bool(obj) and JobState.parse(str(obj.get("status", ""))).is_final
    except ValueError:
        return False


def _fmt_seconds(seconds: float) -> str:
    text = f"{max(0.0, seconds):.3f}".rstrip("0").rstrip(".")
    return text or "0"


__all__ = ["RuntimeJob", "decode_params", "parse_time"]
