"""The static catalogue of local backends and their configuration documents.

Everything here is plain data: the service process answers ``/backends`` and checks a job's
backend name and width from it without importing Qiskit. :mod:`.simulators` turns an entry into a
Qiskit backend object inside a job's process.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BackendInfo",
    "configuration",
    "info",
    "list_configurations",
    "modern_configuration",
    "names",
    "num_qubits",
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
    ``online_date`` the old provider insists on (``spec/runtime-api.md`` §2), and ``noisy``
    (whether the simulation has a device noise model), which the old provider keeps as an extra
    attribute.

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
        # An extension of this service: clients tell noisy devices from ideal simulators.
        "noisy": b.noisy,
        "sample_name": b.name,
        "n_registers": 1,
        "credits_required": False,
        "allow_q_object": False,
        "url": "None",
    }
    return copy.deepcopy(doc)


# Aer accepts these, but Qiskit has no standard gate of the name: a modern client would warn that it
# cannot build them into a Target, so the modern documents leave them out.
_NON_STANDARD_GATES = frozenset({"cu2", "diagonal", "initialize", "mcx", "pauli", "unitary"})
_NON_UNITARY = ("measure", "reset", "delay")
_CONTROL_FLOW = ("if_else", "while_loop", "for_loop", "switch_case")


def modern_configuration(name: str) -> dict[str, Any]:
    """Return the configuration document of backend ``name`` for the modern Qiskit Runtime API.

    The document of :func:`configuration`, adjusted to how ``qiskit-ibm-runtime`` builds a Target
    from it: only Qiskit's standard gate names, ``supported_instructions`` (measure, reset, delay,
    and control flow where Aer runs the circuits), and for a device every gate tied to the qubits
    or edges it acts on. A noisy device is presented as a device (``simulator`` false), so the
    client checks circuits against its Target and opens sessions on it; the ideal simulators stay
    simulators.

    Args:
        name: A name from :func:`names`.

    Returns:
        A fresh JSON-serialisable dict.

    Raises:
        KeyError: If there is no such backend.

    Example:
        >>> modern_configuration("fake_5q_device")["simulator"]
        False
    """
    b = info(name)
    doc = configuration(name)
    doc["basis_gates"] = [g for g in b.basis_gates if g not in _NON_STANDARD_GATES]
    doc["simulator"] = not b.noisy
    aer = b.name != "basic_simulator"
    doc["supported_instructions"] = [
        *doc["basis_gates"],
        *(i for i in _NON_UNITARY if i not in doc["basis_gates"]),
        *(_CONTROL_FLOW if aer else ()),
    ]
    if b.edges is not None:
        singles = [[q] for q in range(b.num_qubits)]
        for gate in doc["gates"]:
            two_qubit = gate["name"] == "cx"
            gate["coupling_map"] = b.coupling_map if two_qubit else singles
    doc["processor_type"] = {"family": "Local simulator", "revision": b.backend_version}
    doc["supported_features"] = ["qasm3"] if aer else []
    return doc


def list_configurations() -> list[dict[str, Any]]:
    """Return the configuration document of every backend, in catalogue order."""
    return [configuration(n) for n in _CATALOGUE]
