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

from typing import TYPE_CHECKING, Any

from prefect_qiskit_runtime.core.codec.decoder import SETTINGS_MODULE_PREFIXES, RuntimeDecoder
from prefect_qiskit_runtime.core.codec.encoder import RuntimeEncoder
from prefect_qiskit_runtime.core.codec.payloads import (
    DEFAULT_MAX_DECOMPRESSED_BYTES,
    MAX_DECOMPRESSED_BYTES_ENV,
    qpy_version_of,
    qpy_version_written,
)
from prefect_qiskit_runtime.core.codec.results import (
    ResultDecoder,
    build_runner_result,
    runner_result_dict,
)

if TYPE_CHECKING:
    from prefect_qiskit_runtime.core.codec.results import RunnerResult


__all__ = [
    "DEFAULT_MAX_DECOMPRESSED_BYTES",
    "MAX_DECOMPRESSED_BYTES_ENV",
    "SETTINGS_MODULE_PREFIXES",
    "ResultDecoder",
    "RunnerResult",
    "RuntimeDecoder",
    "RuntimeEncoder",
    "qpy_version_of",
    "qpy_version_written",
    "runner_result_dict",
]


def __getattr__(name: str) -> Any:
    # RunnerResult subclasses qiskit's Result; built lazily, `import codec` stays qiskit-free.
    if name == "RunnerResult":
        cls = build_runner_result(__name__)
        globals()["RunnerResult"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
