"""vqe: the whole variational quantum eigensolver loop inside one job.

Each cost evaluation runs the Estimator primitive in this process (no job per iteration) and
publishes ``{"iteration", "energy", "parameters"}``; the SciPy optimizer drives the loop. The
result is ``{"energy", "parameters", "iterations", "history", ...}``.
"""

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit.library import efficient_su2, real_amplitudes
from qiskit.quantum_info import SparsePauliOp
from scipy.optimize import minimize

from prefect_qiskit_runtime.server.backends import estimator_for, preset_pass_manager

ANSATZE = {"real_amplitudes": real_amplitudes, "efficient_su2": efficient_su2}


def parse_hamiltonian(hamiltonian):
    """A SparsePauliOp from a Pauli dict, a list of ``[label, coeff]`` or a SparsePauliOp."""
    if isinstance(hamiltonian, SparsePauliOp):
        return hamiltonian
    if isinstance(hamiltonian, dict):
        items = list(hamiltonian.items())
    else:
        items = [tuple(item) for item in hamiltonian]
    if not items:
        raise ValueError("The Hamiltonian has no terms")
    return SparsePauliOp.from_list(items).simplify()


def build_ansatz(ansatz, num_qubits, reps, entanglement):
    """The ansatz circuit: a name from ANSATZE or a parametrized QuantumCircuit."""
    if isinstance(ansatz, QuantumCircuit):
        if ansatz.num_qubits != num_qubits:
            raise ValueError(
                f"The ansatz has {ansatz.num_qubits} qubits, the Hamiltonian {num_qubits}"
            )
        return ansatz
    try:
        factory = ANSATZE[str(ansatz).lower()]
    except KeyError:
        raise ValueError(f"Unknown ansatz {ansatz!r}; choose one of {sorted(ANSATZE)}") from None
    return factory(num_qubits, reps=reps, entanglement=entanglement)


def main(
    backend,
    user_messenger,
    hamiltonian,
    ansatz="real_amplitudes",
    reps=1,
    entanglement="reverse_linear",
    initial_point=None,
    optimizer="COBYLA",
    maxiter=100,
    tol=None,
    precision=None,
    seed=None,
    optimization_level=1,
):
    """Minimise the energy of ``hamiltonian`` over the ansatz parameters.

    Returns:
        ``{"energy", "parameters", "iterations", "history", "optimizer", "success", "message"}``.
    """
    operator = parse_hamiltonian(hamiltonian)
    circuit = build_ansatz(ansatz, operator.num_qubits, int(reps), entanglement)
    manager = preset_pass_manager(int(optimization_level), backend, seed_transpiler=seed)
    isa_circuit = manager.run(circuit)
    isa_operator = operator.apply_layout(isa_circuit.layout)
    estimator = estimator_for(backend, precision, seed)

    if initial_point is None:
        rng = np.random.default_rng(seed)
        x0 = rng.uniform(-np.pi, np.pi, circuit.num_parameters)
    else:
        x0 = np.asarray(initial_point, dtype=float)
        if x0.shape != (circuit.num_parameters,):
            raise ValueError(
                f"initial_point has {x0.size} values, "
                f"the ansatz has {circuit.num_parameters} parameters"
            )
    history = []

    def energy(x):
        result = estimator.run([(isa_circuit, isa_operator, x)]).result()
        value = float(np.real(result[0].data.evs))
        history.append(value)
        user_messenger.publish(
            {"iteration": len(history), "energy": value, "parameters": [float(v) for v in x]}
        )
        return value

    options = {"maxiter": int(maxiter)}
    res = minimize(energy, x0, method=optimizer, tol=tol, options=options)
    return {
        "energy": float(res.fun),
        "parameters": [float(v) for v in np.atleast_1d(res.x)],
        "iterations": len(history),
        "history": history,
        "optimizer": str(optimizer),
        "success": bool(res.success),
        "message": str(res.message),
    }
