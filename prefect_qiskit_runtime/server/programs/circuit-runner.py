"""circuit-runner: transpile and run circuits, optionally with readout-error mitigation.

The program behind ``provider.run_circuits`` of the original client. Its result is a bare
``Result.to_dict()`` document (the old client decodes it with ``RunnerResult``). With
``measurement_error_mitigation`` each experiment also carries ``data.quasiprobabilities`` and
``header.final_measurement_mapping``: readout errors are calibrated on the same backend with
basis-state circuits (all measured qubits in |0>, then in |1>) and the tensored assignment matrix
is inverted.
"""

import datetime
import enum
import math

import numpy as np
from qiskit import QuantumCircuit, transpile

# Options of IBM hardware that simulators do not have; accepted and ignored.
HARDWARE_ONLY_OPTIONS = ("init_qubits", "rep_delay", "use_measure_esp", "rep_time")
# Above this many measured bits the mitigation works in the subspace of observed bitstrings.
FULL_INVERSE_MAX_BITS = 16
SUBSPACE_MAX_STATES = 4096


def main(
    backend,
    user_messenger,
    circuits,
    shots=None,
    initial_layout=None,
    layout_method=None,
    routing_method=None,
    translation_method=None,
    seed_transpiler=None,
    optimization_level=1,
    init_qubits=True,
    rep_delay=None,
    transpiler_options=None,
    measurement_error_mitigation=False,
    use_measure_esp=None,
    **run_config,
):
    """Transpile ``circuits`` for ``backend``, run them and return the result document.

    Returns:
        A ``Result.to_dict()``-shaped dict (plain JSON: hex counts, ``qobj_id``, headers).
    """
    single = isinstance(circuits, QuantumCircuit)
    circuit_list = [circuits] if single else list(circuits)
    for name in HARDWARE_ONLY_OPTIONS:
        run_config.pop(name, None)
    transpiled = transpile(
        circuit_list,
        backend=backend,
        initial_layout=initial_layout,
        layout_method=layout_method,
        routing_method=routing_method,
        translation_method=translation_method,
        seed_transpiler=seed_transpiler,
        optimization_level=optimization_level,
        **(transpiler_options or {}),
    )
    if shots:
        run_config["shots"] = int(shots)
    result = backend.run(transpiled, **run_config).result()
    doc = to_plain(result.to_dict())
    doc.setdefault("qobj_id", "")
    doc["qobj_id"] = doc["qobj_id"] or ""
    doc.setdefault("job_id", "")
    for exp, circuit in zip(doc["results"], transpiled, strict=True):
        header = exp.setdefault("header", {}) or {}
        exp["header"] = header
        header.setdefault("memory_slots", circuit.num_clbits)
        header.setdefault("creg_sizes", [[reg.name, reg.size] for reg in circuit.cregs])
        header.setdefault("name", circuit.name)
    if measurement_error_mitigation:
        mitigate(backend, transpiled, doc, run_config)
    return doc


def final_measurement_mapping(circuit):
    """``{clbit index: physical qubit}`` of the last measurement into each clbit."""
    mapping = {}
    for instruction in circuit.data:
        if instruction.operation.name == "measure":
            qubit = circuit.find_bit(instruction.qubits[0]).index
            clbit = circuit.find_bit(instruction.clbits[0]).index
            mapping[clbit] = qubit
    return dict(sorted(mapping.items()))


