"""prefect-qiskit's hybrid loop, run inside its own venv (``prefect-qiskit==0.2.1``).

Started by ``run.py`` with the venv's interpreter: ``python prefect_qiskit_loop.py CONFIG OUT``.
CONFIG is a JSON file ``{"iterations": n, "warmup": w}``; OUT receives
``{"per_iteration_ms": [...], "sim_ms": [...], "energies": [...]}``. The Prefect API is a
``prefect_test_harness`` of this process (its start-up is not measured); ``PREFECT_HOME`` is set by
the caller to a temporary directory.

Each iteration is one ``QuantumRuntime.estimator`` call with prefect-qiskit's Aer credentials, on
the benchmark's ansatz transpiled once for that runtime's target (what its documentation shows). The
``sim_ms`` series times the same primitive (``BackendEstimatorV2`` on the same generic backend)
without Prefect, for reference: prefect-qiskit's Aer path estimates with shots.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import problem


def main(config_path: str, out_path: str) -> None:
    """Run the loop and write the timings."""
    config = json.loads(Path(config_path).read_text())
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness
    from prefect_qiskit.runtime import QuantumRuntime
    from prefect_qiskit.vendors.qiskit_aer import QiskitAerCredentials
    from qiskit.primitives import BackendEstimatorV2
    from qiskit.transpiler import generate_preset_pass_manager

    vectors = problem.parameter_vectors(config["iterations"])
    warmup = problem.parameter_vectors(config["warmup"] + 1000)[1000:]

    @flow(name="prefect-qiskit-benchmark")
    def loop() -> dict[str, list[float]]:
        credentials = QiskitAerCredentials(num_qubits=problem.NUM_QUBITS)
        runtime = QuantumRuntime(resource_name="aer_simulator", credentials=credentials)
        target = runtime.get_target()
        circuit = generate_preset_pass_manager(optimization_level=1, target=target).run(
            problem.ansatz()
        )
        observable = problem.hamiltonian().apply_layout(circuit.layout)
        for params in warmup:
            runtime.estimator([(circuit, observable, params)])
        times, energies = [], []
        for params in vectors:
            start = time.perf_counter()
            result = runtime.estimator([(circuit, observable, params)])
            times.append((time.perf_counter() - start) * 1000)
            energies.append(float(result[0].data.evs))
        primitive = BackendEstimatorV2(backend=credentials.get_client()._backend)
        sim = []
        for params in vectors:
            start = time.perf_counter()
            primitive.run([(circuit, observable, params)]).result()
            sim.append((time.perf_counter() - start) * 1000)
        return {"per_iteration_ms": times, "sim_ms": sim, "energies": energies}

    with prefect_test_harness(server_startup_timeout=120):
        report = loop()
    Path(out_path).write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
