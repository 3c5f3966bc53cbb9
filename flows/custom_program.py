"""The whole lifecycle of your own runtime program: upload, run, await (streaming), delete.

Run it with ``python flows/custom_program.py``. The program below sweeps the angle of an RY
rotation, publishes the measured probability of ``1`` after each point (streamed into the task's
log) and returns the whole curve. The flow uploads it (updating it if a program of that name already
exists), runs it, waits for the result, and deletes both the job and the program at the end.
"""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import math
from typing import Any

from prefect import flow

from prefect_qiskit_runtime import QiskitRuntimeBackend
from prefect_qiskit_runtime.prefect.tasks import (
    await_result,
    delete_job,
    delete_program,
    run_program,
    upload_program,
)

PROGRAM_SOURCE = '''
"""rabi-sweep: P(1) of RY(theta)|0> for evenly spaced angles."""
import math

from qiskit import QuantumCircuit, transpile


def main(backend, user_messenger, points=8, shots=2000):
    curve = []
    for i in range(points):
        theta = math.pi * i / max(points - 1, 1)
        qc = QuantumCircuit(1, 1)
        qc.ry(theta, 0)
        qc.measure(0, 0)
        counts = backend.run(transpile(qc, backend), shots=shots).result().get_counts()
        p1 = counts.get("1", 0) / shots
        user_messenger.publish({"iteration": i, "theta": theta, "p1": p1})
        curve.append([theta, p1])
    print(f"swept {points} angles")
    return curve
'''

PROGRAM_METADATA: dict[str, Any] = {
    "name": "rabi-sweep",
    "description": "P(1) of RY(theta)|0> over evenly spaced angles, one interim result per angle.",
    "max_execution_time": 300,
    "spec": {
        "parameters": {
            "type": "object",
            "properties": {
                "points": {"type": "integer", "minimum": 1, "description": "Angles to sweep."},
                "shots": {"type": "integer", "minimum": 1, "description": "Shots per angle."},
            },
        },
        "return_values": {"type": "array", "description": "[theta, p1] pairs."},
        "interim_results": {
            "type": "object",
            "properties": {"iteration": {"type": "integer"}, "p1": {"type": "number"}},
        },
    },
}


@flow(name="custom-program-lifecycle", log_prints=True)
def custom_program(
    points: int = 8, shots: int = 2000, backend_block: str | None = None, keep: bool = False
) -> list[list[float]]:
    """Upload ``rabi-sweep``, run it, stream and return its curve, then delete job and program.

    Args:
        points: Angles to sweep.
        shots: Shots per angle.
        backend_block: Name of a saved ``QiskitRuntimeBackend`` block; default: embedded Aer.
        keep: Keep the program and the job instead of deleting them.

    Returns:
        ``[[theta, p1], ...]``.
    """
    backend = QiskitRuntimeBackend.load(backend_block) if backend_block else QiskitRuntimeBackend()
    program_id = upload_program(backend, PROGRAM_SOURCE, PROGRAM_METADATA, exist_ok=True)
    job_id = run_program(backend, program_id, {"points": points, "shots": shots})
    try:
        curve: Any = await_result(backend, job_id)
    finally:
        if not keep:
            delete_job(backend, job_id)
            delete_program(backend, program_id)
    worst = max(abs(p1 - math.sin(theta / 2) ** 2) for theta, p1 in curve)
    print(f"largest deviation from sin^2(theta/2): {worst:.3f}")
    return curve


if __name__ == "__main__":
    for theta, p1 in custom_program():
        print(f"theta={theta:.3f} P(1)={p1:.3f}")
