"""The tagged JSON codec of the runtime wire (``spec/runtime-api.md`` §6 and §8).

Values JSON cannot hold travel as ``{"__type__": tag, "__value__": payload}``.
:class:`RuntimeEncoder` checks an object against the table below **in order** and uses the first
match; :class:`RuntimeDecoder` turns each known tag back into a value. Tags 1-12 are those of
``qiskit-ibmq-provider`` 0.20.2 (the old client). The extension tags E1-E6 are never produced by the
old client, so they cannot change what it sends; its decoder leaves them as plain dicts.

===  =====================  =================================================  ===================
#    tag                    ``__value__``                                      decodes to
===  =====================  =================================================  ===================
1    datetime               ``isoformat()`` of a ``date``/``datetime``         ``datetime``
2    complex                ``[re, im]``                                       ``complex``
3    ndarray                object dtype: ``tolist()``; other: ``np.save``     ``ndarray``
                            (``allow_pickle=False``) -> zlib -> base64
4    set                    list                                               ``set``
5    Result                 ``to_dict()`` (``qobj_id`` added if missing)       ``Result``
6    to_json                ``obj.to_json()``                                  the raw value
7    QuantumCircuit         QPY file -> zlib -> base64                         ``QuantumCircuit``
8    ParameterExpression    raw QPY record -> base64 (decoded, never sent)     the expression
9    Instruction            QPY of a circuit holding only this operation       the operation
10   settings               ``obj.settings`` + ``__module__``, ``__class__``;  ``cls(**settings)``
                            int-keyed dicts carry ``"__int_keys__": true``
11   (callable)             ``null``, with a warning                           ``None``
12   spmatrix               ``scipy.sparse.save_npz`` -> base64                scipy sparse
E1   PrimitiveResult        ``{"pub_results": [...], "metadata": {...}}``      ``PrimitiveResult``
E2   SamplerPubResult       ``{"data": DataBin, "metadata": {...}}``           ``SamplerPubResult``
E3   PubResult              ``{"data": DataBin, "metadata": {...}}``           ``PubResult``
E4   DataBin                ``{"shape": [...], "fields": {name: value}}``      ``DataBin``
E5   BitArray               ``{"array": packed uint8 ndarray, "num_bits": n}``  ``BitArray``
E6   ObservablesArray       ``{"shape": [...], "observables": tolist()}``      ``ObservablesArray``
===  =====================  =================================================  ===================

Plain JSON rules, as in the old client: tuples become lists, int dict keys become strings (restored
only inside ``settings``), ``numpy.float64`` passes as a number. Unlike the old client, which raises
``TypeError``, numpy integer, bool, floating and complex scalars are encoded as plain ``int``,
``bool``, ``float`` and the ``complex`` tag: they are everywhere in results and the old client reads
the plain values fine. Any other unknown type raises ``TypeError``. ``SparsePauliOp`` and
``Statevector`` travel through ``settings``, which the old client reads too.

Decoding is safe for data that arrived over the network: nothing is unpickled (``.npy``/``.npz``
payloads are parsed with ``allow_pickle=False`` after their header has been checked against the data
that is actually there), ``settings`` only instantiate classes from modules under an allow-list of
prefixes (:data:`SETTINGS_MODULE_PREFIXES`), every decompression is capped (default
:data:`DEFAULT_MAX_DECOMPRESSED_BYTES`, overridable per call or with the environment variable
``PREFECT_QISKIT_RUNTIME_MAX_DECOMPRESSED_BYTES``), and a malformed payload of a known tag raises
:class:`~prefect_qiskit_runtime.core.exceptions.RuntimePayloadError`. Unknown tags decode to their
raw ``__value__``.

QPY versions: the encoder writes the oldest QPY version the installed Qiskit can write
(:func:`qpy_version_written`; 13 for qiskit 2.x), falling back to the newest one for circuits that
need newer features. The old client (terra 0.46) reads only QPY <= 10, so it cannot read circuits
or instructions this encoder writes: keep circuits out of results sent to it (spec §6 hazards; send
OpenQASM 2 text instead). Decoding accepts QPY v10 written by terra 0.46 (``c_if`` becomes an
``IfElseOp`` with a warning).

``ParameterExpression``: the old client can neither encode nor decode it, so the encoder raises
``TypeError`` for a bare parameter expression (a service must never send the tag); the decoder
reads the sympy-form record that terra 0.19-0.45 clients wrote.

Example:
    >>> import json
    >>> text = json.dumps({"z": 1 + 2j, "s": {1}}, cls=RuntimeEncoder)
    >>> json.loads(text, cls=RuntimeDecoder)
    {'z': (1+2j), 's': {1}}
"""

