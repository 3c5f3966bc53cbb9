"""The :func:`minimize` driver: resume from the checkpoint, run SciPy, report the end."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prefect.context import FlowRunContext

from prefect_qiskit_runtime.prefect import _utils as pu
from prefect_qiskit_runtime.prefect.loops.checkpoints import (
    CheckpointStore,
    LocalCheckpointStore,
    _LoopCheckpoint,
)
from prefect_qiskit_runtime.prefect.loops.evaluation import _Objective
from prefect_qiskit_runtime.prefect.loops.reporting import _LoopProgress


@dataclass
class LoopResult:
    """What :func:`minimize` returns.

    Attributes:
        x: The best parameters found.
        fun: The cost at ``x``.
        nfev: Cost evaluations in the whole loop, replayed ones included.
        evaluated: Evaluations this run performed (task runs); the rest were replayed.
        replayed: Evaluations answered from the checkpoint.
        history: One entry per evaluation: ``k``, ``value``, ``best``, ``params``, ``seconds``.
        success: The optimizer's own verdict.
        message: The optimizer's message.
        loop_key: The checkpoint key.
        optimizer_result: SciPy's ``OptimizeResult`` (``None`` when restored from a finished loop).
    """

    x: np.ndarray
    fun: float
    nfev: int
    evaluated: int
    replayed: int
    history: list[dict[str, Any]]
    success: bool
    message: str
    loop_key: str
    optimizer_result: Any = field(default=None, repr=False)


def _default_key(name: str) -> str:
    ctx = FlowRunContext.get()
    if ctx is not None and ctx.flow_run is not None:
        # A retried flow run keeps its id, so it finds its checkpoint; a new run starts afresh.
        return f"{ctx.flow_run.flow_id}-{ctx.flow_run.id}-{name}"
    return f"{name}-{os.getpid()}-{time.time_ns()}"


def _budget(method: str, options: Mapping[str, Any]) -> int | None:
    for name in ("maxfev", "maxfun", "maxiter"):
        value = options.get(name)
        if isinstance(value, int) and value > 0:
            return value
    if method.upper() == "COBYLA":
        return 1000
    return None


def minimize(
    cost: Callable[[np.ndarray], float],
    x0: Sequence[float] | np.ndarray,
    *,
    method: str = "COBYLA",
    options: Mapping[str, Any] | None = None,
    bounds: Sequence[tuple[float | None, float | None]] | None = None,
    tol: float | None = None,
    name: str = "hybrid-loop",
    loop_key: str | None = None,
    checkpoints: CheckpointStore | None = None,
    progress_interval: float = 1.0,
    plot_interval: float = 5.0,
    artifact_key: str | None = None,
    iteration_options: Mapping[str, Any] | None = None,
    stop_after: int | None = None,
    log_iterations: bool = False,
) -> LoopResult:
    """Minimize ``cost`` with SciPy, one task run per evaluation, checkpointed and resumable.

    Call it inside a flow. Each evaluation runs ``cost(params)`` in a task run named
    ``iteration-{k}`` (``k`` counts from 0). Replayed evaluations (on resume) make no task runs.

    Args:
        cost: Maps a parameter vector to a float; for example :func:`estimator_cost`.
        x0: Starting parameters.
        method: A ``scipy.optimize.minimize`` method; deterministic ones resume exactly.
        options: The method's options (``maxiter``, ``rhobeg``...).
        bounds: Parameter bounds, for methods that take them.
        tol: Tolerance passed to SciPy.
        name: Names the loop in artifacts, events and the default key.
        loop_key: Checkpoint key. The default ties it to the flow run, so a *retry* of the flow run
            resumes; give an explicit key to resume across flow runs (a restarted deployment run).
        checkpoints: Where records go; default :class:`LocalCheckpointStore`.
        progress_interval: Seconds between two progress updates (artifact and event).
        plot_interval: Seconds between two redraws of the convergence chart while the loop runs,
            the first one included (each costs about 50 ms of drawing and one API call); it is
            drawn once more at the end.
        artifact_key: Key of the convergence artifact; default derived from ``name``.
        iteration_options: ``with_options`` for the iteration task (``retries``,
            ``timeout_seconds``).
        stop_after: Testing aid: raise after this many evaluations of this run, as a crash would.
        log_iterations: Keep Prefect's "Finished in state Completed()" log line of every
            successful iteration. Off by default: it costs a few milliseconds per iteration and
            repeats what the task run's state shows; failures and retries are always logged.

    Returns:
        The best point, its value, and the full history.

    Example:
        ```python
        from prefect import flow
        from prefect_qiskit_runtime import QiskitRuntimeBackend
        from prefect_qiskit_runtime.prefect.loops import estimator_cost, minimize

        @flow
        def vqe(ansatz, hamiltonian):
            backend = QiskitRuntimeBackend.load("BLOCK_NAME")
            energy = estimator_cost(backend, ansatz, hamiltonian)
            return minimize(energy, [0.0] * ansatz.num_parameters, options={"maxiter": 200})
        ```
    """
    store: CheckpointStore = checkpoints if checkpoints is not None else LocalCheckpointStore()
    key = loop_key or _default_key(name)
    opts = dict(options or {})
    checkpoint = _LoopCheckpoint.load(store, key)
    if checkpoint.done is not None:
        pu.run_logger().info("Loop %s already finished; returning its stored result", key)
        return _result_from_records(key, checkpoint.history, checkpoint.done)
    x_start = checkpoint.start(np.asarray(x0, dtype=float), name=name, method=method, options=opts)
    progress = _LoopProgress(
        name,
        method,
        key,
        budget=_budget(method, opts),
        interval=progress_interval,
        history=checkpoint.history,
        artifact_key=artifact_key or f"{name}-convergence",
        plot_interval=plot_interval,
    )
    objective = _Objective(
        cost,
        checkpoint,
        progress,
        iteration_options=iteration_options,
        stop_after=stop_after,
    )
    started = time.monotonic()
    with pu.quiet_task_completions("iteration-", enabled=not log_iterations):
        opt = _run_optimizer(
            objective, x_start, method=method, options=opts, bounds=bounds, tol=tol
        )
    result = _best_result(opt, objective)
    _conclude(result, checkpoint, progress, started=started)
    return result


def _run_optimizer(
    objective: Callable[[np.ndarray], float],
    x_start: np.ndarray,
    *,
    method: str,
    options: dict[str, Any],
    bounds: Sequence[tuple[float | None, float | None]] | None,
    tol: float | None,
) -> Any:
    """Run ``scipy.optimize.minimize``, passing ``bounds`` and ``tol`` only when given."""
    from scipy.optimize import minimize as scipy_minimize

    kwargs: dict[str, Any] = {"method": method, "options": options}
    if bounds is not None:
        kwargs["bounds"] = bounds
    if tol is not None:
        kwargs["tol"] = tol
    return scipy_minimize(objective, x_start, **kwargs)


def _best_result(opt: Any, objective: _Objective) -> LoopResult:
    """The loop's result: the best evaluation of the whole history, replayed ones included.

    SciPy's own ``x`` and ``fun`` count only when there is no history at all.
    """
    history = objective.checkpoint.history
    best = min(history, key=lambda r: r["value"]) if history else None
    return LoopResult(
        x=np.asarray(best["params"]) if best else np.asarray(opt.x),
        fun=float(best["value"]) if best else float(opt.fun),
        nfev=len(history),
        evaluated=objective.evaluated,
        replayed=objective.replayed,
        history=history,
        success=bool(opt.success),
        message=str(opt.message),
        loop_key=objective.checkpoint.key,
        optimizer_result=opt,
    )


def _done_record(result: LoopResult) -> dict[str, Any]:
    """The final checkpoint record of a loop (read back by :func:`_result_from_records`)."""
    return {
        "type": "done",
        "x": result.x.tolist(),
        "fun": result.fun,
        "nfev": result.nfev,
        "success": result.success,
        "message": result.message,
    }


def _conclude(
    result: LoopResult,
    checkpoint: _LoopCheckpoint,
    progress: _LoopProgress,
    *,
    started: float,
) -> None:
    """Store the final record, then show the end: progress, convergence artifact, event, log."""
    checkpoint.finish(_done_record(result))
    elapsed = time.monotonic() - started
    progress.finish(result, elapsed)
    pu.run_logger().info(
        "Loop %s finished: %.10f after %d evaluations (%d evaluated, %d replayed) in %.2fs",
        result.loop_key,
        result.fun,
        result.nfev,
        result.evaluated,
        result.replayed,
        elapsed,
    )


def _result_from_records(
    key: str, history: list[dict[str, Any]], done: dict[str, Any]
) -> LoopResult:
    return LoopResult(
        x=np.asarray(done["x"], dtype=float),
        fun=float(done["fun"]),
        nfev=int(done.get("nfev", len(history))),
        evaluated=0,
        replayed=len(history),
        history=history,
        success=bool(done.get("success", True)),
        message=str(done.get("message", "")),
        loop_key=key,
    )
