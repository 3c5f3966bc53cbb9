"""The encoder of the runtime wire: :class:`RuntimeEncoder`.

The encoder is an ordered list of checks (:data:`_CHECKS`), one per row of the table in the package
docstring; the first check that recognises an object decides its encoding. To add a tag, add a check
at the place in the order where it must win over the ones after it, and its handler to
:mod:`~prefect_qiskit_runtime.core.codec.decoder`.
"""

from __future__ import annotations

import copy
import io
import json
import sys
import warnings
from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np

from prefect_qiskit_runtime.core.codec.payloads import _qpy_dump, _set_int_keys_flag, _to_b64

#: Returned by a check that does not recognise the object (``None`` is a valid encoding).
_PASS = object()


def _tagged(tag: str, value: Any) -> dict[str, Any]:
    return {"__type__": tag, "__value__": value}


def _plain(obj: Any) -> Any:
    """Rows 1-4: ``datetime``, ``complex``, ``ndarray``, ``set``."""
    if isinstance(obj, date):
        return _tagged("datetime", obj.isoformat())
    if isinstance(obj, complex):
        return _tagged("complex", [obj.real, obj.imag])
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            return _tagged("ndarray", obj.tolist())
        buf = io.BytesIO()
        np.save(buf, obj, allow_pickle=False)
        return _tagged("ndarray", _to_b64(buf.getvalue()))
    if isinstance(obj, set):
        return _tagged("set", list(obj))
    return _PASS


def _qiskit_loaded() -> bool:
    # A qiskit object implies qiskit is imported; checking keeps plain data cheap to encode.
    return "qiskit" in sys.modules


def _result(obj: Any) -> Any:
    """Row 5: ``Result``."""
    if not _qiskit_loaded():
        return _PASS
    from qiskit.result import Result

    if not isinstance(obj, Result):
        return _PASS
    value = obj.to_dict()
    # terra 0.46's Result requires qobj_id; qiskit 2.x results may lack it.
    value.setdefault("qobj_id", "")
    return _tagged("Result", value)


def _to_json(obj: Any) -> Any:
    """Row 6: anything with ``to_json()``."""
    if hasattr(obj, "to_json"):
        return _tagged("to_json", obj.to_json())
    return _PASS


def _circuits(obj: Any) -> Any:
    """Rows 7-9: circuits, parameter expressions (refused), instructions."""
    if not _qiskit_loaded():
        return _PASS
    from qiskit.circuit import Instruction, ParameterExpression, QuantumCircuit, QuantumRegister

    if isinstance(obj, QuantumCircuit):
        return _tagged("QuantumCircuit", _to_b64(_qpy_dump(obj)))
    if isinstance(obj, ParameterExpression):
        raise TypeError(
            f"ParameterExpression {obj} cannot be sent: the old client cannot decode it "
            "(bind it, or send it inside a QuantumCircuit)"
        )
    if isinstance(obj, Instruction):
        register = QuantumRegister(obj.num_qubits)
        circuit = QuantumCircuit(register)
        circuit.append(obj, register)
        return _tagged("Instruction", _to_b64(_qpy_dump(circuit)))
    return _PASS


def _settings(obj: Any) -> Any:
    """Row 10: objects that describe themselves by ``settings``."""
    if not hasattr(obj, "settings"):
        return _PASS
    return {
        "__type__": "settings",
        "__module__": obj.__class__.__module__,
        "__class__": obj.__class__.__name__,
        "__value__": _set_int_keys_flag(copy.deepcopy(obj.settings)),
    }


def _callable(obj: Any) -> Any:
    """Row 11: callables travel as ``null``, as in the old client."""
    if not callable(obj):
        return _PASS
    warnings.warn(f"Callable {obj} is not JSON serializable and will be set to None.", stacklevel=3)
    return None


def _spmatrix(obj: Any) -> Any:
    """Row 12: scipy sparse matrices and arrays."""
    sparse = sys.modules.get("scipy.sparse")
    if sparse is None or not sparse.issparse(obj):
        return _PASS
    buf = io.BytesIO()
    sparse.save_npz(buf, obj)
    return _tagged("spmatrix", _to_b64(buf.getvalue(), compress=False))


def _primitives(obj: Any) -> Any:
    """Extension rows E1-E6: Qiskit primitives V2 containers."""
    if "qiskit.primitives" not in sys.modules:
        return _PASS
    from qiskit.primitives import BitArray, DataBin, PrimitiveResult, PubResult, SamplerPubResult
    from qiskit.primitives.containers.observables_array import ObservablesArray

    if isinstance(obj, PrimitiveResult):
        return _tagged("PrimitiveResult", {"pub_results": list(obj), "metadata": obj.metadata})
    if isinstance(obj, PubResult):
        tag = "SamplerPubResult" if isinstance(obj, SamplerPubResult) else "PubResult"
        return _tagged(tag, {"data": obj.data, "metadata": obj.metadata})
    if isinstance(obj, DataBin):
        return _tagged("DataBin", {"shape": list(obj.shape), "fields": dict(obj.items())})
    if isinstance(obj, BitArray):
        return _tagged("BitArray", {"array": obj.array, "num_bits": obj.num_bits})
    if isinstance(obj, ObservablesArray):
        return _tagged("ObservablesArray", {"shape": list(obj.shape), "observables": obj.tolist()})
    return _PASS


def _numpy_scalar(obj: Any) -> Any:
    """numpy scalars become plain JSON (the old client raises ``TypeError`` instead)."""
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.complexfloating):
        return _tagged("complex", [float(obj.real), float(obj.imag)])
    return _PASS


#: The checks in the order of the table; the order is part of the wire format.
_CHECKS: tuple[Callable[[Any], Any], ...] = (
    _plain,
    _result,
    _to_json,
    _circuits,
    _settings,
    _callable,
    _spmatrix,
    _primitives,
    _numpy_scalar,
)


class RuntimeEncoder(json.JSONEncoder):
    """JSON encoder of the runtime wire: tags the values plain JSON cannot hold.

    Use it like any encoder: ``json.dumps(value, cls=RuntimeEncoder)``. See the package docstring
    for the tags, their order and their payloads.

    Raises:
        TypeError: (from ``json.dumps``) for a type with no tag, including a bare
            ``ParameterExpression``.
    """

    def default(self, obj: Any) -> Any:
        """Return a JSON-able stand-in for ``obj`` (called by ``json`` for unknown types)."""
        for check in _CHECKS:
            encoded = check(obj)
            if encoded is not _PASS:
                return encoded
        return super().default(obj)