def calibrate(backend, qubits, run_config):
    """Per-qubit assignment matrices ``A[q] = [[P(0|0), P(0|1)], [P(1|0), P(1|1)]]``.

    One pair of one-qubit circuits per qubit (prepare |0> or |1>, measure), so a simulator only ever
    simulates one active qubit however large the device is.
    """
    circuits = []
    for qubit in qubits:
        for state in (0, 1):
            qc = QuantumCircuit(qubit + 1, 1, name=f"cal_q{qubit}_{state}")
            if state:
                qc.x(qubit)
            qc.measure(qubit, 0)
            circuits.append(qc)
    options = {k: v for k, v in run_config.items() if k in ("shots", "seed_simulator")}
    options.setdefault("shots", 4000)
    counts = backend.run(circuits, **options).result().get_counts()
    matrices = {}
    for pos, qubit in enumerate(qubits):
        matrix = np.zeros((2, 2))
        for prepared in (0, 1):
            hist = counts[2 * pos + prepared]
            ones = hist.get("1", 0) / sum(hist.values())
            matrix[:, prepared] = (1 - ones, ones)
        matrices[qubit] = matrix
    return matrices


def mitigate(backend, transpiled, doc, run_config):
    """Add ``quasiprobabilities`` and ``final_measurement_mapping`` to every experiment of
    ``doc``."""
    mappings = [final_measurement_mapping(c) for c in transpiled]
    measured = sorted({q for m in mappings for q in m.values()})
    if not measured:
        raise ValueError("measurement_error_mitigation needs circuits with measurements")
    matrices = calibrate(backend, measured, run_config)
    for exp, mapping in zip(doc["results"], mappings, strict=True):
        counts = {int(k, 16): v for k, v in exp["data"]["counts"].items()}
        clbits = list(mapping)
        inverses = [np.linalg.inv(matrices[mapping[c]]) for c in clbits]
        if len(clbits) <= FULL_INVERSE_MAX_BITS:
            quasi = _tensored_inverse(counts, clbits, inverses)
        else:
            quasi = _subspace_solve(counts, clbits, [matrices[mapping[c]] for c in clbits])
        exp["data"]["quasiprobabilities"] = {hex(k): float(v) for k, v in quasi.items()}
        exp["header"]["final_measurement_mapping"] = {str(c): q for c, q in mapping.items()}


def _compress(outcome, clbits):
    return sum(((outcome >> c) & 1) << i for i, c in enumerate(clbits))


def _expand(index, clbits):
    return sum(((index >> i) & 1) << c for i, c in enumerate(clbits))


def _tensored_inverse(counts, clbits, inverses):
    n = len(clbits)
    total = sum(counts.values())
    vec = np.zeros(2**n)
    for outcome, cnt in counts.items():
        vec[_compress(outcome, clbits)] += cnt / total
    # Bit i of the index is axis n-1-i of the C-ordered tensor.
    tensor = vec.reshape([2] * n)
    for i, inv in enumerate(inverses):
        axis = n - 1 - i
        tensor = np.moveaxis(np.tensordot(inv, tensor, axes=([1], [axis])), 0, axis)
    flat = tensor.reshape(-1)
    return {_expand(i, clbits): v for i, v in enumerate(flat) if abs(v) > 1e-12}


def _subspace_solve(counts, clbits, matrices):
    states = sorted(counts)
    if len(states) > SUBSPACE_MAX_STATES:
        raise ValueError(
            f"measurement_error_mitigation: {len(states)} distinct outcomes on {len(clbits)} "
            f"bits is more than the {SUBSPACE_MAX_STATES} supported"
        )
    total = sum(counts.values())
    bits = np.array([[(s >> c) & 1 for c in clbits] for s in states], dtype=np.intp)
    amat = np.ones((len(states), len(states)))
    for i, m in enumerate(matrices):
        amat *= m[bits[:, i][:, None], bits[:, i][None, :]]
    probs = np.array([counts[s] / total for s in states])
    quasi, *_ = np.linalg.lstsq(amat, probs, rcond=None)
    quasi = quasi / quasi.sum() if not math.isclose(quasi.sum(), 0.0) else quasi
    return dict(zip(states, quasi, strict=True))


def to_plain(value):
    """Turn a result document into plain JSON values (no NumPy, enum or datetime objects)."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return to_plain(value.value)
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, np.generic):
        return to_plain(value.item())
    if isinstance(value, complex):
        return [value.real, value.imag]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return str(value)
