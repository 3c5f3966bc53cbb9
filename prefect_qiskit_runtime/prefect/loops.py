"""Hybrid loops as observable, resumable Prefect runs.

:func:`minimize` runs a SciPy optimizer whose every cost evaluation is one Prefect task run named
``iteration-{k}``. After each evaluation the parameters and the value are appended to a checkpoint,
so a retried or restarted flow run resumes where the last one stopped. Progress (a progress artifact
and a ``prefect-qiskit-runtime.loop.progress`` event) is throttled to about once a second, and the
loop leaves one convergence artifact at the end: a markdown chart plus the history table.

How resuming works: SciPy optimizers cannot be paused, but the deterministic ones (COBYLA,
Nelder-Mead, Powell, BFGS, L-BFGS-B, SLSQP...) ask for the same points when fed the same values. On
resume the loop answers the first ``n`` requests from the checkpoint, without task runs or jobs, as
long as each requested point matches the recorded one; from there on it evaluates for real. If a
point differs (a stochastic optimizer), the checkpoint is cut at that point and the loop continues
live from there.

Where checkpoints live: by default a JSON-lines file per loop key under
``$PREFECT_HOME/qiskit-runtime/checkpoints``. One appended line per iteration costs well under a
millisecond, survives a crash of the process (a torn last line is ignored), and needs no API call,
whereas a Prefect Variable costs an API round trip per iteration and limits the value's size. For a
loop whose retries may land on another machine, pass a :class:`BlockCheckpointStore` over any
Prefect ``WritableFileSystem`` block (S3, GCS, SMB, a shared ``LocalFileSystem``).

:func:`estimator_cost` builds the usual cost function: one ``estimator`` job per evaluation, with an
idempotency key derived from the iteration's task run, so a retried iteration never runs twice.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from prefect_qiskit_runtime.prefect import _utils as pu

if TYPE_CHECKING:
    from prefect.filesystems import WritableFileSystem

    from prefect_qiskit_runtime.prefect.blocks import QiskitRuntimeBackend

__all__ = [
    "BlockCheckpointStore",
    "CheckpointStore",
    "EstimatorCost",
    "LocalCheckpointStore",
    "LoopResult",
    "estimator_cost",
    "minimize",
    "render_convergence_markdown",
]

#: Two points count as "the same request" during replay when they agree to this absolute tolerance.
_REPLAY_ATOL = 1e-12
_CHECKPOINT_VERSION = 1


# ------------------------------------------------------------------------------------------------
# Checkpoint stores.
# ------------------------------------------------------------------------------------------------


class CheckpointStore(Protocol):
    """Where a loop keeps its records: one header, one record per iteration, one final record."""

    def load(self, key: str) -> list[dict[str, Any]]:
        """Every record stored under ``key``, oldest first (``[]`` when there is none)."""
        ...

    def append(self, key: str, record: dict[str, Any]) -> None:
        """Add one record under ``key``; it must be durable when this returns."""
        ...

    def replace(self, key: str, records: list[dict[str, Any]]) -> None:
        """Store exactly ``records`` under ``key`` (used to cut a diverged history)."""
        ...


def _safe_name(key: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._")
    return name[:200] or "loop"


def default_checkpoint_dir() -> Path:
    """``$PREFECT_HOME/qiskit-runtime/checkpoints`` (created on first write)."""
    from prefect.settings import PREFECT_HOME

    return Path(PREFECT_HOME.value()).expanduser() / "qiskit-runtime" / "checkpoints"


class LocalCheckpointStore:
    """JSON-lines files in a directory, one per loop key; one appended line per iteration.

    Args:
        directory: Where the files go; default ``$PREFECT_HOME/qiskit-runtime/checkpoints``.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_checkpoint_dir()

    def path(self, key: str) -> Path:
        """The file holding ``key``'s records."""
        return self.directory / f"{_safe_name(key)}.jsonl"

    def load(self, key: str) -> list[dict[str, Any]]:
        """Read ``key``'s records; a torn last line (a crash mid-write) is dropped."""
        path = self.path(key)
        if not path.exists():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return records

    def append(self, key: str, record: dict[str, Any]) -> None:
        """Append one record and flush it to the OS (a process crash cannot lose it)."""
        path = self.path(key)
        line = json.dumps(record, separators=(",", ":")) + "\n"
        try:
            fh = path.open("a", encoding="utf-8")
        except FileNotFoundError:  # first write: no mkdir per iteration
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = path.open("a", encoding="utf-8")
        with fh:
            fh.write(line)

    def replace(self, key: str, records: list[dict[str, Any]]) -> None:
        """Atomically rewrite ``key``'s file (write a temporary file, then rename)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records), encoding="utf-8"
        )
        os.replace(tmp, path)


class BlockCheckpointStore:
    """Checkpoints in a Prefect ``WritableFileSystem`` block, for loops that may resume elsewhere.

    Each write stores the whole history (object stores cannot append), so prefer
    :class:`LocalCheckpointStore` for loops of thousands of iterations on one machine.

    Args:
        filesystem: A saved or in-memory filesystem block (``LocalFileSystem``,
            ``RemoteFileSystem``, ``S3Bucket``...).
        prefix: Folder inside the filesystem.
    """

    def __init__(self, filesystem: WritableFileSystem, prefix: str = "qiskit-runtime-checkpoints"):
        self.filesystem = filesystem
        self.prefix = prefix.strip("/")
        self._cache: dict[str, list[dict[str, Any]]] = {}

    def _path(self, key: str) -> str:
        return f"{self.prefix}/{_safe_name(key)}.json"

    def load(self, key: str) -> list[dict[str, Any]]:
        """Read ``key``'s records (``[]`` when the file does not exist)."""
        try:
            raw: Any = self.filesystem.read_path(self._path(key))
        except (FileNotFoundError, ValueError, OSError):
            records: list[dict[str, Any]] = []
        else:
            records = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        self._cache[key] = list(records)
        return records

    def append(self, key: str, record: dict[str, Any]) -> None:
        """Add a record and write the whole history back."""
        records = self._cache.setdefault(key, [])
        records.append(record)
        self.replace(key, records)

    def replace(self, key: str, records: list[dict[str, Any]]) -> None:
        """Write exactly ``records``."""
        self._cache[key] = list(records)
        written: Any = self.filesystem.write_path(self._path(key), json.dumps(records).encode())
        del written  # a coroutine only in async code, where this store is not used


