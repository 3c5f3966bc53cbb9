"""The benchmark problem: one 4-qubit estimator loop, identical in every measured setting.

Imported by ``run.py`` and by the worker scripts, including the one that runs in the separate
prefect-qiskit venv, so it depends on nothing but Qiskit and NumPy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: A transverse-field Ising ring of 4 spins: 4 ZZ couplings and 4 X fields, 8 Pauli terms.
HAMILTONIAN_TERMS: list[tuple[str, float]] = [
    ("ZZII", -1.0),
    ("IZZI", -1.0),
    ("IIZZ", -1.0),
    ("ZIIZ", -1.0),
    ("XIII", -0.5),
    ("IXII", -0.5),
    ("IIXI", -0.5),
    ("IIIX", -0.5),
]
NUM_QUBITS = 4
REPS = 2


def hamiltonian() -> Any:
    """The Hamiltonian as a ``SparsePauliOp`` (8 terms on 4 qubits)."""
    from qiskit.quantum_info import SparsePauliOp

    return SparsePauliOp.from_list(HAMILTONIAN_TERMS)


def ansatz() -> Any:
    """``real_amplitudes(4, reps=2)``: 12 parameters."""
    from qiskit.circuit.library import real_amplitudes

    return real_amplitudes(NUM_QUBITS, reps=REPS)


def parameter_vectors(
    count: int, num_parameters: int = NUM_QUBITS * (REPS + 1)
) -> list[list[float]]:
    """A fixed list of ``count`` parameter vectors, the same on every run and machine.

    A closed form rather than a random generator, so there is no seed or library version to agree
    on: component ``j`` of vector ``k`` is ``pi * sin(0.37 k + 0.91 j + 0.1)``.

    Args:
        count: How many vectors.
        num_parameters: Length of each vector (12 for the ansatz above).

    Returns:
        ``count`` lists of ``num_parameters`` floats in ``[-pi, pi]``.
    """
    return [
        [math.pi * math.sin(0.37 * k + 0.91 * j + 0.1) for j in range(num_parameters)]
        for k in range(count)
    ]


def estimator_pub(params: list[float]) -> list[Any]:
    """The PUB one iteration sends, as ``loops.EstimatorCost.inputs`` builds it."""
    return [ansatz(), hamiltonian(), [float(p) for p in params]]


def exact_energies(vectors: list[list[float]]) -> np.ndarray:
    """Reference energies of ``vectors`` from Qiskit's exact ``StatevectorEstimator``."""
    from qiskit.primitives import StatevectorEstimator

    circuit, observable = ansatz(), hamiltonian()
    result = StatevectorEstimator().run([(circuit, observable, np.asarray(vectors))]).result()
    return np.asarray(result[0].data.evs, dtype=float)


__all__ = [
    "HAMILTONIAN_TERMS",
    "NUM_QUBITS",
    "REPS",
    "ansatz",
    "estimator_pub",
    "exact_energies",
    "hamiltonian",
    "parameter_vectors",
]
