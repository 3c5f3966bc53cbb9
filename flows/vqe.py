"""VQE for the H2 molecule, solved twice: one task run per iteration, and inside one runtime job.

Run it with ``python flows/vqe.py``. Nothing needs configuring: with no ``PREFECT_API_URL``, Prefect
starts a temporary local server, and with no saved backend block the client starts (or reuses) the
embedded runtime service. The last line printed is::

    VQE energy: <E> Ha, exact: <E0> Ha, error: <E-E0> Ha

The Hamiltonian is H2 at its equilibrium bond length 0.735 Å in the STO-3G basis, parity-mapped with
two-qubit reduction to two qubits; its coefficients are those of Qiskit's VQE tutorials (see
``h2_molecule.py``, which also derives them from first principles). ``E0`` comes from exact
diagonalization of the same 4x4 matrix.

1. **Client-side**: ``loops.minimize`` runs COBYLA here; every energy evaluation is a task run named
   ``iteration-{k}``, checkpointed so a retried flow run resumes where it stopped. The evaluations
   go to one serving ``estimator`` job (``session=True``: a websocket round trip each, the ansatz
   kept warm in the job), or with ``session=False`` to one ``estimator`` job each. The loop
   leaves a convergence artifact.
2. **Server-side**: the ``vqe`` program runs the whole loop inside one runtime job; its interim
   results stream into the task's log, and the job leaves a metrics table artifact.
"""

from __future__ import annotations

import os

# A temporary Prefect server on 2 slow cores can take a while to start; no telemetry from examples.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import atexit
from typing import Any

from h2_molecule import (
    EQUILIBRIUM_BOND_LENGTH,
    equilibrium_hamiltonian,
    exact_ground_energy,
    h2_hamiltonian,
)
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from prefect_qiskit_runtime import QiskitRuntimeBackend
from prefect_qiskit_runtime.prefect.loops import estimator_cost, minimize
from prefect_qiskit_runtime.prefect.tasks import run_and_await

#: Chemical accuracy, in hartree (1 kcal/mol).
CHEMICAL_ACCURACY = 1.6e-3


def load_backend(block_name: str | None) -> QiskitRuntimeBackend:
    """A saved ``QiskitRuntimeBackend`` block, or the embedded service's ``aer_simulator``."""
    if block_name:
        return QiskitRuntimeBackend.load(block_name)
    return QiskitRuntimeBackend(backend_name="aer_simulator")


def hamiltonian_for(bond_length: float) -> list[tuple[str, float]]:
    """The literature coefficients at equilibrium, the first-principles ones elsewhere."""
    if abs(bond_length - EQUILIBRIUM_BOND_LENGTH) < 1e-9:
        return equilibrium_hamiltonian()
    return h2_hamiltonian(bond_length)


def ansatz(reps: int = 1) -> Any:
    """RealAmplitudes on two qubits: enough to reach the exact ground state of this Hamiltonian."""
    from qiskit.circuit.library import real_amplitudes

    return real_amplitudes(2, reps=reps, entanglement="reverse_linear")


@flow(name="h2-vqe-client-side", log_prints=True)
def vqe_client_side(
    bond_length: float = EQUILIBRIUM_BOND_LENGTH,
    maxiter: int = 200,
    backend_block: str | None = None,
    loop_key: str | None = None,
    session: bool = True,
) -> dict[str, Any]:
    """Client-side VQE: COBYLA here, one task run ``iteration-{k}`` per energy evaluation.

    Args:
        bond_length: H-H distance in ångström.
        maxiter: Most energy evaluations.
        backend_block: Name of a saved ``QiskitRuntimeBackend`` block; default: embedded Aer.
        loop_key: Checkpoint key; give one to resume across flow runs.
        session: Send every evaluation to one serving ``estimator`` job; ``False``: one job each.

    Returns:
        ``energy``, ``parameters``, ``evaluations``.
    """
    from qiskit.quantum_info import SparsePauliOp

    backend = load_backend(backend_block)
    terms = hamiltonian_for(bond_length)
    circuit = ansatz()
    with estimator_cost(backend, circuit, SparsePauliOp.from_list(terms), session=session) as cost:
        result = minimize(
            cost,
            [0.1] * circuit.num_parameters,
            method="COBYLA",
            options={"maxiter": maxiter},
            name=f"h2-vqe-{bond_length:.3f}",
            loop_key=loop_key,
        )
    return {
        "energy": result.fun,
        "parameters": result.x.tolist(),
        "evaluations": result.nfev,
        "evaluated": result.evaluated,
    }


