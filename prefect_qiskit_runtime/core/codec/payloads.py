"""Byte-level pieces of the codec: base64, capped zlib, pickle-free ``.npy``/``.npz`` and QPY.

Everything here treats its input as hostile: sizes are checked against the bytes actually present
and every decompression draws on one :class:`_Budget` per decoded document.
"""

from __future__ import annotations

import base64
import io
import zipfile
import zlib
from typing import Any

import numpy as np

from prefect_qiskit_runtime.core.exceptions import RuntimePayloadError

#: Upper bound on the bytes one decoded document may expand to through zlib or zip (256 MiB).
DEFAULT_MAX_DECOMPRESSED_BYTES = 256 * 1024 * 1024

#: Environment variable that overrides :data:`DEFAULT_MAX_DECOMPRESSED_BYTES` (an integer, bytes).
MAX_DECOMPRESSED_BYTES_ENV = "PREFECT_QISKIT_RUNTIME_MAX_DECOMPRESSED_BYTES"


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
