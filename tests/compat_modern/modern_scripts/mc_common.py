# mypy: ignore-errors
"""Helpers shared by the scripts that run inside the modern client's venv (qiskit-ibm-runtime 0.51).

Each script records its checks with ``script_checks`` (``tests/client_scripts``, shared with the
old client's scripts) and prints them as JSON on its last stdout line. Nothing here may import the
project: this runs with the client's own Qiskit 2.6 only.

Inputs come as JSON in the environment variable ``MODERN_ARGS`` (service URL, tokens). The client
is pointed at the service exactly as ``docs/tutorials/qiskit-ibm-runtime.md`` tells a user to.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from typing import Any

# The client deprecates SamplerV2/EstimatorV2 in favour of its client-side executor primitives.
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=FutureWarning)

ARGS: dict[str, Any] = json.loads(os.environ.get("MODERN_ARGS", "{}"))
ROOT: str = ARGS.get("url", "")

# Where the client's IBM Cloud SDKs look for IAM, Global Search and Global Catalog.
os.environ["IAM_URL"] = ROOT + "/iam"
os.environ["GLOBAL_SEARCH_URL"] = ROOT + "/global-search"
os.environ["GLOBAL_CATALOG_URL"] = ROOT + "/global-catalog"

from qiskit_ibm_runtime import QiskitRuntimeService  # noqa: E402  (the environment comes first)
from script_checks import RESULTS, check, raised  # noqa: E402, F401  (tests/client_scripts)


def runtime_url(url: str, instance: str, private_endpoint: bool = False, channel: str = "") -> str:
    """The client's ``url_resolver``: the runtime API lives at ``ROOT/api/v1``."""
    return url.rstrip("/") + "/api/v1"


def connect(token: str, **kwargs: Any) -> QiskitRuntimeService:
    """A ``QiskitRuntimeService`` for ``token`` on the service under test."""
    kwargs.setdefault("instance", "auto")
    return QiskitRuntimeService(
        channel="ibm_quantum_platform",
        token=token,
        url=ROOT,
        url_resolver=runtime_url,
        **kwargs,
    )


def wait_for_status(job, wanted, timeout: float = 60.0) -> str:
    """Poll ``job.status()`` (a real GET each time) until it is one of ``wanted``."""
    deadline = time.monotonic() + timeout
    status = job.status()
    while status not in wanted:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job.job_id()} still {status}, wanted {wanted}")
        time.sleep(0.1)  # the client's own polling, only faster
        status = job.status()
    return status


def bell(measure: bool = True):
    """The Bell circuit (H, CX), measured into ``meas`` unless ``measure`` is false."""
    from qiskit import QuantumCircuit

    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    if measure:
        circuit.measure_all()
    return circuit


def slow_pub(qubits: int = 20, points: int = 60):
    """A PUB that keeps a job running for a minute or more (a parameter sweep on 20 qubits)."""
    import numpy as np
    from qiskit.circuit.library import efficient_su2

    circuit = efficient_su2(qubits, reps=4)
    circuit.measure_all()
    values = np.random.default_rng(7).random((points, circuit.num_parameters))
    return (circuit, values)


def counts_of(pub_result) -> dict[str, int]:
    """The counts of a SamplerPubResult's ``meas`` register."""
    return dict(pub_result.data.meas.get_counts())


def finish() -> None:
    """Mark the script as complete and print the results as the last stdout line."""
    RESULTS["_done"] = True
    print(json.dumps(RESULTS, default=repr))
