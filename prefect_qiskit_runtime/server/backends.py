"""The catalogue of local backends and their configuration documents.

The service process asks this module for names, qubit counts and the configuration documents it
serves to the old client (``spec/runtime-api.md`` §2), all from static data: importing this module
does not import Qiskit. Only :func:`build_backend`, called inside a job's process (or the warm
parent that forks it), imports Qiskit and Aer.

Backends:

- ``aer_simulator``: an ideal :class:`qiskit_aer.AerSimulator`.
- ``ibmq_qasm_simulator``: the same, under the name the original documentation uses.
- ``basic_simulator``: Qiskit's pure-Python ``BasicSimulator``.
- ``fake_5q_device`` / ``fake_27q_device``: noisy devices. Their properties (error rates, T1/T2,
  durations) come from :class:`~qiskit.providers.fake_provider.GenericBackendV2` with a fixed seed
  on a real device's coupling map (a 5-qubit T and the 27-qubit heavy-hex Falcon lattice); Aer
  simulates them with the noise model built from those properties (``AerSimulator.from_backend``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qiskit.providers import BackendV2

__all__ = [
    "SHOTS_PRECISION",
    "BackendInfo",
    "build_backend",
    "configuration",
    "estimator_for",
    "list_configurations",
    "names",
    "needs_transpilation",
    "num_qubits",
    "preset_pass_manager",
    "sampler_for",
    "transpile_for",
]

_ONLINE_DATE = "2024-01-01T00:00:00Z"

# The 5-qubit "T" of ibmq_quito/ibmq_belem and the 27-qubit heavy-hex of the Falcon r4/r5 devices.
_T5_EDGES = ((0, 1), (1, 2), (1, 3), (3, 4))
_FALCON27_EDGES = (
    (0, 1), (1, 2), (1, 4), (2, 3), (3, 5), (4, 7), (5, 8), (6, 7), (7, 10), (8, 9), (8, 11),
    (10, 12), (11, 14), (12, 13), (12, 15), (13, 14), (14, 16), (15, 18), (16, 19), (17, 18),
    (18, 21), (19, 20), (19, 22), (21, 23), (22, 25), (23, 24), (24, 25), (25, 26),
)  # fmt: skip

_DEVICE_BASIS = ("cx", "id", "rz", "sx", "x")
_AER_BASIS = (
    "ccx", "cp", "crx", "cry", "crz", "cswap", "csx", "cu", "cu1", "cu2", "cu3", "cx", "cy", "cz",
    "delay", "diagonal", "ecr", "h", "id", "initialize", "mcx", "measure", "p", "pauli", "r",
    "reset", "rx", "rxx", "ry", "ryy", "rz", "rzx", "rzz", "s", "sdg", "swap", "sx", "sxdg", "t",
    "tdg", "u", "u1", "u2", "u3", "unitary", "x", "y", "z",
)  # fmt: skip
_BASIC_BASIS = (
    "ccx", "ccz", "ch", "cp", "crx", "cry", "crz", "cs", "csdg", "cswap", "csx", "cu", "cu1",
    "cu3", "cx", "cy", "cz", "dcx", "delay", "ecr", "h", "id", "iswap", "measure", "p", "r",
    "rccx", "reset", "rx", "rxx", "ry", "ryy", "rz", "rzx", "rzz", "s", "sdg", "swap", "sx", "sxdg",
    "t", "tdg", "u", "u1", "u2", "u3", "unitary", "x", "y", "z",
)  # fmt: skip

# OpenQASM 2 definitions of the device basis, for the ``gates`` list of the configuration documents.
_QASM_DEFS = {
    "cx": ("gate cx q0,q1 { CX q0,q1; }", []),
    "id": ("gate id q { U(0,0,0) q; }", []),
    "rz": ("gate rz(theta) q { U(0,0,theta) q; }", ["theta"]),
    "sx": ("gate sx q { U(pi/2,-pi/2,pi/2) q; }", []),
    "x": ("gate x q { U(pi,0,pi) q; }", []),
}


@dataclass(frozen=True)
class BackendInfo:
    """Static facts about one backend of the catalogue.

    Args:
        name: The name jobs use.
        num_qubits: How many qubits circuits may use.
        description: One line for humans.
        basis_gates: The gate names of the configuration document.
        edges: Undirected coupling edges, ``None`` for all-to-all.
        noisy: Whether the simulation includes a device noise model.
        max_shots: Largest accepted ``shots``.
        backend_version: Version string of the configuration document.
        alias_of: The backend this name is another name for, if any.
        seed: Seed of the generated device properties (noisy devices only).
    """

    name: str
    num_qubits: int
    description: str
    basis_gates: tuple[str, ...]
    edges: tuple[tuple[int, int], ...] | None = None
    noisy: bool = False
    max_shots: int = 1_000_000
    backend_version: str = "0.1.0"
    alias_of: str | None = None
    seed: int | None = None

    @property
    def coupling_map(self) -> list[list[int]] | None:
        """Both directions of every edge, as the configuration document lists them."""
        if self.edges is None:
            return None
        pairs = [[a, b] for a, b in self.edges] + [[b, a] for a, b in self.edges]
        return sorted(pairs)


_CATALOGUE: dict[str, BackendInfo] = {
    info.name: info
    for info in (
        BackendInfo(
            "aer_simulator",
            30,
            "Ideal Qiskit Aer simulator (automatic method selection).",
            _AER_BASIS,
            backend_version="0.18",
        ),
        BackendInfo(
            "ibmq_qasm_simulator",
            30,
            "Alias of aer_simulator, under the name of the original Qiskit Runtime documentation.",
            _AER_BASIS,
            backend_version="0.18",
            alias_of="aer_simulator",
        ),
        BackendInfo(
            "basic_simulator",
            24,
            "Qiskit's pure-Python statevector sampler (no noise, small circuits).",
            _BASIC_BASIS,
            max_shots=100_000,
        ),
        BackendInfo(
            "fake_5q_device",
            5,
            "Noisy 5-qubit device (T layout): Aer with a noise model from the device's properties.",
            _DEVICE_BASIS,
            edges=_T5_EDGES,
            noisy=True,
            max_shots=100_000,
            seed=5,
        ),
        BackendInfo(
            "fake_27q_device",
            27,
            "Noisy 27-qubit heavy-hex device: Aer with a noise model from the device's properties.",
            _DEVICE_BASIS,
            edges=_FALCON27_EDGES,
            noisy=True,
            max_shots=100_000,
            seed=27,
        ),
    )
}


def names() -> list[str]:
    """Return the names of every backend, in catalogue order.

    Example:
        >>> "aer_simulator" in names()
        True
    """
    return list(_CATALOGUE)


def info(name: str) -> BackendInfo:
    """Return the static facts about backend ``name``.

    Raises:
        KeyError: If there is no such backend.
    """
    try:
        return _CATALOGUE[name]
    except KeyError:
        raise KeyError(f"Unknown backend {name!r}; known: {', '.join(_CATALOGUE)}") from None


def num_qubits(name: str) -> int:
    """Return how many qubits backend ``name`` has.

    Raises:
        KeyError: If there is no such backend.

    Example:
        >>> num_qubits("fake_27q_device")
        27
    """
    return info(name).num_qubits


def configuration(name: str) -> dict[str, Any]:
    """Return the configuration document of backend ``name``.

    The document has every key terra 0.46's ``QasmBackendConfiguration.from_dict`` requires plus the
    ``online_date`` the old provider insists on (``spec/runtime-api.md`` §2).

    Args:
        name: A name from :func:`names`.

    Returns:
        A fresh JSON-serialisable dict.

    Raises:
        KeyError: If there is no such backend.
    """
    b = info(name)
    gates = [
        {"name": g, "parameters": _QASM_DEFS[g][1], "qasm_def": _QASM_DEFS[g][0]}
        for g in b.basis_gates
        if g in _QASM_DEFS
    ]
    doc: dict[str, Any] = {
        "backend_name": b.name,
        "backend_version": b.backend_version,
        "n_qubits": b.num_qubits,
        "max_shots": b.max_shots,
        "max_experiments": 300,
        "basis_gates": list(b.basis_gates),
        "gates": gates,
        "local": False,
        "simulator": True,
        "conditional": True,
        "open_pulse": False,
        "memory": True,
        "coupling_map": b.coupling_map,
        "online_date": _ONLINE_DATE,
        "input_allowed": ["job", "runtime"],
        "description": b.description,
        "sample_name": b.name,
        "n_registers": 1,
        "credits_required": False,
        "allow_q_object": False,
        "url": "None",
    }
    return copy.deepcopy(doc)


def list_configurations() -> list[dict[str, Any]]:
    """Return the configuration document of every backend, in catalogue order."""
    return [configuration(n) for n in _CATALOGUE]


_BUILT: dict[str, BackendV2] = {}


def build_backend(name: str, *, cached: bool = False) -> BackendV2:
    """Build the Qiskit backend object of ``name`` (imports Qiskit and Aer).

    The object is a BackendV2 with a ``Target``: ``transpile(qc, backend)`` and
    ``backend.run(qc, shots=...).result()`` work, and ``run`` also accepts the ``timeout`` argument
    the original ``ProgramBackend.run`` had.

    Args:
        name: A name from :func:`names`.
        cached: Return one shared instance per name. The warm parent builds every backend once with
            ``cached=True`` so that each forked job gets its own copy-on-write copy for free; do not
            share cached instances between programs in one process (``set_options`` would leak).

    Returns:
        The backend; its ``name`` is ``name``.

    Raises:
        KeyError: If there is no such backend.

    Example:
        >>> backend = build_backend("fake_5q_device")  # doctest: +SKIP
        >>> backend.num_qubits
        5
    """
    b = info(name)
    if cached and name in _BUILT:
        return _BUILT[name]
    backend = _build(b)
    if cached:
        _BUILT[name] = backend
    return backend


def warm_up() -> None:
    """Build and cache every backend and its level-1 pass manager (in the warm parent)."""
    for name in _CATALOGUE:
        backend = build_backend(name, cached=True)
        preset_pass_manager(1, backend)


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


def _build(b: BackendInfo) -> BackendV2:
    if b.name == "basic_simulator":
        return _basic_simulator_class()()
    sim_cls = _aer_simulator_class()
    if not b.noisy:
        sim = sim_cls()
    else:
        from qiskit.providers.fake_provider import GenericBackendV2

        assert b.edges is not None
        coupling = [[x, y] for x, y in b.edges] + [[y, x] for x, y in b.edges]
        device = GenericBackendV2(
            b.num_qubits, basis_gates=list(b.basis_gates), coupling_map=coupling, seed=b.seed
        )
        device.name = b.name
        device.backend_version = b.backend_version
        sim = sim_cls.from_backend(device)
        sim.description = b.description
    sim.name = b.name
    return sim


_CLASSES: dict[str, Any] = {}


def _aer_simulator_class() -> Any:
    """AerSimulator whose ``run`` accepts (and ignores) ``timeout`` like the old ProgramBackend."""
    if "aer" not in _CLASSES:
        from qiskit_aer import AerSimulator

        class ProgramAerSimulator(AerSimulator):  # type: ignore[misc]
            """An :class:`~qiskit_aer.AerSimulator` with the old ``run(circuits, timeout=None)``."""

            def run(self, run_input: Any, timeout: float | None = None, **options: Any) -> Any:
                return super().run(run_input, **options)

            @property
            def target(self) -> Any:
                # AerSimulator rebuilds its Target on every access (≈1 ms, and transpile reads it
                # ~150 times); rebuild only when an option that shapes it has changed.
                if self._from_backend:
                    return self._target
                key = repr(
                    (
                        self._options_configuration,
                        self._options_properties,
                        getattr(self, "_cached_basis_gates", None),
                    )
                )
                cached = self.__dict__.get("_program_target")
                if cached is None or cached[0] != key:
                    cached = (key, super().target)
                    self.__dict__["_program_target"] = cached
                return cached[1]

        _CLASSES["aer"] = ProgramAerSimulator
    return _CLASSES["aer"]


def _basic_simulator_class() -> Any:
    """BasicSimulator whose ``run`` accepts (and ignores) ``timeout`` like the old
    ProgramBackend."""
    if "basic" not in _CLASSES:
        from qiskit.providers.basic_provider import BasicSimulator

        class ProgramBasicSimulator(BasicSimulator):  # type: ignore[misc]
            """A :class:`BasicSimulator` with the old ``run(circuits, timeout=None)``."""

            def run(self, run_input: Any, timeout: float | None = None, **options: Any) -> Any:
                return super().run(run_input, **options)

        _CLASSES["basic"] = ProgramBasicSimulator
    return _CLASSES["basic"]


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
