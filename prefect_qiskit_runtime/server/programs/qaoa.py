"""qaoa: MaxCut with the quantum approximate optimization algorithm, the whole loop in one job.

The graph's cost operator is ``sum_{(u,v,w)} w/2 * Z_u Z_v`` (its minimum is the maximum cut, up to
a constant). Each cost evaluation runs the Estimator primitive in this process and publishes
``{"iteration", "energy", "parameters"}``; at the optimum the circuit is sampled and the best cut
among the samples is returned with the optimum.
"""

import numpy as np
from qiskit.circuit.library import qaoa_ansatz
from qiskit.quantum_info import SparsePauliOp
from scipy.optimize import minimize

from prefect_qiskit_runtime.server.backends import estimator_for, preset_pass_manager, sampler_for


def parse_edges(edges):
    """``[(u, v, weight)]`` from ``[[u, v], [u, v, w], ...]``."""
    parsed = []
    for edge in edges:
        if len(edge) not in (2, 3):
            raise ValueError(f"An edge is [u, v] or [u, v, weight], not {edge!r}")
        u, v = int(edge[0]), int(edge[1])
        if u == v or u < 0 or v < 0:
            raise ValueError(f"Invalid edge {edge!r}")
        parsed.append((u, v, float(edge[2]) if len(edge) == 3 else 1.0))
    if not parsed:
        raise ValueError("The graph has no edges")
    return parsed


def cost_operator(edges, num_nodes):
    """``sum w/2 Z_u Z_v`` as a SparsePauliOp."""
    terms = [("ZZ", [u, v], w / 2) for u, v, w in edges]
    return SparsePauliOp.from_sparse_list(terms, num_qubits=num_nodes).simplify()


def cut_value(bitstring, edges):
    """Total weight of the edges cut by ``bitstring`` (Qiskit order: node 0 is the last
    character)."""
    bits = bitstring[::-1]
    return sum(w for u, v, w in edges if bits[u] != bits[v])


def main(
    backend,
    user_messenger,
    edges,
    reps=1,
    initial_point=None,
    optimizer="COBYLA",
    maxiter=100,
    shots=1024,
    seed=None,
    optimization_level=1,
):
    """Find a large cut of the weighted graph ``edges``.

    Returns:
        ``{"energy", "parameters", "iterations", "history", "best_bitstring", "cut_value",
        "assignment", "counts", "success", "message"}``; ``assignment[i]`` is node i's side.
    """
    graph = parse_edges(edges)
    num_nodes = 1 + max(max(u, v) for u, v, _ in graph)
    operator = cost_operator(graph, num_nodes)
    circuit = qaoa_ansatz(operator, reps=int(reps))
    manager = preset_pass_manager(int(optimization_level), backend, seed_transpiler=seed)
    isa_circuit = manager.run(circuit)
    isa_operator = operator.apply_layout(isa_circuit.layout)
    # Exact on Aer; elsewhere sampled to 0.01.
    estimator = estimator_for(backend, None, seed, shots_precision=0.01)
    sampler = sampler_for(backend, int(shots), seed)

    if initial_point is None:
        # A common QAOA starting point: small mixer angles, moderate cost angles.
        x0 = np.array([np.pi / 8] * int(reps) + [np.pi / 4] * int(reps))
        x0 = x0[: circuit.num_parameters]
    else:
        x0 = np.asarray(initial_point, dtype=float)
    history = []

    def energy(x):
        result = estimator.run([(isa_circuit, isa_operator, x)]).result()
        value = float(np.real(result[0].data.evs))
        history.append(value)
        user_messenger.publish(
            {"iteration": len(history), "energy": value, "parameters": [float(v) for v in x]}
        )
        return value

    res = minimize(energy, x0, method=optimizer, options={"maxiter": int(maxiter)})

    measured = circuit.assign_parameters(res.x)
    measured.measure_all()
    isa_measured = manager.run(measured)
    counts = sampler.run([isa_measured]).result()[0].data.meas.get_counts()
    best = max(counts, key=lambda b: (cut_value(b, graph), counts[b]))
    return {
        "energy": float(res.fun),
        "parameters": [float(v) for v in np.atleast_1d(res.x)],
        "iterations": len(history),
        "history": history,
        "best_bitstring": best,
        "cut_value": float(cut_value(best, graph)),
        "assignment": [int(b) for b in best[::-1]],
        "counts": dict(sorted(counts.items(), key=lambda kv: -kv[1])[:64]),
        "success": bool(res.success),
        "message": str(res.message),
    }
