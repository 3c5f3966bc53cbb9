"""``RuntimeJob``: one execution of a program, its status, result, logs and interim results.

Waiting never sleeps: it long-polls ``GET /runtime/jobs/{id}?wait=S``, which the service answers the
moment the job is final, so a result is seen within milliseconds of the job's end. ``result()``
long-polls the results themselves (``GET /runtime/jobs/{id}/results?wait=S``, whose answer names
the job's status in ``X-Job-Status``), so a successful job costs one request after its submission.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prefect_qiskit_runtime.client.stream import Callback, ResultStream, decode_with
from prefect_qiskit_runtime.client.transport import Transport, new_idempotency_key
from prefect_qiskit_runtime.client.waiting import Deadline
from prefect_qiskit_runtime.client.wire import (
    JOB_STATUS_HEADER,
    decode_params,
    fmt_seconds,
    is_final_object,
    job_timings,
    parse_time,
    response_text,
)
from prefect_qiskit_runtime.core.exceptions import (
    QiskitRuntimeError,
    RuntimeInvalidStateError,
    RuntimeJobCancelled,
    RuntimeJobFailureError,
    RuntimeJobNotFound,
)
from prefect_qiskit_runtime.core.models import JobState, ReasonCode

if TYPE_CHECKING:
    from qiskit.providers import JobStatus

logger = logging.getLogger(__name__)

_NOT_FOUND = {404: RuntimeJobNotFound}


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
        return self._fetch(wait)

    def _fetch(self, wait: float = 0.0, deadline: Deadline | None = None) -> dict[str, Any]:
        """:meth:`refresh`, retrying within ``deadline`` while the service is unreachable."""
        response = self._get("", f"get job {self._job_id}", wait, deadline)
        obj = dict(response.json())
        self._absorb(obj)
        return obj

    def _get(self, suffix: str, what: str, window: float, deadline: Deadline | None) -> Any:
        """``GET /jobs/{id}{suffix}``, long-polling ``window`` seconds, patient within ``deadline``.

        Without a deadline, only the transport's own retries apply.
        """

        def send() -> Any:
            return self._transport.request(
                "GET",
                f"/jobs/{self._job_id}{suffix}",
                what=what,
                params={"wait": fmt_seconds(window)} if window > 0 else None,
                read_timeout=self._transport.timeout[1] + window,
                deadline=None if deadline is None else deadline.at,
                errors=_NOT_FOUND,
            )

        return send() if deadline is None else deadline.patiently(send, self._transport.retry)

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

        Transient failures (the service unreachable or busy) are retried with backoff until
        ``timeout``; see :mod:`prefect_qiskit_runtime.client.waiting`.

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.
            wait: Accepted for compatibility; the service's long-poll replaces polling.

        Raises:
            RuntimeJobTimeoutError: If the job is not final within ``timeout`` (it keeps running).
            RuntimeServiceUnavailable: If the service stayed unreachable until ``timeout``.
        """
        del wait  # polling interval of the original API; long-polling makes it unnecessary
        self._wait_final(self._deadline(timeout))

    def _deadline(self, timeout: float | None) -> Deadline:
        return Deadline(timeout, what=f"job {self._job_id}")

    def _wait_final(self, deadline: Deadline) -> None:
        windows = deadline.windows()
        while not self._is_final():
            self._fetch(wait=next(windows), deadline=deadline)
        self._drain_stream()

    def _drain_stream(self) -> None:
        if self._stream is not None:
            self._stream.drain()

    def _await_results(self, deadline: Deadline) -> None:
        """Long-poll the results until the job is final; cache its status and results text.

        Falls back to waiting on the job object when the service does not name the job's status
        (a service without the extension).

        Raises:
            RuntimeJobTimeoutError: If the job is not final by ``deadline``.
        """
        windows = deadline.windows()
        while not self._is_final():
            window = next(windows)
            response = self._get(
                "/results", f"get the result of job {self._job_id}", window, deadline
            )
            try:
                state = JobState.parse(response.headers.get(JOB_STATUS_HEADER, ""))
            except ValueError:
                self._wait_final(deadline)
                return
            if response.status_code == 204 or not state.is_final:
                continue
            if state != JobState.COMPLETED:
                # The error's code and retryable flag live in the job object: one more request,
                # on failures only.
                self._fetch(deadline=deadline)
            with self._lock:
                if state == JobState.COMPLETED and self._state != JobState.CANCELLED:
                    self._state = state
            self._results_text = response_text(response)
        self._drain_stream()

    def _results_raw(self, deadline: Deadline | None = None) -> str:
        if self._results_text is None:
            response = self._get("/results", f"get the result of job {self._job_id}", 0.0, deadline)
            if response.status_code == 204 or not self._is_final():
                return response_text(response)  # not final yet; do not cache
            self._results_text = response_text(response)
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
            RuntimeServiceUnavailable: If the service stayed unreachable until ``timeout``
                (transient failures are retried with backoff and jitter until then).
        """
        del wait  # polling interval of the original API; long-polling makes it unnecessary
        deadline = self._deadline(timeout)
        self._await_results(deadline)
        failure: type[QiskitRuntimeError] | None = None
        if self._state in (JobState.FAILED, JobState.CANCELLED_RAN_TOO_LONG):
            failure = RuntimeJobFailureError
            message = f"Unable to retrieve job result. {self.error_message()}"
        elif self._state == JobState.CANCELLED:
            failure = RuntimeJobCancelled
            message = f"Job {self._job_id} was cancelled and has no result."
        if failure is not None:
            reason = self.reason_code
            raise failure(
                message, error_code=reason.value if reason else None, retryable=self.retryable
            )
        return decode_with(self._decoder(decoder), self._results_raw(deadline))

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
        return response_text(response)

    def interim_results(self, decoder: Any = None) -> list[Any]:
        """Every interim result the job has published so far, decoded, in order.

        Args:
            decoder: Decoder to use instead of the job's default.

        Returns:
            The decoded messages.
        """
        what = f"get the interim results of job {self._job_id}"
        response = self._get("/interim_results", what, 0.0, None)
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
        if not self._is_final() or not is_final_object(raw):
            # The status may be known from a results answer, which carries no timestamps.
            raw = self.refresh()
        return {
            "job_id": self._job_id,
            "program_id": self._program_id,
            "backend": self._backend_name,
            "status": self._state.value if self._state else None,
            **job_timings(raw),
        }

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


__all__ = ["RuntimeJob", "decode_params", "parse_time"]