# ------------------------------------------------------------------------------------------------
# The loop.
# ------------------------------------------------------------------------------------------------


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


@task(
    name="iteration",
    task_run_name="iteration-{k}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=pu.is_retryable_failure,
)
def _iteration(cost: Callable[[np.ndarray], float], k: int, params: list[float]) -> float:
    """One cost evaluation of a hybrid loop (one task run named ``iteration-{k}``)."""
    return float(cost(np.asarray(params, dtype=float)))


@dataclass
class _LoopState:
    k: int = 0
    evaluated: int = 0
    replayed: int = 0
    best: float = math.inf
    diverged: bool = False


class _Interrupted(Exception):
    """Raised by the test hook ``stop_after`` to simulate a crash mid-loop."""


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
    from scipy.optimize import minimize as scipy_minimize

    store: CheckpointStore = checkpoints if checkpoints is not None else LocalCheckpointStore()
    key = loop_key or _default_key(name)
    opts = dict(options or {})
    x_start = np.asarray(x0, dtype=float)
    logger = pu.run_logger()
    iteration = (
        _iteration.with_options(**dict(iteration_options)) if iteration_options else _iteration
    )

    records = store.load(key)
    header = records[0] if records and records[0].get("type") == "header" else None
    if header is None:
        records = []
    done = next((r for r in records if r.get("type") == "done"), None)
    history: list[dict[str, Any]] = [r for r in records if r.get("type") == "eval"]
    if done is not None:
        logger.info("Loop %s already finished; returning its stored result", key)
        return _result_from_records(key, history, done)
    if header is None:
        store.append(
            key,
            {
                "type": "header",
                "version": _CHECKPOINT_VERSION,
                "name": name,
                "method": method,
                "x0": x_start.tolist(),
                "options": pu.jsonable(opts),
            },
        )
    else:
        # Restart from the recorded start, so the optimizer retraces the same path.
        x_start = np.asarray(header["x0"], dtype=float)
    replay = list(history)
    if replay:
        logger.info("Resuming loop %s: replaying %d recorded evaluations", key, len(replay))

    budget = _budget(method, opts)
    throttle = pu.Throttle(progress_interval)
    progress_id = pu.create_progress(
        100.0 * len(history) / budget if budget else 0.0,
        f"Hybrid loop `{name}` ({method})",
    )
    resource_id = f"{pu.EVENT_PREFIX}.loop.{key}"
    state = _LoopState()
    live: list[dict[str, Any]] = []  # evaluations of this run, in order
    started = time.monotonic()

    def evaluate(params: np.ndarray) -> float:
        k = state.k
        state.k = k + 1
        point = [float(v) for v in np.ravel(params)]
        if not state.diverged and k < len(replay):
            rec = replay[k]
            if len(rec["params"]) == len(point) and np.allclose(
                rec["params"], point, rtol=0.0, atol=_REPLAY_ATOL
            ):
                state.replayed += 1
                state.best = min(state.best, rec["value"])
                return float(rec["value"])
            logger.warning(
                "Loop %s diverged from its checkpoint at evaluation %d; continuing live", key, k
            )
            state.diverged = True
            store.replace(key, [header or {"type": "header"}, *replay[:k]])
            del history[k:]
        if stop_after is not None and state.evaluated >= stop_after:
            raise _Interrupted(f"stopped after {stop_after} evaluations (stop_after)")
        t0 = time.monotonic()
        value = float(iteration(cost, k, point))  # type: ignore[call-overload]
        state.evaluated += 1
        state.best = min(state.best, value)
        rec = {
            "type": "eval",
            "k": k,
            "params": point,
            "value": value,
            "best": state.best,
            "seconds": round(time.monotonic() - t0, 6),
        }
        store.append(key, rec)
        history.append(rec)
        live.append(rec)
        if throttle.ready():
            pct = 100.0 * (k + 1) / budget if budget else 0.0
            pu.update_progress(progress_id, min(99.0, pct))
            pu.emit(
                "loop.progress",
                resource_id,
                resource={"prefect.resource.name": name},
                payload={"k": k, "value": value, "best": state.best, "loop_key": key},
            )
        return value

    kwargs: dict[str, Any] = {"method": method, "options": opts}
    if bounds is not None:
        kwargs["bounds"] = bounds
    if tol is not None:
        kwargs["tol"] = tol
    with pu.quiet_task_completions("iteration-", enabled=not log_iterations):
        opt = scipy_minimize(evaluate, x_start, **kwargs)

    best = min(history, key=lambda r: r["value"]) if history else None
    x_best = np.asarray(best["params"]) if best else np.asarray(opt.x)
    f_best = float(best["value"]) if best else float(opt.fun)
    done_rec = {
        "type": "done",
        "x": x_best.tolist(),
        "fun": f_best,
        "nfev": len(history),
        "success": bool(opt.success),
        "message": str(opt.message),
    }
    store.append(key, done_rec)
    elapsed = time.monotonic() - started
    pu.update_progress(progress_id, 100.0, f"Hybrid loop `{name}` finished: {f_best:.8f}")
    pu.emit(
        "loop.completed",
        resource_id,
        resource={"prefect.resource.name": name},
        payload={
            "loop_key": key,
            "fun": f_best,
            "nfev": len(history),
            "evaluated": state.evaluated,
            "replayed": state.replayed,
            "seconds": round(elapsed, 3),
        },
    )
    result = LoopResult(
        x=x_best,
        fun=f_best,
        nfev=len(history),
        evaluated=state.evaluated,
        replayed=state.replayed,
        history=history,
        success=bool(opt.success),
        message=str(opt.message),
        loop_key=key,
        optimizer_result=opt,
    )
    pu.create_markdown(
        render_convergence_markdown(result, name=name, method=method),
        key=pu.artifact_key(artifact_key or f"{name}-convergence"),
        description=(
            f"Convergence of hybrid loop `{name}`: {f_best:.8f} after {len(history)} evaluations."
        ),
    )
    logger.info(
        "Loop %s finished: %.10f after %d evaluations (%d evaluated, %d replayed) in %.2fs",
        key,
        f_best,
        len(history),
        state.evaluated,
        state.replayed,
        elapsed,
    )
    return result


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


