"""Our hybrid loop inside a Prefect flow, as ``loops.minimize`` runs it: one task run per iteration.

Started by ``run.py``: ``python prefect_loop.py CONFIG OUT``. CONFIG is a JSON file
``{"url", "token", "iterations", "warmup", "checkpoints"}``; OUT receives
``{"per_iteration_ms": [...], "energies": [...]}``. The Prefect API is a ``prefect_test_harness``
of this process (its start-up is not measured); ``PREFECT_HOME`` is set by the caller.

``loops.minimize`` drives a SciPy optimizer; to evaluate a fixed list of points instead, it is given
a custom SciPy method (SciPy calls any callable ``method``). Everything else is the real loop: the
``iteration-{k}`` task runs, the ``estimator`` job per evaluation with its idempotency key, the
checkpoint line per evaluation, throttled progress, the convergence artifact.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import problem


class FixedPoints(str):
    """A SciPy ``minimize`` method that evaluates a fixed list of points, once each, in order.

    It is a ``str`` (its name, ``"fixed-points"``) so that ``loops.minimize`` can log it and store
    it in its checkpoint header like a method name, and callable so that SciPy runs it.
    """

    points: list[list[float]]
    stamps: list[float]
    energies: list[float]

    def __new__(cls, points: list[list[float]]) -> FixedPoints:
        self = super().__new__(cls, "fixed-points")
        self.points = points
        self.stamps = []
        self.energies = []
        return self

    def __call__(
        self, fun: Callable[..., float], x0: Any, args: tuple[Any, ...] = (), **_: Any
    ) -> Any:
        import numpy as np
        from scipy.optimize import OptimizeResult

        for point in self.points:
            self.stamps.append(time.perf_counter())
            self.energies.append(float(fun(np.asarray(point), *args)))
        self.stamps.append(time.perf_counter())
        best = int(np.argmin(self.energies))
        return OptimizeResult(
            x=np.asarray(self.points[best]),
            fun=self.energies[best],
            nfev=len(self.points),
            nit=len(self.points),
            success=True,
            message="evaluated every fixed point",
        )


def main(config_path: str, out_path: str) -> None:
    """Run the loop and write the timings."""
    config = json.loads(Path(config_path).read_text())
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    from prefect_qiskit_runtime.prefect.blocks import QiskitRuntimeBackend, QiskitRuntimeCredentials
    from prefect_qiskit_runtime.prefect.loops import LocalCheckpointStore, estimator_cost, minimize

    vectors = problem.parameter_vectors(config["iterations"])
    warmup = problem.parameter_vectors(config["warmup"] + 1000)[1000:]

    @flow(name="prefect-qiskit-runtime-benchmark")
    def loop() -> dict[str, list[float]]:
        credentials = QiskitRuntimeCredentials(url=config["url"], token=config["token"])
        backend = QiskitRuntimeBackend(credentials=credentials, backend_name="aer_simulator")
        cost = estimator_cost(backend, problem.ansatz(), problem.hamiltonian())
        store = LocalCheckpointStore(config["checkpoints"])
        if warmup:
            minimize(cost, warmup[0], method=FixedPoints(warmup), name="warmup", checkpoints=store)
        method = FixedPoints(vectors)
        minimize(cost, vectors[0], method=method, name="benchmark", checkpoints=store)
        stamps = method.stamps
        per_iteration = [(b - a) * 1000 for a, b in itertools.pairwise(stamps)]
        return {"per_iteration_ms": per_iteration, "energies": method.energies}

    with prefect_test_harness(server_startup_timeout=120):
        report = loop()
    Path(out_path).write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