from __future__ import annotations

import base64
import copy
import importlib
import inspect
import io
import json
import os
import sys
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from prefect_qiskit_runtime.core.exceptions import RuntimePayloadError

if TYPE_CHECKING:
    from qiskit.result import QuasiDistribution, Result

__all__ = [
    "DEFAULT_MAX_DECOMPRESSED_BYTES",
    "SETTINGS_MODULE_PREFIXES",
    "ResultDecoder",
    "RunnerResult",
    "RuntimeDecoder",
    "RuntimeEncoder",
    "qpy_version_of",
    "qpy_version_written",
    "runner_result_dict",
]

#: Upper bound on the bytes one decoded document may expand to through zlib or zip (256 MiB).
DEFAULT_MAX_DECOMPRESSED_BYTES = 256 * 1024 * 1024

#: Environment variable that overrides :data:`DEFAULT_MAX_DECOMPRESSED_BYTES` (an integer, bytes).
MAX_DECOMPRESSED_BYTES_ENV = "PREFECT_QISKIT_RUNTIME_MAX_DECOMPRESSED_BYTES"

#: ``settings`` payloads may only name classes in modules starting with one of these prefixes.
SETTINGS_MODULE_PREFIXES: tuple[str, ...] = (
    "qiskit.",
    "qiskit_aer.",
    "qiskit_algorithms.",
    "numpy.",
    "scipy.",
)

_NPY_MAGIC = b"\x93NUMPY"
_QPY_MAGIC = b"QISKIT"
_NPZ_MAX_MEMBERS = 16


# ----------------------------------------------------------------------------------------------
# Byte helpers


def _to_b64(data: bytes, compress: bool = True) -> str:
    if compress:
        data = zlib.compress(data)
    return base64.standard_b64encode(data).decode("ascii")


