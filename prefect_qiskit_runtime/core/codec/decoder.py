"""The decoder of the runtime wire: :class:`RuntimeDecoder`, one handler per tag."""

from __future__ import annotations

import importlib
import inspect
import io
import json
import os
import warnings
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from prefect_qiskit_runtime.core.codec.payloads import (
    DEFAULT_MAX_DECOMPRESSED_BYTES,
    MAX_DECOMPRESSED_BYTES_ENV,
    _Budget,
    _cast_string_keys_to_int,
    _from_b64,
    _inflate,
    _load_npy,
    _load_npz_sparse,
    _qpy_load,
)
from prefect_qiskit_runtime.core.exceptions import RuntimePayloadError

if TYPE_CHECKING:
    from qiskit.result import Result

#: ``settings`` payloads may only name classes in modules starting with one of these prefixes.
SETTINGS_MODULE_PREFIXES: tuple[str, ...] = (
    "qiskit.",
    "qiskit_aer.",
    "qiskit_algorithms.",
    "numpy.",
    "scipy.",
)


def _default_limit() -> int:
    raw = os.environ.get(MAX_DECOMPRESSED_BYTES_ENV)
    if raw:
        try:
            return int(raw)
        except ValueError:
            warnings.warn(
                f"ignoring non-integer {MAX_DECOMPRESSED_BYTES_ENV}={raw!r}", stacklevel=3
            )
    return DEFAULT_MAX_DECOMPRESSED_BYTES


