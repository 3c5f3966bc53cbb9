"""fixed-loop: a whole hybrid loop inside one job, over a fixed list of parameter vectors.

The server-side loop of the benchmark: the same estimator call per iteration as the built-in
``estimator`` program makes (Aer's ``EstimatorV2`` bound to the job's backend, exact), with the
circuit transpiled once for the job, and one interim result per iteration as a VQE program
publishes its progress.
"""

import numpy as np
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_aer.primitives import EstimatorV2


def main(backend, user_messenger, circuit, observable, parameter_vectors, publish=True, **kwargs):
    """Estimate ``observable`` at each vector in turn; return the energies.

    Args:
        circuit: The parametrised ansatz.
        observable: The Hamiltonian (``SparsePauliOp``).
        parameter_vectors: The points, one iteration each, in order.
        publish: Publish ``{"k", "energy"}`` after each iteration.

    Returns:
        ``{"energies": [...]}``, one float per vector.
    """
    # The backend's target, not the backend: Aer rebuilds its target on every attribute access.
    manager = generate_preset_pass_manager(1, target=backend.target)
    isa = manager.run(circuit)
    mapped = observable.apply_layout(isa.layout)
    estimator = EstimatorV2.from_backend(backend, options={"default_precision": 0.0})
    energies = []
    for k, params in enumerate(parameter_vectors):
        result = estimator.run([(isa, mapped, np.asarray(params, dtype=float))]).result()
        energy = float(result[0].data.evs)
        energies.append(energy)
        if publish:
            user_messenger.publish({"k": k, "energy": energy})
    return {"energies": energies}