@flow(name="h2-vqe-server-side", log_prints=True)
def vqe_server_side(
    bond_length: float = EQUILIBRIUM_BOND_LENGTH,
    maxiter: int = 200,
    backend_block: str | None = None,
) -> dict[str, Any]:
    """Server-side VQE: the ``vqe`` program runs the loop inside one job, streaming each step.

    Args:
        bond_length: H-H distance in ångström.
        maxiter: Most energy evaluations.
        backend_block: Name of a saved ``QiskitRuntimeBackend`` block; default: embedded Aer.

    Returns:
        The program's result: ``energy``, ``parameters``, ``iterations``, ``history``...
    """
    backend = load_backend(backend_block)
    terms = hamiltonian_for(bond_length)
    result: Any = run_and_await(
        backend,
        "vqe",
        {
            "hamiltonian": [[label, coeff] for label, coeff in terms],
            "ansatz": "real_amplitudes",
            "reps": 1,
            "initial_point": [0.1] * 4,
            "optimizer": "COBYLA",
            "maxiter": maxiter,
        },
    )
    return result


@flow(name="h2-vqe", log_prints=True)
def vqe(
    bond_length: float = EQUILIBRIUM_BOND_LENGTH,
    maxiter: int = 200,
    backend_block: str | None = None,
) -> dict[str, Any]:
    """Solve H2 client-side and server-side and compare both with exact diagonalization.

    Args:
        bond_length: H-H distance in ångström.
        maxiter: Most energy evaluations per solution.
        backend_block: Name of a saved ``QiskitRuntimeBackend`` block; default: embedded Aer.

    Returns:
        ``energy`` (client-side), ``server_energy``, ``exact``, ``error``, ``server_error``.
    """
    logger = get_run_logger()
    exact = exact_ground_energy(hamiltonian_for(bond_length))
    client = vqe_client_side(bond_length, maxiter, backend_block)
    server = vqe_server_side(bond_length, maxiter, backend_block)
    summary = {
        "bond_length": bond_length,
        "energy": client["energy"],
        "server_energy": server["energy"],
        "exact": exact,
        "error": client["energy"] - exact,
        "server_error": server["energy"] - exact,
        "evaluations": client["evaluations"],
        "server_iterations": server["iterations"],
    }
    create_markdown_artifact(
        markdown="\n".join(
            [
                f"## H2 at {bond_length} Å (STO-3G, 2 qubits)",
                "",
                "| solution | energy (Ha) | error (Ha) | evaluations |",
                "|---|---:|---:|---:|",
                f"| client-side loop | {client['energy']:.8f} | {summary['error']:.2e} | "
                f"{client['evaluations']} |",
                f"| server-side `vqe` program | {server['energy']:.8f} | "
                f"{summary['server_error']:.2e} | {server['iterations']} |",
                f"| exact diagonalization | {exact:.8f} | 0 | |",
            ]
        ),
        key="h2-vqe-summary",
        description="H2 ground-state energy: VQE versus exact diagonalization.",
    )
    for name in ("error", "server_error"):
        if abs(summary[name]) > CHEMICAL_ACCURACY:
            logger.warning("%s %.2e Ha exceeds chemical accuracy", name, summary[name])
    return summary


def result_line(summary: dict[str, Any]) -> str:
    """The line the README promises."""
    return (
        f"VQE energy: {summary['energy']:.6f} Ha, exact: {summary['exact']:.6f} Ha, "
        f"error: {summary['error']:.2e} Ha"
    )


if __name__ == "__main__":
    final: list[str] = []
    # Registered before Prefect starts its temporary server, so it runs after Prefect's own exit
    # handlers (which log "Stopping temporary server"): the result stays the last line.
    atexit.register(lambda: final and print(final[0], flush=True))
    final.append(result_line(vqe()))