class RuntimeDecoder(json.JSONDecoder):
    """JSON decoder of the runtime wire: turns known tags back into values, never unpickles.

    Args:
        max_decompressed_bytes: Bytes all compressed payloads of one document may expand to
            (default :data:`DEFAULT_MAX_DECOMPRESSED_BYTES` or the environment override).
        settings_modules: Module prefixes ``settings`` tags may instantiate classes from
            (default :data:`SETTINGS_MODULE_PREFIXES`).
        *args, **kwargs: Passed to :class:`json.JSONDecoder` (``object_hook`` is ours).

    Raises:
        RuntimePayloadError: (from ``decode``) a known tag carries a malformed, disallowed or
            oversized payload.

    Example:
        >>> json.loads('{"__type__": "set", "__value__": [1]}', cls=RuntimeDecoder)
        {1}
    """

    def __init__(
        self,
        *args: Any,
        max_decompressed_bytes: int | None = None,
        settings_modules: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("object_hook", None)
        super().__init__(*args, object_hook=self.object_hook, **kwargs)
        self.max_decompressed_bytes = (
            _default_limit() if max_decompressed_bytes is None else int(max_decompressed_bytes)
        )
        self.settings_modules = tuple(
            SETTINGS_MODULE_PREFIXES if settings_modules is None else settings_modules
        )
        self._budget = _Budget(self.max_decompressed_bytes)
        self._parameter_vectors: dict[Any, Any] = {}

    def decode(self, s: str, *args: Any, **kwargs: Any) -> Any:
        """Decode one JSON document; the decompression budget applies to the whole document."""
        self._budget = _Budget(self.max_decompressed_bytes)
        self._parameter_vectors = {}
        return super().decode(s, *args, **kwargs)

    def object_hook(self, obj: dict[str, Any]) -> Any:
        """Decode one JSON object: a known tag becomes its value, anything else is left as is."""
        if "__type__" not in obj or "__value__" not in obj:
            return obj
        tag = obj["__type__"]
        handler = self._HANDLERS.get(tag) if isinstance(tag, str) else None
        if handler is None:
            return obj["__value__"]
        try:
            return handler(self, obj)
        except RuntimePayloadError:
            raise
        except Exception as exc:
            raise RuntimePayloadError(
                f"cannot decode {tag!r} value: {type(exc).__name__}: {exc}",
                error_code="BAD_PAYLOAD",
            ) from exc

    # One method per tag; each gets the whole tagged object.

    def _datetime(self, obj: dict[str, Any]) -> datetime:
        value = obj["__value__"]
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            import dateutil.parser

            return dateutil.parser.parse(value)

    def _complex(self, obj: dict[str, Any]) -> complex:
        real, imag = obj["__value__"]
        return complex(float(real), float(imag))

    def _ndarray(self, obj: dict[str, Any]) -> np.ndarray:
        value = obj["__value__"]
        if isinstance(value, list):
            return np.array(value)
        return _load_npy(_inflate(_from_b64(value), self._budget))

    def _set(self, obj: dict[str, Any]) -> set[Any]:
        return set(obj["__value__"])

    def _result(self, obj: dict[str, Any]) -> Result:
        from qiskit.result import Result

        return Result.from_dict(obj["__value__"])

    def _to_json(self, obj: dict[str, Any]) -> Any:
        return obj["__value__"]

    def _circuit(self, obj: dict[str, Any]) -> Any:
        return _qpy_load(_inflate(_from_b64(obj["__value__"]), self._budget))

    def _instruction(self, obj: dict[str, Any]) -> Any:
        circuit = _qpy_load(_inflate(_from_b64(obj["__value__"]), self._budget))
        if len(circuit.data) != 1:
            raise RuntimePayloadError("Instruction payload must hold exactly one operation")
        return circuit.data[0].operation

    def _parameter_expression(self, obj: dict[str, Any]) -> Any:
        from qiskit.qpy.binary_io import value as qpy_value

        # Uncompressed, as the old client wrote it; the sympy form is parsed by an AST walker,
        # never evaluated.
        raw = _from_b64(obj["__value__"])
        self._budget.take(len(raw))
        return qpy_value._read_parameter_expression_v3(
            io.BytesIO(raw), vectors=self._parameter_vectors, use_symengine=False
        )

    def _settings(self, obj: dict[str, Any]) -> Any:
        mod_name = obj.get("__module__")
        class_name = obj.get("__class__")
        if not isinstance(mod_name, str) or not isinstance(class_name, str):
            raise RuntimePayloadError("settings tag needs string __module__ and __class__")
        if not mod_name.startswith(self.settings_modules):
            raise RuntimePayloadError(
                f"settings may not name classes of module {mod_name!r} "
                f"(allowed prefixes: {', '.join(self.settings_modules)})",
                error_code="SETTINGS_MODULE_NOT_ALLOWED",
            )
        value = obj["__value__"]
        if not isinstance(value, dict):
            raise RuntimePayloadError("settings __value__ must be an object")
        module = importlib.import_module(mod_name)
        cls = getattr(module, class_name, None)
        if not inspect.isclass(cls):
            raise RuntimePayloadError(f"Unable to find class {class_name} in module {mod_name}")
        return cls(**_cast_string_keys_to_int(value))

    def _spmatrix(self, obj: dict[str, Any]) -> Any:
        return _load_npz_sparse(_from_b64(obj["__value__"]), self._budget)

    def _primitive_result(self, obj: dict[str, Any]) -> Any:
        from qiskit.primitives import PrimitiveResult

        value = obj["__value__"]
        return PrimitiveResult(value["pub_results"], metadata=value.get("metadata"))

    def _pub_result(self, obj: dict[str, Any]) -> Any:
        from qiskit.primitives import PubResult, SamplerPubResult

        cls = SamplerPubResult if obj["__type__"] == "SamplerPubResult" else PubResult
        value = obj["__value__"]
        return cls(value["data"], metadata=value.get("metadata"))

    def _data_bin(self, obj: dict[str, Any]) -> Any:
        from qiskit.primitives import DataBin

        value = obj["__value__"]
        return DataBin(shape=tuple(value["shape"]), **value["fields"])

    def _bit_array(self, obj: dict[str, Any]) -> Any:
        from qiskit.primitives import BitArray

        value = obj["__value__"]
        return BitArray(np.asarray(value["array"], dtype=np.uint8), int(value["num_bits"]))

    def _observables_array(self, obj: dict[str, Any]) -> Any:
        from qiskit.primitives.containers.observables_array import ObservablesArray

        value = obj["__value__"]
        array = ObservablesArray(value["observables"])
        shape = tuple(value["shape"])
        return array if array.shape == shape else array.reshape(shape)

    _HANDLERS: dict[str, Callable[[RuntimeDecoder, dict[str, Any]], Any]] = {
        "datetime": _datetime,
        "complex": _complex,
        "ndarray": _ndarray,
        "set": _set,
        "Result": _result,
        "to_json": _to_json,
        "QuantumCircuit": _circuit,
        "ParameterExpression": _parameter_expression,
        "Instruction": _instruction,
        "settings": _settings,
        "spmatrix": _spmatrix,
        "PrimitiveResult": _primitive_result,
        "PubResult": _pub_result,
        "SamplerPubResult": _pub_result,
        "DataBin": _data_bin,
        "BitArray": _bit_array,
        "ObservablesArray": _observables_array,
    }


# ----------------------------------------------------------------------------------------------
