"""A cost function on one serving ``estimator`` job: a websocket round trip per evaluation.

``estimator_cost(..., session=True)`` starts one ``estimator`` job with ``serve`` and sends each
evaluation's PUB to it over the job's channel (``WS /runtime/jobs/{id}/channel``): no job, no
database write and no process per iteration, and the job keeps the decoded, transpiled ansatz
between calls. Each evaluation is still its own Prefect task run (``iteration-{k}``, with its
retries and checkpoint line); only what runs inside it changes.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from qiskit.providers.jobstatus import JOB_FINAL_STATES

from prefect_qiskit_runtime.core.exceptions import RuntimeChannelError
from prefect_qiskit_runtime.prefect import _utils as pu
from prefect_qiskit_runtime.prefect.loops.estimator import EstimatorCost, expectation_value

if TYPE_CHECKING:
    from prefect_qiskit_runtime.client.channel import JobChannel
    from prefect_qiskit_runtime.client.job import RuntimeJob
    from prefect_qiskit_runtime.prefect.blocks import QiskitRuntimeBackend

__all__ = ["SessionEstimatorCost"]

#: Seconds the serving job waits for the next evaluation before it finishes (a loop that stopped
#: without closing its cost frees its worker after this long).
DEFAULT_IDLE_TIMEOUT = 120.0


class SessionEstimatorCost(EstimatorCost):
    """Cost function answering every evaluation from one serving ``estimator`` job.

    Use it as a context manager (the job starts on entry and finishes on exit), or call
    :meth:`close`; otherwise the job starts with the first evaluation and finishes
    ``idle_timeout`` seconds after the last one.

    A dropped connection is reopened, and a serving job that ended (its worker was lost, the
    service restarted, it idled out) is replaced by a new one, within the same evaluation; an
    evaluation the program refused (``RuntimeCallFailed``) raises.

    Args:
        backend: Where the job runs.
        circuit: The parametrised ansatz.
        observable: The Hamiltonian.
        precision: Target precision of each estimate; ``None`` keeps the program's default.
        program_id: The estimator program (it must serve calls).
        timeout: Seconds to wait for one evaluation.
        artifacts: A link artifact to the serving job, in the run that starts it.
        idle_timeout: Seconds the job waits for the next evaluation before it finishes.

    Example:
        >>> with estimator_cost(backend, ansatz, hamiltonian, session=True) as energy:
        ...     result = minimize(energy, x0)  # doctest: +SKIP
    """

    def __init__(
        self,
        backend: QiskitRuntimeBackend,
        circuit: Any,
        observable: Any,
        *,
        precision: float | None = None,
        program_id: str = "estimator",
        timeout: float | None = None,
        artifacts: bool = False,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        super().__init__(
            backend,
            circuit,
            observable,
            precision=precision,
            program_id=program_id,
            timeout=timeout,
            artifacts=artifacts,
        )
        self.idle_timeout = idle_timeout
        self.job: RuntimeJob | None = None
        self._channel: JobChannel | None = None
        self._prefix: tuple[tuple[Any, Any], str] | None = None
        self._lock = threading.RLock()
        #: Evaluations answered by the serving job(s).
        self.calls = 0

    def __enter__(self) -> SessionEstimatorCost:
        return self.open()

    def open(self) -> SessionEstimatorCost:
        """Start the serving job now (otherwise the first evaluation does); returns ``self``."""
        with self._lock:
            if self._channel is None:
                self._start()
        return self

    def __call__(self, params: np.ndarray) -> float:
        text = self._call_text(np.ravel(params).tolist())
        with self._lock:
            if self._channel is None:
                self._start()
            try:
                reply = self._call(text)
            except RuntimeChannelError as exc:
                if not exc.retryable:
                    raise
                # The connection dropped or the job ended: the same evaluation once more, on a
                # new connection to the job if it still runs, else on a new job.
                if self.job is None or self.job.status() in JOB_FINAL_STATES:
                    self._start()
                reply = self._call(text)
        return expectation_value(json.loads(reply)[0])  # the first PUB's {"evs", "stds"}

    def close(self) -> None:
        """Tell the serving job that the loop is over (it finishes with ``{"calls", ...}``)."""
        with self._lock:
            channel, self._channel = self._channel, None
        if channel is not None:
            channel.close(end=True)

    def _call(self, text: str) -> str:
        assert self._channel is not None
        reply = self._channel.call_text(text, self.timeout)
        self.calls += 1
        return reply

    def _start(self) -> None:
        """Submit a serving job (idempotent under retries of the request) and open its channel."""
        from prefect_qiskit_runtime.prefect.tasks._observe import link_job
        from prefect_qiskit_runtime.prefect.tasks.submission import submit_job

        if self._channel is not None:
            self._channel.close(end=True)
        service = self.backend.get_client()
        inputs = self.backend.merge_inputs({"serve": {"idle_timeout": self.idle_timeout}})
        job = submit_job(
            service,
            self.program_id,
            self.backend.run_options(),
            inputs,
            key=f"prefect-loop-session-{uuid.uuid4().hex}",
            replace_failed=False,
        )
        self.job = job
        self.jobs += 1
        if self.artifacts:
            link_job(job, service.url)
        self._channel = service.open_channel(job)
        pu.run_logger().info("Loop evaluations go to serving job %s", job.job_id())

    def _call_text(self, params: Sequence[float]) -> str:
        """The call's JSON: the circuit and observable encoded once, the values each time."""
        # The encoded parts are cached by the base class (re-encoded when the circuit or
        # observable is replaced); the JSON prefix follows that same tuple.
        parts = self._encoded_parts()
        if self._prefix is None or self._prefix[0] is not parts:
            head = json.dumps(parts[0]) + "," + json.dumps(parts[1])
            self._prefix = (parts, '{"pubs":[[' + head + ",")
        tail = json.dumps([float(p) for p in params])
        if self.precision is not None:
            tail += "," + json.dumps(float(self.precision))
        # The data fields only (plain JSON), not the whole PrimitiveResult: 110 µs less per call.
        return self._prefix[1] + tail + ']],"reply":"data"}'
