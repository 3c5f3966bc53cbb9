"""The objective SciPy minimizes: replayed from the checkpoint while it matches, else a task run.

See *How resuming works* in :mod:`prefect_qiskit_runtime.prefect.loops`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from prefect_qiskit_runtime.prefect import _utils as pu

if TYPE_CHECKING:
    from prefect_qiskit_runtime.prefect.loops.checkpoints import _LoopCheckpoint
    from prefect_qiskit_runtime.prefect.loops.reporting import _LoopProgress

#: Two points count as "the same request" during replay when they agree to this absolute tolerance.
_REPLAY_ATOL = 1e-12


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


class _Interrupted(Exception):
    """Raised by the test hook ``stop_after`` to simulate a crash mid-loop."""


class _Objective:
    """Counts the optimizer's requests and answers each by replay or by one ``iteration`` task run.

    Args:
        cost: The caller's cost function.
        checkpoint: The loop's records; live evaluations are appended to it.
        progress: Where evaluations are reported.
        iteration_options: ``with_options`` for the iteration task.
        stop_after: Raise :class:`_Interrupted` after this many live evaluations.
    """

    def __init__(
        self,
        cost: Callable[[np.ndarray], float],
        checkpoint: _LoopCheckpoint,
        progress: _LoopProgress,
        *,
        iteration_options: Mapping[str, Any] | None,
        stop_after: int | None,
    ) -> None:
        self.cost = cost
        self.checkpoint = checkpoint
        self.progress = progress
        self.iteration = (
            _iteration.with_options(**dict(iteration_options)) if iteration_options else _iteration
        )
        self.stop_after = stop_after
        self.replay = list(checkpoint.history)
        self.k = 0
        self.evaluated = 0
        self.replayed = 0
        self.best = math.inf
        self.diverged = False

    def __call__(self, params: np.ndarray) -> float:
        k = self.k
        self.k = k + 1
        point = [float(v) for v in np.ravel(params)]
        value = self._replayed_value(k, point)
        return value if value is not None else self._evaluate(k, point)

    def _replayed_value(self, k: int, point: list[float]) -> float | None:
        """The recorded value of request ``k`` if it asks for the recorded point, else ``None``.

        The first request that differs ends the replay and cuts the checkpoint there.
        """
        if self.diverged or k >= len(self.replay):
            return None
        rec = self.replay[k]
        if len(rec["params"]) == len(point) and np.allclose(
            rec["params"], point, rtol=0.0, atol=_REPLAY_ATOL
        ):
            self.replayed += 1
            self.best = min(self.best, rec["value"])
            return float(rec["value"])
        pu.run_logger().warning(
            "Loop %s diverged from its checkpoint at evaluation %d; continuing live",
            self.checkpoint.key,
            k,
        )
        self.diverged = True
        self.checkpoint.truncate(k)
        return None

    def _evaluate(self, k: int, point: list[float]) -> float:
        """Evaluate request ``k`` in a task run, checkpoint it and report it."""
        if self.stop_after is not None and self.evaluated >= self.stop_after:
            raise _Interrupted(f"stopped after {self.stop_after} evaluations (stop_after)")
        t0 = time.monotonic()
        value = float(self.iteration(self.cost, k, point))  # type: ignore[call-overload]
        self.evaluated += 1
        self.best = min(self.best, value)
        self.checkpoint.append(
            {
                "type": "eval",
                "k": k,
                "params": point,
                "value": value,
                "best": self.best,
                "seconds": round(time.monotonic() - t0, 6),
            }
        )
        self.progress.update(k, value, self.best)
        return value