# ------------------------------------------------------------------------------------------------
# The convergence artifact.
# ------------------------------------------------------------------------------------------------


def ascii_chart(values: Sequence[float], width: int = 64, height: int = 14) -> str:
    """A plain-text line chart of ``values`` (evaluation on x, value on y).

    Args:
        values: The series.
        width: Columns of the plot area.
        height: Rows of the plot area.

    Returns:
        Lines joined by newlines, with a y-axis scale on the left.
    """
    vals = [float(v) for v in values if math.isfinite(float(v))]
    if not vals:
        return "(no data)"
    lo, hi = min(vals), max(vals)
    span = hi - lo or 1.0
    cols = min(width, len(vals))
    grid = [[" "] * cols for _ in range(height)]
    for c in range(cols):
        # Each column shows the lowest value of its bucket: the chart tracks progress to the
        # minimum.
        a = c * len(vals) // cols
        b = max(a + 1, (c + 1) * len(vals) // cols)
        v = min(vals[a:b])
        r = round((hi - v) / span * (height - 1))
        grid[r][c] = "*"
    labels = [f"{hi - span * r / (height - 1):>13.6f}" for r in range(height)]
    lines = [f"{labels[r]} |{''.join(grid[r])}" for r in range(height)]
    lines.append(" " * 14 + "+" + "-" * cols)
    lines.append(
        " " * 15 + f"0{'evaluation':^{max(cols - 2 * len(str(len(vals))), 10)}}{len(vals)}"
    )
    return "\n".join(lines)


def render_convergence_markdown(
    result: LoopResult, *, name: str, method: str, max_rows: int = 200
) -> str:
    """Render a loop's convergence as markdown: summary, chart and history table.

    Args:
        result: The loop result.
        name: The loop's name.
        method: The optimizer.
        max_rows: Longest table; a longer history keeps its first and last rows.

    Returns:
        Markdown text.
    """
    hist = result.history
    lines = [
        f"## Convergence of `{name}`",
        "",
        f"- best value: **{result.fun:.10f}**",
        f"- evaluations: {result.nfev} ({result.evaluated} run, {result.replayed} replayed from "
        f"the checkpoint)",
        f"- optimizer: {method}, success: {result.success} ({result.message})",
        f"- best parameters: `{[round(float(v), 6) for v in result.x]}`",
        f"- checkpoint key: `{result.loop_key}`",
        "",
        "```text",
        ascii_chart([r["value"] for r in hist]),
        "```",
        "",
        "| k | value | best so far | seconds | parameters |",
        "|---:|---:|---:|---:|---|",
    ]
    rows = hist
    skipped = 0
    if len(hist) > max_rows:
        head = max_rows // 4
        rows = hist[:head] + hist[-(max_rows - head) :]
        skipped = len(hist) - max_rows
    for i, r in enumerate(rows):
        if skipped and i == max_rows // 4:
            lines.append(f"| … | {skipped} rows omitted | | | |")
        params = ", ".join(f"{p:.5f}" for p in r["params"])
        lines.append(
            f"| {r['k']} | {r['value']:.10f} | {r['best']:.10f} | {r.get('seconds', 0):.3f} | "
            f"{params} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# A cost function on the estimator program.
# ------------------------------------------------------------------------------------------------


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
    ) -> None:
        self.backend = backend
        self.circuit = circuit
        self.observable = observable
        self.precision = precision
        self.program_id = program_id
        self.timeout = timeout
        self.jobs = 0
        self._encoded: tuple[Any, Any] | None = None
        self._encoded_ids: tuple[int, int] = (0, 0)

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
        from prefect_qiskit_runtime.prefect.tasks.submission import submit_job
        from prefect_qiskit_runtime.prefect.tasks.waiting import _cancel_quietly

        job = submit_job(
            self.backend.get_client(),
            self.program_id,
            self.backend.run_options(),
            self.backend.merge_inputs(self.inputs(np.ravel(params).tolist())),
            key=pu.task_run_key(self.program_id),
            replace_failed=pu.task_run_count() > 1,
        )
        self.jobs += 1
        try:
            result = job.result(timeout=self.timeout)
        except BaseException as exc:
            # Cancellation or our own timeout: stop the job. A lost answer is left alone, because
            # the retried iteration picks the same job up again.
            if not isinstance(exc, Exception) or isinstance(exc, TimeoutError):
                _cancel_quietly(job, type(exc).__name__)
            raise
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
) -> EstimatorCost:
    """Build a cost function that runs the ``estimator`` program once per evaluation.

    Args:
        backend: Where the jobs run.
        circuit: The parametrised ansatz.
        observable: The Hamiltonian.
        precision: Target precision; ``None`` keeps the program's default (exact on Aer).
        program_id: The estimator program's id.
        timeout: Seconds to wait for one job.

    Returns:
        A callable ``cost(params) -> float`` for :func:`minimize`.
    """
    return EstimatorCost(
        backend,
        circuit,
        observable,
        precision=precision,
        program_id=program_id,
        timeout=timeout,
    )
