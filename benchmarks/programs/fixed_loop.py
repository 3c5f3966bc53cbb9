"""fixed-loop: a whole hybrid loop inside one job, over a fixed list of parameter vectors.

The server-side loop of the benchmark, shaped like the built-in ``vqe`` program (which takes an
optimizer name, not a list of points): the circuit transpiled once for the job, Aer's
``EstimatorV2`` bound to the job's backend (exact), one ``run`` per iteration, and one interim
result ``{"iteration", "energy", "parameters"}`` published per iteration as ``vqe`` does.
"""

import numpy as np

from prefect_qiskit_runtime.server.backends import estimator_for, preset_pass_manager


def main(backend, user_messenger, circuit, observable, parameter_vectors, publish=True, **kwargs):
    """Estimate ``observable`` at each vector in turn; return the energies.

    Args:
        circuit: The parametrised ansatz.
        observable: The Hamiltonian (``SparsePauliOp``).
        parameter_vectors: The points, one iteration each, in order.
        publish: Publish ``{"iteration", "energy", "parameters"}`` after each iteration.

    Returns:
        ``{"energies": [...]}``, one float per vector.
    """
    # As in vqe: the worker's pass manager for the backend, built once in the warm parent.
    isa = preset_pass_manager(1, backend).run(circuit)
    mapped = observable.apply_layout(isa.layout)
    estimator = estimator_for(backend)  # as in vqe: exact on Aer
    energies = []
    for params in parameter_vectors:
        x = np.asarray(params, dtype=float)
        result = estimator.run([(isa, mapped, x)]).result()
        energy = float(np.real(result[0].data.evs))
        energies.append(energy)
        if publish:
            user_messenger.publish(
                {"iteration": len(energies), "energy": energy, "parameters": [float(v) for v in x]}
            )
    return {"energies": energies}
