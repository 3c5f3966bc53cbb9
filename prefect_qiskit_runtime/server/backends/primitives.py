"""What programs run their circuits with: pass managers, transpilation and the V2 primitives.

The built-in programs (and the spare's warm-up) build their estimator, sampler and pass manager
here, so that every job gets the same options and the pass managers the warm parent built before
it forked. Imports Qiskit and Aer only when a function is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qiskit.providers import BackendV2

__all__ = [
    "SHOTS_PRECISION",
    "estimator_for",
    "needs_transpilation",
    "preset_pass_manager",
    "sampler_for",
    "transpile_for",
]

# (backend, target, level, seed) -> (backend, target, pass manager). The backend and target stay
# referenced by the value, so the ids in the key cannot be reused by other objects.
_PASS_MANAGERS: dict[tuple[int, int, int, int | None], tuple[Any, Any, Any]] = {}


def preset_pass_manager(
    optimization_level: int, backend: BackendV2, seed_transpiler: int | None = None
) -> Any:
    """Qiskit's preset pass manager for ``backend``, built once per process and reused.

    Building one costs 3 ms in a warm process and 7 ms in a freshly forked job, more than
    transpiling a small circuit with it. The warm parent builds the level-1 manager of every cached
    backend before it forks, so a job that asks for it gets it ready; the same manager then serves
    every circuit of that job (a ``PassManager`` keeps no state between ``run`` calls). Should a
    program change its backend's options in a way that changes the target, the manager is built
    afresh for the new target.

    Args:
        optimization_level: 0 to 3, as for ``generate_preset_pass_manager``.
        backend: The backend the circuits are for.
        seed_transpiler: Seed of the stochastic passes; ``None`` leaves them random.

    Returns:
        A ``StagedPassManager``.

    Example:
        >>> backend = build_backend("aer_simulator", cached=True)  # doctest: +SKIP
        >>> isa_circuit = preset_pass_manager(1, backend).run(circuit)  # doctest: +SKIP
    """
    from qiskit.transpiler import generate_preset_pass_manager

    target = backend.target
    key = (id(backend), id(target), int(optimization_level), seed_transpiler)
    entry = _PASS_MANAGERS.get(key)
    if entry is None:
        manager = generate_preset_pass_manager(
            int(optimization_level), backend, seed_transpiler=seed_transpiler
        )
        entry = _PASS_MANAGERS[key] = (backend, target, manager)
    return entry[2]


def needs_transpilation(circuit: Any, backend: BackendV2) -> bool:
    """Whether ``circuit`` must be transpiled before it can run on ``backend``.

    False for an ISA circuit (every instruction is one the backend's target supports, on the qubits
    it is applied to, and the circuit is no wider than the backend): what IBM's V2 primitives
    accept, and what a hybrid loop sends when it transpiles its ansatz once. Checking costs about
    0.02 ms; transpiling such a circuit again would cost 0.2 ms in a warm process and 3-4 ms in a
    freshly forked job, and gain nothing on a simulator.

    Args:
        circuit: A ``QuantumCircuit``.
        backend: The backend it is meant for.

    Returns:
        True if some instruction is unsupported (or unsupported where it is applied), or the
        circuit has more qubits than the backend.
    """
    from qiskit.converters import circuit_to_dag
    from qiskit.transpiler.passes import GatesInBasis

    target = backend.target
    if target.num_qubits is not None and circuit.num_qubits > target.num_qubits:
        return True
    check = GatesInBasis(target=target)
    check.run(circuit_to_dag(circuit, copy_operations=False))
    return not check.property_set["all_gates_in_basis"]


def transpile_for(
    circuit: Any,
    backend: BackendV2,
    optimization_level: int | None = None,
    seed_transpiler: int | None = None,
    *,
    always: bool = False,
) -> Any:
    """``circuit`` ready to run on ``backend``, transpiled only when that is asked for or needed.

    An ISA circuit comes back as it is (the same object), unless ``always`` or an
    ``optimization_level`` asks for a transpilation; any other circuit is transpiled with
    :func:`preset_pass_manager` (level 1 by default), built only then.

    Args:
        circuit: A ``QuantumCircuit``.
        backend: The backend it is meant for.
        optimization_level: Transpile at this level, even an ISA circuit; ``None``: level 1, and
            only if the circuit needs it.
        seed_transpiler: Seed of the stochastic passes.
        always: Transpile even an ISA circuit.

    Returns:
        The circuit itself, or its transpiled copy (whose ``layout`` maps the original qubits).
    """
    if not always and optimization_level is None and not needs_transpilation(circuit, backend):
        return circuit
    level = 1 if optimization_level is None else int(optimization_level)
    return preset_pass_manager(level, backend, seed_transpiler=seed_transpiler).run(circuit)


#: Default target precision of a shot-based estimator (4,096 shots' worth).
SHOTS_PRECISION = 0.015625


def estimator_for(
    backend: BackendV2,
    precision: float | None = None,
    seed: int | None = None,
    *,
    shots_precision: float = SHOTS_PRECISION,
) -> Any:
    """The Estimator primitive (V2) for ``backend``, as the built-in programs use it.

    Aer's ``EstimatorV2`` bound to an Aer backend (its noise model included), exact unless a
    ``precision`` is given; Qiskit's shot-based ``BackendEstimatorV2`` on any other backend.

    Args:
        backend: The job's backend.
        precision: Target precision; ``None`` or 0: exact on Aer, ``shots_precision`` elsewhere.
        seed: Seed of the simulator.
        shots_precision: The default precision on backends that only sample.

    Returns:
        An ``EstimatorV2``-compatible primitive.
    """
    from qiskit_aer import AerSimulator

    if isinstance(backend, AerSimulator):
        from qiskit_aer.primitives import EstimatorV2

        run_options = {} if seed is None else {"seed_simulator": seed}
        return EstimatorV2.from_backend(
            backend, options={"default_precision": precision or 0.0, "run_options": run_options}
        )
    from qiskit.primitives import BackendEstimatorV2

    options: dict[str, Any] = {"default_precision": precision or shots_precision}
    if seed is not None:
        options["seed_simulator"] = seed
    return BackendEstimatorV2(backend=backend, options=options)


def sampler_for(backend: BackendV2, shots: int, seed: int | None = None) -> Any:
    """The Sampler primitive (V2) for ``backend``, as the built-in programs use it.

    Aer's ``SamplerV2`` bound to an Aer backend (its noise model included); Qiskit's
    ``BackendSamplerV2`` on any other backend.

    Args:
        backend: The job's backend.
        shots: Default shots per PUB.
        seed: Seed of the simulator.

    Returns:
        A ``SamplerV2``-compatible primitive.
    """
    from qiskit_aer import AerSimulator

    if isinstance(backend, AerSimulator):
        from qiskit_aer.primitives import SamplerV2

        return SamplerV2.from_backend(backend, default_shots=shots, seed=seed)
    from qiskit.primitives import BackendSamplerV2

    options: dict[str, Any] = {"default_shots": shots}
    if seed is not None:
        options["seed_simulator"] = seed
    return BackendSamplerV2(backend=backend, options=options)
