"""A fresh process's first result: ``RuntimeService()`` → one ``estimator`` job → its value.

Started by ``run.py`` with ``PREFECT_QISKIT_RUNTIME_HOME`` set; with no service running there, the
client starts the embedded service (the cold start), otherwise it reuses it (the warm start). Prints
``FIRST_RESULT <energy>`` once the result is in; the caller times from its ``Popen`` to that line.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import problem

from prefect_qiskit_runtime.client import RuntimeService


def main() -> None:
    """Run one estimator job on the embedded service and print its energy."""
    service = RuntimeService()
    vector = problem.parameter_vectors(1)[0]
    job = service.run(
        "estimator", {"backend_name": "aer_simulator"}, {"pubs": [problem.estimator_pub(vector)]}
    )
    result = job.result(timeout=300)
    print(f"FIRST_RESULT {float(result[0].data.evs)!r}", flush=True)


if __name__ == "__main__":
    main()
