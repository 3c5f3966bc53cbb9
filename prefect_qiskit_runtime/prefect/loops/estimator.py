"""A cost function on the ``estimator`` program: one job per evaluation, exactly once."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from prefect_qiskit_runtime.prefect import _utils as pu

if TYPE_CHECKING:
    from prefect_qiskit_runtime.prefect.blocks import QiskitRuntimeBackend


class EstimatorCost:
    """Cost function running one ``estimator`` job per evaluation: ⟨ψ(θ)|H|ψ(θ)⟩.

    Inside an iteration task run, the job's idempotency key derives from that task run, so a retried
    iteration picks up its job instead of running another one.

    Args:
        backend: Where the jobs run.
        circuit: The parametrised ansatz.
        observable: The Hamiltonian (``SparsePauliOp``, or anything the estimator accepts).
        precision: Target precision of the estimate; ``None`` keeps the program's default.
        program_id: The estimator program.
        timeout: Seconds to wait for one job (it is cancelled after that).
        artifacts: Give every iteration's task run a link artifact to its job and a row in the job
            metrics table, as the job tasks do. Off by default: the two API calls cost about as much
            as the rest of an iteration (see *What an iteration costs* in the loops docs), and the
            loop's convergence artifact already shows every evaluation.
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
    ) -> None:
        self.backend = backend
        self.circuit = circuit
        self.observable = observable
        self.precision = precision
        self.program_id = program_id
        self.timeout = timeout
        self.artifacts = artifacts
        self.jobs = 0
        self._encoded: tuple[Any, Any] | None = None
        self._encoded_ids: tuple[int, int] = (0, 0)

    def __enter__(self) -> EstimatorCost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release what the cost holds (nothing here: each evaluation's job ends by itself)."""

    def _encoded_parts(self) -> tuple[Any, Any]:
        """The circuit and observable in their wire form, encoded once for the whole loop.

        Only the parameter values change between evaluations, so the QPY dump of the ansatz and the
        encoding of the observable are done on the first call and reused: a tagged JSON value sends
        exactly the same bytes as the object it stands for.
        """
        ids = (id(self.circuit), id(self.observable))
        if self._encoded is None or self._encoded_ids != ids:
            # Assigning a new circuit or observable re-encodes; mutating one in place does not.
            from prefect_qiskit_runtime.core.codec import RuntimeEncoder

            def wire(value: Any) -> Any:
                return json.loads(json.dumps(value, cls=RuntimeEncoder))

            self._encoded = (wire(self.circuit), wire(self.observable))
            self._encoded_ids = ids
        return self._encoded

    def inputs(self, params: Sequence[float]) -> dict[str, Any]:
        """The estimator's inputs for one point (a single V2 PUB, circuit and observable encoded).

        Args:
            params: The parameter values of this evaluation.

        Returns:
            ``{"pubs": [[circuit, observable, values(, precision)]]}``.
        """
        circuit, observable = self._encoded_parts()
        pub: list[Any] = [circuit, observable, [float(p) for p in params]]
        if self.precision is not None:
            pub.append(self.precision)
        return {"pubs": [pub]}

    def __call__(self, params: np.ndarray) -> float:
        from prefect_qiskit_runtime.prefect.tasks._observe import link_job, record_finished_job
        from prefect_qiskit_runtime.prefect.tasks.submission import submit_job
        from prefect_qiskit_runtime.prefect.tasks.waiting import _cancel_quietly

        service = self.backend.get_client()
        job = submit_job(
            service,
            self.program_id,
            self.backend.run_options(),
            self.backend.merge_inputs(self.inputs(np.ravel(params).tolist())),
            key=pu.task_run_key(self.program_id),
            replace_failed=pu.task_run_count() > 1,
        )
        self.jobs += 1
        if self.artifacts:
            link_job(job, service.url)
        try:
            result = job.result(timeout=self.timeout)
        except BaseException as exc:
            # Cancellation or our own timeout: stop the job. A lost answer is left alone, because
            # the retried iteration picks the same job up again.
            if not isinstance(exc, Exception) or isinstance(exc, TimeoutError):
                _cancel_quietly(job, type(exc).__name__)
            raise
        if self.artifacts:
            record_finished_job(job, service.url)
        return expectation_value(result)


def expectation_value(result: Any) -> float:
    """The first expectation value of an estimator result (``PrimitiveResult`` or plain data)."""
    try:
        evs = result[0].data.evs
    except (TypeError, AttributeError, KeyError, IndexError):
        evs = result
        if isinstance(result, Mapping):
            evs = result.get("evs", result.get("values", result))
    return float(np.ravel(np.asarray(evs, dtype=float))[0])


def estimator_cost(
    backend: QiskitRuntimeBackend,
    circuit: Any,
    observable: Any,
    *,
    precision: float | None = None,
    program_id: str = "estimator",
    timeout: float | None = None,
    artifacts: bool = False,
    session: bool = False,
    idle_timeout: float | None = None,
) -> EstimatorCost:
    """Build a cost function on the ``estimator`` program: a job per evaluation, or one job.

    With ``session=True`` one serving job answers every evaluation over its channel (a
    websocket round trip each, the ansatz kept warm in the job): use the cost as a context
    manager so that the job ends with the loop (see
    :class:`~prefect_qiskit_runtime.prefect.loops.session.SessionEstimatorCost`).

    Args:
        backend: Where the jobs run.
        circuit: The parametrised ansatz.
        observable: The Hamiltonian.
        precision: Target precision; ``None`` keeps the program's default (exact on Aer).
        program_id: The estimator program's id.
        timeout: Seconds to wait for one job.
        artifacts: A link artifact and a metrics row per job (see :class:`EstimatorCost`).
        session: One serving job for all evaluations instead of a job per evaluation.
        idle_timeout: With ``session``: seconds the job waits for the next evaluation.

    Returns:
        A callable ``cost(params) -> float`` for :func:`minimize`.

    Example:
        >>> with estimator_cost(backend, ansatz, hamiltonian, session=True) as energy:
        ...     result = minimize(energy, x0)  # doctest: +SKIP
    """
    options: dict[str, Any] = {
        "precision": precision,
        "program_id": program_id,
        "timeout": timeout,
        "artifacts": artifacts,
    }
    if not session:
        return EstimatorCost(backend, circuit, observable, **options)
    from prefect_qiskit_runtime.prefect.loops.session import SessionEstimatorCost

    if idle_timeout is not None:
        options["idle_timeout"] = idle_timeout
    return SessionEstimatorCost(backend, circuit, observable, **options)