class _Budget:
    """Bytes a document may still expand to; shared by every tag of one decode call."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def take(self, size: int) -> None:
        if size > self.left:
            raise RuntimePayloadError(
                f"payload expands beyond the limit of {self.limit} bytes",
                error_code="PAYLOAD_TOO_LARGE",
            )
        self.left -= size


def _from_b64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise RuntimePayloadError("expected a base64 string")
    try:
        return base64.standard_b64decode(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise RuntimePayloadError(f"invalid base64: {exc}") from None


def _inflate(data: bytes, budget: _Budget) -> bytes:
    """zlib-decompress ``data`` without ever producing more than the budget allows."""
    decomp = zlib.decompressobj()
    try:
        # One byte over the budget is enough to know the payload is too large.
        out = decomp.decompress(data, budget.left + 1)
    except zlib.error as exc:
        raise RuntimePayloadError(f"invalid zlib data: {exc}") from None
    budget.take(len(out))
    if decomp.unconsumed_tail:
        budget.take(budget.left + 1)  # raises
    if not decomp.eof:
        raise RuntimePayloadError("truncated zlib data")
    return out


def _load_npy(data: bytes) -> np.ndarray:
    """Parse one ``.npy`` file without pickle and without trusting its declared shape.

    ``np.load`` allocates the declared shape before reading; a 100-byte payload declaring a
    terabyte would be accepted by it, so the header is checked against the bytes present first.
    """
    if not data.startswith(_NPY_MAGIC):
        raise RuntimePayloadError("ndarray payload is not an .npy file")
    buf = io.BytesIO(data)
    fmt = np.lib.format
    try:
        version = fmt.read_magic(buf)
        if version == (1, 0):
            shape, fortran_order, dtype = fmt.read_array_header_1_0(buf)
        elif version == (2, 0):
            shape, fortran_order, dtype = fmt.read_array_header_2_0(buf)
        else:
            raise RuntimePayloadError(f"unsupported .npy format version {version}")
    except RuntimePayloadError:
        raise
    except Exception as exc:
        raise RuntimePayloadError(f"invalid .npy header: {exc}") from None
    if dtype.hasobject:
        raise RuntimePayloadError("object arrays would need pickle and are refused")
    count = 1
    for dim in shape:
        count *= int(dim)
    body = data[buf.tell() :]
    if len(body) != count * dtype.itemsize:
        raise RuntimePayloadError(
            f".npy header declares {count * dtype.itemsize} bytes of data, found {len(body)}"
        )
    flat = np.frombuffer(body, dtype=dtype, count=count)
    if fortran_order:
        return flat.reshape(shape[::-1]).transpose().copy()
    return flat.reshape(shape).copy()


def _load_npz_sparse(data: bytes, budget: _Budget) -> Any:
    """Rebuild a scipy sparse matrix from ``save_npz`` bytes, as ``scipy.sparse.load_npz`` would."""
    import scipy.sparse

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise RuntimePayloadError(f"spmatrix payload is not an .npz file: {exc}") from None
    with archive:
        members = archive.infolist()
        if len(members) > _NPZ_MAX_MEMBERS:
            raise RuntimePayloadError("spmatrix payload has too many members")
        arrays: dict[str, np.ndarray] = {}
        for info in members:
            if not info.filename.endswith(".npy"):
                raise RuntimePayloadError(f"unexpected member {info.filename!r} in spmatrix")
            budget.take(info.file_size)
            with archive.open(info) as member:
                # Read at most the declared size (+1 to notice a lie); zipfile checks the CRC.
                raw = member.read(info.file_size + 1)
            if len(raw) != info.file_size:
                raise RuntimePayloadError("spmatrix member size does not match its header")
            arrays[info.filename[:-4]] = _load_npy(raw)
    if "format" not in arrays:
        raise RuntimePayloadError("spmatrix payload has no 'format'")
    fmt_value = arrays["format"].item()
    sparse_format = fmt_value.decode("ascii") if isinstance(fmt_value, bytes) else str(fmt_value)
    kind = "array" if "_is_array" in arrays and bool(arrays["_is_array"]) else "matrix"
    if sparse_format not in ("csr", "csc", "bsr", "dia", "coo"):
        raise RuntimePayloadError(f"unknown sparse format {sparse_format!r}")
    cls = getattr(scipy.sparse, f"{sparse_format}_{kind}")
    shape = tuple(int(n) for n in arrays["shape"])
    if sparse_format in ("csr", "csc", "bsr"):
        return cls((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
    if sparse_format == "dia":
        return cls((arrays["data"], arrays["offsets"]), shape=shape)
    if "coords" in arrays:
        return cls((arrays["data"], tuple(arrays["coords"])), shape=shape)
    return cls((arrays["data"], (arrays["row"], arrays["col"])), shape=shape)


# ----------------------------------------------------------------------------------------------
# QPY


def qpy_version_written() -> int:
    """Return the QPY version :class:`RuntimeEncoder` writes circuits and instructions with.

    It is the oldest version the installed Qiskit can write (13 for qiskit 2.x). Circuits that use
    features this version lacks are written with the newest version instead. The old client
    (terra 0.46) reads QPY <= 10 only.

    Returns:
        The QPY format version.

    Example:
        >>> qpy_version_written() >= 13
        True
    """
    from qiskit import qpy

    return int(getattr(qpy, "QPY_COMPATIBILITY_VERSION", qpy.QPY_VERSION))


def qpy_version_of(value: str) -> int:
    """Return the QPY version of the ``__value__`` of a ``QuantumCircuit`` or ``Instruction`` tag.

    Args:
        value: The base64 text of the tag.

    Returns:
        The version byte of the QPY header.

    Raises:
        RuntimePayloadError: The text is not a zlib-compressed QPY file.
    """
    data = _inflate(_from_b64(value), _Budget(DEFAULT_MAX_DECOMPRESSED_BYTES))
    if not data.startswith(_QPY_MAGIC) or len(data) < 7:
        raise RuntimePayloadError("not a QPY file")
    return data[6]


def _qpy_dump(circuit: Any) -> bytes:
    from qiskit import qpy

    buf = io.BytesIO()
    try:
        qpy.dump(circuit, buf, version=qpy_version_written())
    except qpy.exceptions.UnsupportedFeatureForVersion:
        buf = io.BytesIO()
        qpy.dump(circuit, buf)
    return buf.getvalue()


def _qpy_load(data: bytes) -> Any:
    from qiskit import qpy

    if not data.startswith(_QPY_MAGIC):
        raise RuntimePayloadError("circuit payload is not a QPY file")
    return qpy.load(io.BytesIO(data))[0]


# ----------------------------------------------------------------------------------------------
# settings


def _set_int_keys_flag(obj: Any) -> Any:
    """Mark every dict that has int keys with ``"__int_keys__": True`` (old client's format)."""
    if isinstance(obj, dict):
        for key, value in list(obj.items()):
            if isinstance(key, int):
                obj["__int_keys__"] = True
            _set_int_keys_flag(value)
    return obj


def _cast_string_keys_to_int(obj: Any) -> Any:
    """Undo :func:`_set_int_keys_flag`: restore int keys where the flag is set, drop the flag."""
    if isinstance(obj, dict):
        flagged = obj.pop("__int_keys__", False)
        for key, value in list(obj.items()):
            _cast_string_keys_to_int(value)
            if flagged and isinstance(key, str):
                try:
                    int_key = int(key)
                except ValueError:
                    continue
                obj[int_key] = obj.pop(key)
    return obj


# ----------------------------------------------------------------------------------------------
# Encoder


class RuntimeEncoder(json.JSONEncoder):
    """JSON encoder of the runtime wire: tags the values plain JSON cannot hold.

    Use it like any encoder: ``json.dumps(value, cls=RuntimeEncoder)``. See the module docstring for
    the tags, their order and their payloads.

    Raises:
        TypeError: (from ``json.dumps``) for a type with no tag, including a bare
            ``ParameterExpression``.
    """

    def default(self, obj: Any) -> Any:
        """Return a JSON-able stand-in for ``obj`` (called by ``json`` for unknown types)."""
        if isinstance(obj, date):
            return {"__type__": "datetime", "__value__": obj.isoformat()}
        if isinstance(obj, complex):
            return {"__type__": "complex", "__value__": [obj.real, obj.imag]}
        if isinstance(obj, np.ndarray):
            if obj.dtype == object:
                return {"__type__": "ndarray", "__value__": obj.tolist()}
            buf = io.BytesIO()
            np.save(buf, obj, allow_pickle=False)
            return {"__type__": "ndarray", "__value__": _to_b64(buf.getvalue())}
        if isinstance(obj, set):
            return {"__type__": "set", "__value__": list(obj)}
        # A qiskit object implies qiskit is imported; checking keeps plain data cheap to encode.
        qiskit_loaded = "qiskit" in sys.modules
        if qiskit_loaded:
            from qiskit.result import Result

            if isinstance(obj, Result):
                value = obj.to_dict()
                # terra 0.46's Result requires qobj_id; qiskit 2.x results may lack it.
                value.setdefault("qobj_id", "")
                return {"__type__": "Result", "__value__": value}
        if hasattr(obj, "to_json"):
            return {"__type__": "to_json", "__value__": obj.to_json()}
        if qiskit_loaded:
            tagged = self._encode_qiskit(obj)
            if tagged is not None:
                return tagged
        if hasattr(obj, "settings"):
            return {
                "__type__": "settings",
                "__module__": obj.__class__.__module__,
                "__class__": obj.__class__.__name__,
                "__value__": _set_int_keys_flag(copy.deepcopy(obj.settings)),
            }
        if callable(obj):
            warnings.warn(
                f"Callable {obj} is not JSON serializable and will be set to None.", stacklevel=2
            )
            return None
        sparse = sys.modules.get("scipy.sparse")
        if sparse is not None and sparse.issparse(obj):
            buf = io.BytesIO()
            sparse.save_npz(buf, obj)
            return {"__type__": "spmatrix", "__value__": _to_b64(buf.getvalue(), compress=False)}
        if qiskit_loaded:
            tagged = self._encode_primitives(obj)
            if tagged is not None:
                return tagged
        if isinstance(obj, np.bool_):
            return bool(obj)
        if isinstance(obj, np.integer):
            return int(obj)
        if isinstance(obj, np.floating):
            return float(obj)
        if isinstance(obj, np.complexfloating):
            return {"__type__": "complex", "__value__": [float(obj.real), float(obj.imag)]}
        return super().default(obj)

    @staticmethod
    def _encode_qiskit(obj: Any) -> dict[str, Any] | None:
        """Checks 7-9 of the table: circuits, parameter expressions, instructions."""
        from qiskit.circuit import Instruction, ParameterExpression, QuantumCircuit, QuantumRegister

        if isinstance(obj, QuantumCircuit):
            return {"__type__": "QuantumCircuit", "__value__": _to_b64(_qpy_dump(obj))}
        if isinstance(obj, ParameterExpression):
            raise TypeError(
                f"ParameterExpression {obj} cannot be sent: the old client cannot decode it "
                "(bind it, or send it inside a QuantumCircuit)"
            )
        if isinstance(obj, Instruction):
            register = QuantumRegister(obj.num_qubits)
            circuit = QuantumCircuit(register)
            circuit.append(obj, register)
            return {"__type__": "Instruction", "__value__": _to_b64(_qpy_dump(circuit))}
        return None

    @staticmethod
    def _encode_primitives(obj: Any) -> dict[str, Any] | None:
        """Extension tags E1-E6 (Qiskit primitives V2 containers)."""
        if "qiskit.primitives" not in sys.modules:
            return None
        from qiskit.primitives import (
            BitArray,
            DataBin,
            PrimitiveResult,
            PubResult,
            SamplerPubResult,
        )
        from qiskit.primitives.containers.observables_array import ObservablesArray

        if isinstance(obj, PrimitiveResult):
            return {
                "__type__": "PrimitiveResult",
                "__value__": {"pub_results": list(obj), "metadata": obj.metadata},
            }
        if isinstance(obj, PubResult):
            tag = "SamplerPubResult" if isinstance(obj, SamplerPubResult) else "PubResult"
            return {"__type__": tag, "__value__": {"data": obj.data, "metadata": obj.metadata}}
        if isinstance(obj, DataBin):
            return {
                "__type__": "DataBin",
                "__value__": {"shape": list(obj.shape), "fields": dict(obj.items())},
            }
        if isinstance(obj, BitArray):
            return {
                "__type__": "BitArray",
                "__value__": {"array": obj.array, "num_bits": obj.num_bits},
            }
        if isinstance(obj, ObservablesArray):
            return {
                "__type__": "ObservablesArray",
                "__value__": {"shape": list(obj.shape), "observables": obj.tolist()},
            }
        return None


# ----------------------------------------------------------------------------------------------
# Decoder


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
# Result decoders


class ResultDecoder:
    """Decoder of a job's final result text, as in the original API.

    Subclass it and override :meth:`decode` for custom post-processing; pass the subclass as
    ``result_decoder`` to ``run`` or as ``decoder`` to ``RuntimeJob.result``.

    Example:
        >>> ResultDecoder.decode('{"__type__": "complex", "__value__": [0, 1]}')
        1j
        >>> ResultDecoder.decode("All done!")
        'All done!'
    """

    @classmethod
    def decode(cls, data: str) -> Any:
        """Decode result text with :class:`RuntimeDecoder`, or return it as is if it is not JSON.

        Args:
            data: The result text of the job.

        Returns:
            The decoded value, or ``data`` itself when it is not JSON.

        Raises:
            RuntimePayloadError: The text is JSON but holds a malformed or unsafe tagged value.
        """
        try:
            return json.loads(data, cls=RuntimeDecoder)
        except json.JSONDecodeError:
            return data


def runner_result_dict(result: Result) -> dict[str, Any]:
    """Return ``result`` as the bare dict the ``circuit-runner`` program must publish (spec §8).

    ``RunnerResult.decode`` of the old client is a plain ``json.loads`` + ``Result.from_dict`` of
    terra 0.46, which needs ``qobj_id`` (absent from many qiskit 2.x results) and cannot take a
    tagged ``date``; both are fixed here.

    Args:
        result: A qiskit ``Result``, e.g. from an Aer simulator run.

    Returns:
        A dict that plain ``json.dumps`` can encode when the result holds only counts, memory and
        quasi-probabilities.

    Example:
        >>> from qiskit.result import Result
        >>> runner_result_dict(Result(backend_name="b", backend_version="1", job_id="j",
        ...                           success=True, results=[]))["qobj_id"]
        ''
    """
    data = result.to_dict()
    data.setdefault("qobj_id", "")
    if isinstance(data.get("date"), date):
        data["date"] = data["date"].isoformat()
    return data


def _hex_to_bits(key: str, width: int) -> str:
    return bin(int(key, 16))[2:].zfill(width)


class _RunnerResultMethods(ResultDecoder):
    """The methods of :class:`RunnerResult`; kept apart so qiskit is imported only on first use."""

    @classmethod
    def decode(cls, data: str) -> Any:
        """Decode a ``circuit-runner`` result: plain ``json.loads`` then ``Result.from_dict``.

        Args:
            data: The result text, a bare ``Result.to_dict()`` JSON (spec §8).

        Returns:
            A :class:`RunnerResult`.
        """
        result_cls: Any = cls
        return result_cls.from_dict(json.loads(data))

    def get_quasiprobabilities(
        self, experiment: int | str | list[int | str] | None = None
    ) -> QuasiDistribution | list[QuasiDistribution]:
        """Return the quasi-probabilities of one or more experiments (measurement mitigation).

        As in the old client, each distribution is a ``QuasiDistribution`` built from bitstrings
        zero-padded to the length of ``header.final_measurement_mapping``, so
        ``binary_probabilities()`` has keys of exactly that width; ``shots`` is set.

        Args:
            experiment: Index or name of an experiment, a list of them, or ``None`` for all.

        Returns:
            One distribution when one experiment is selected, else a list.

        Raises:
            QiskitError: An experiment has no ``quasiprobabilities`` data or no
                ``final_measurement_mapping`` in its header.
        """
        from qiskit.exceptions import QiskitError
        from qiskit.result import QuasiDistribution

        this: Any = self
        if experiment is None:
            keys: list[Any] = list(range(len(this.results)))
        elif isinstance(experiment, list):
            keys = list(experiment)
        else:
            keys = [experiment]
        out: list[QuasiDistribution] = []
        for key in keys:
            exp = this._get_experiment(key)
            data = exp.data.to_dict() if hasattr(exp.data, "to_dict") else dict(exp.data)
            header = exp.header if exp.header is not None else {}
            mapping = (
                header.get("final_measurement_mapping")
                if isinstance(header, dict)
                else getattr(header, "final_measurement_mapping", None)
            )
            if "quasiprobabilities" not in data or mapping is None:
                raise QiskitError(f"No quasiprobabilities for experiment {key!r}")
            width = len(mapping)
            shots = exp.shots
            quasi = {_hex_to_bits(k, width): v for k, v in data["quasiprobabilities"].items()}
            dist = QuasiDistribution(quasi, shots=shots)
            dist.shots = shots
            out.append(dist)
        return out[0] if len(out) == 1 else out


if TYPE_CHECKING:

    class RunnerResult(Result, _RunnerResultMethods):
        """Result of the ``circuit-runner`` program (see :class:`_RunnerResultMethods`)."""


def _build_runner_result() -> type:
    from qiskit.result import Result

    cls = type(
        "RunnerResult",
        (Result, _RunnerResultMethods),
        {
            "__module__": __name__,
            "__qualname__": "RunnerResult",
            "__doc__": (
                "Result of the ``circuit-runner`` program: a qiskit ``Result`` whose ``decode`` is "
                "``json.loads`` + ``Result.from_dict`` and which adds "
                "``get_quasiprobabilities``."
            ),
        },
    )
    return cls


def __getattr__(name: str) -> Any:
    # RunnerResult subclasses qiskit's Result; built lazily, `import codec` stays qiskit-free.
    if name == "RunnerResult":
        cls = _build_runner_result()
        globals()["RunnerResult"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
