"""hello-world: run a random 5-qubit circuit per iteration and publish its counts.

The sample program of the original Qiskit Runtime documentation.
"""

import random

from qiskit import transpile
from qiskit.circuit.random import random_circuit


def prepare_circuit(backend):
    """A random 5-qubit circuit with measurements, transpiled for ``backend``."""
    circuit = random_circuit(num_qubits=5, depth=4, measure=True, seed=random.randint(0, 1000))
    return transpile(circuit, backend)


def main(backend, user_messenger, **kwargs):
    """Run ``iterations`` random circuits, publishing ``{"iteration", "counts"}`` after each.

    Args:
        backend: The backend to run on.
        user_messenger: Publishes interim results.
        iterations: How many circuits to run (default 1).

    Returns:
        ``"All done!"``.
    """
    iterations = kwargs.pop("iterations", 1)
    for it in range(iterations):
        circuit = prepare_circuit(backend)
        result = backend.run(circuit).result()
        user_messenger.publish({"iteration": it, "counts": result.get_counts()})
    return "All done!"
