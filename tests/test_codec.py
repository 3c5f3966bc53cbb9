"""The runtime codec: round trip of every tag, plain-JSON rules, and the safety of the decoder."""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import warnings
import zipfile
import zlib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter, ParameterVector
from qiskit.circuit.library import RZZGate, UnitaryGate
from qiskit.exceptions import QiskitError
from qiskit.primitives import (
    BitArray,
    DataBin,
    PrimitiveResult,
    PubResult,
    SamplerPubResult,
    StatevectorEstimator,
    StatevectorSampler,
)
from qiskit.primitives.containers.observables_array import ObservablesArray
from qiskit.quantum_info import Operator, Pauli, SparsePauliOp, Statevector
from qiskit.result import QuasiDistribution, Result

from prefect_qiskit_runtime.core.codec import (
    DEFAULT_MAX_DECOMPRESSED_BYTES,
    MAX_DECOMPRESSED_BYTES_ENV,
    ResultDecoder,
    RunnerResult,
    RuntimeDecoder,
    RuntimeEncoder,
    qpy_version_of,
    qpy_version_written,
    runner_result_dict,
)
from prefect_qiskit_runtime.core.exceptions import RuntimePayloadError


def dumps(value: Any) -> str:
    return json.dumps(value, cls=RuntimeEncoder)


def loads(text: str, **kwargs: Any) -> Any:
    return json.loads(text, cls=RuntimeDecoder, **kwargs)


def roundtrip(value: Any) -> Any:
    return loads(dumps(value))


def tagged(type_: str, value: Any, **extra: Any) -> str:
    return json.dumps({"__type__": type_, "__value__": value, **extra})


def bell(measure: bool = True) -> QuantumCircuit:
    qc = QuantumCircuit(2, name="bell")
    qc.h(0)
    qc.cx(0, 1)
    if measure:
        qc.measure_all()
    return qc


def result_dict(**exp_overrides: Any) -> dict[str, Any]:
    experiment: dict[str, Any] = {
        "shots": 100,
        "success": True,
        "data": {
            "counts": {"0x0": 40, "0x5": 60},
            "quasiprobabilities": {"0x0": 0.4, "0x5": 0.6},
        },
        "header": {
            "name": "exp0",
            "creg_sizes": [["c", 3]],
            "memory_slots": 3,
            "final_measurement_mapping": [0, 1, 2],
        },
    }
    experiment.update(exp_overrides)
    return {
        "backend_name": "aer_simulator",
        "backend_version": "0.18.2",
        "qobj_id": "",
        "job_id": "job-1",
        "success": True,
        "results": [experiment],
    }


# ---------------------------------------------------------------------------------------------
# Tags of the old client, in table order


def test_datetime_and_date() -> None:
    when = datetime(2024, 2, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=2)))
    assert json.loads(dumps(when)) == {"__type__": "datetime", "__value__": when.isoformat()}
    assert roundtrip(when) == when
    assert roundtrip(date(2024, 2, 3)) == datetime(2024, 2, 3)
    # The old client parses with dateutil; formats fromisoformat refuses still decode.
    assert loads(tagged("datetime", "Feb 3 2024 10:00")) == datetime(2024, 2, 3, 10, 0)


@settings(max_examples=60, deadline=None, database=None)
@given(st.complex_numbers(allow_nan=False, allow_infinity=False))
def test_complex_roundtrip(value: complex) -> None:
    text = dumps(value)
    assert json.loads(text)["__type__"] == "complex"
    assert roundtrip(value) == value


_DTYPES = st.sampled_from(
    [np.float64, np.float32, np.complex128, np.complex64, np.int64, np.int8, np.uint8, np.bool_]
)


@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    hnp.arrays(
        dtype=_DTYPES,
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
        elements={"allow_nan": False},
    ),
    st.booleans(),
)
def test_ndarray_roundtrip(array: np.ndarray, fortran: bool) -> None:
    if fortran:
        array = np.asfortranarray(array)
    text = dumps(array)
    assert json.loads(text)["__type__"] == "ndarray"
    back = roundtrip(array)
    assert back.dtype == array.dtype
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_ndarray_of_objects_goes_as_a_list() -> None:
    array = np.array([1, "a", None, 1 + 2j], dtype=object)
    payload = json.loads(dumps(array))
    assert payload["__type__"] == "ndarray"
    assert isinstance(payload["__value__"], list)
    back = roundtrip(array)
    assert back.dtype == object
    assert back.tolist() == [1, "a", None, 1 + 2j]


def test_set_roundtrip() -> None:
    assert roundtrip({1, "a", 2.5}) == {1, "a", 2.5}
    assert roundtrip({"s": set()}) == {"s": set()}


def test_result_roundtrip_adds_qobj_id_for_the_old_client() -> None:
    data = result_dict()
    del data["qobj_id"]
    result = Result.from_dict(data)
    payload = json.loads(dumps(result))
    assert payload["__type__"] == "Result"
    assert payload["__value__"]["qobj_id"] == ""
    back = roundtrip(result)
    assert isinstance(back, Result)
    assert back.get_counts() == {"000": 40, "101": 60}
    assert back.job_id == "job-1"


class _HasToJson:
    def to_json(self) -> str:
        return '{"x": 1}'


def test_to_json_decodes_to_the_raw_value() -> None:
    assert json.loads(dumps(_HasToJson())) == {"__type__": "to_json", "__value__": '{"x": 1}'}
    assert roundtrip([_HasToJson()]) == ['{"x": 1}']


def test_circuits_roundtrip_with_the_oldest_writable_qpy() -> None:
    theta = Parameter("θ")
    vec = ParameterVector("v", 2)
    param = QuantumCircuit(2, 1, name="param", metadata={"k": [1, 2]})
    param.ry(theta, 0)
    param.rz(vec[0] * vec[1] + 1, 1)
    param.measure(1, 0)
    bound = param.assign_parameters({theta: 0.3, vec[0]: 1.0, vec[1]: -2.0})
    for circuit in (bell(), param, bound):
        payload = json.loads(dumps(circuit))
        assert payload["__type__"] == "QuantumCircuit"
        assert qpy_version_of(payload["__value__"]) == qpy_version_written() == 13
        back = roundtrip(circuit)
        assert back == circuit
        assert back.name == circuit.name
        assert back.metadata == circuit.metadata
    assert roundtrip(param).parameters == param.parameters


def test_circuit_needing_a_newer_qpy_falls_back_to_it() -> None:
    circuit = QuantumCircuit(1)
    stretch = circuit.add_stretch("a")
    circuit.delay(stretch, 0)
    payload = json.loads(dumps(circuit))
    assert qpy_version_of(payload["__value__"]) > qpy_version_written()
    assert roundtrip(circuit) == circuit


def test_parameter_expression_is_never_sent() -> None:
    theta = Parameter("theta")
    with pytest.raises(TypeError, match="ParameterExpression"):
        dumps({"p": theta})
    with pytest.raises(TypeError, match="ParameterExpression"):
        dumps(2 * theta)


def test_instruction_roundtrip() -> None:
    gate = RZZGate(0.25)
    payload = json.loads(dumps(gate))
    assert payload["__type__"] == "Instruction"
    back = roundtrip(gate)
    assert isinstance(back, RZZGate)
    assert back.params == [0.25]
    custom = bell(measure=False).to_gate(label="b")
    back_custom = roundtrip(custom)
    assert back_custom.num_qubits == 2
    assert Operator(back_custom) == Operator(custom)
    unitary = UnitaryGate(Operator(bell(measure=False)))
    assert Operator(roundtrip(unitary)) == Operator(unitary)


def test_settings_roundtrip_for_quantum_info() -> None:
    op = SparsePauliOp(["XZ", "YY", "II"], coeffs=[0.5, -1j, 2.0])
    payload = json.loads(dumps(op))
    assert payload["__type__"] == "settings"
    assert payload["__class__"] == "SparsePauliOp"
    assert payload["__module__"].startswith("qiskit.quantum_info")
    assert roundtrip(op) == op
    state = Statevector([1, 0, 0, 1j]) / np.sqrt(2)
    assert roundtrip(state) == state
    assert roundtrip(Pauli("-iXZ")) == Pauli("-iXZ")


class IntKeyed:
    """A class with ``settings`` holding int-keyed dicts (what ``__int_keys__`` exists for)."""

    def __init__(self, mapping: dict[int, Any], name: str) -> None:
        self.mapping = mapping
        self.name = name

    @property
    def settings(self) -> dict[str, Any]:
        return {"mapping": self.mapping, "name": self.name}


def test_settings_restore_int_keys_and_obey_the_allow_list() -> None:
    obj = IntKeyed({1: "a", 2: {3: "b", "x": 4}}, "n")
    text = dumps(obj)
    payload = json.loads(text)
    assert payload["__value__"]["mapping"]["__int_keys__"] is True
    assert obj.mapping == {1: "a", 2: {3: "b", "x": 4}}  # the encoder works on a copy
    # Not allowed by default: this test module is no library module.
    with pytest.raises(RuntimePayloadError, match="may not name classes"):
        loads(text)
    back = loads(text, settings_modules=(IntKeyed.__module__,))
    assert isinstance(back, IntKeyed)
    assert back.mapping == {1: "a", 2: {3: "b", "x": 4}}
    assert back.name == "n"


def test_settings_never_import_a_module_outside_the_allow_list() -> None:
    assert "this" not in sys.modules
    with pytest.raises(RuntimePayloadError) as info:
        loads(tagged("settings", {}, __module__="this", __class__="X"))
    assert info.value.error_code == "SETTINGS_MODULE_NOT_ALLOWED"
    assert "this" not in sys.modules  # importing it would print the Zen of Python
    # An allowed module, but a function rather than a class.
    with pytest.raises(RuntimePayloadError, match="Unable to find class"):
        loads(tagged("settings", {}, __module__="qiskit.qpy", __class__="load"))
    # A module that no longer exists in qiskit 2.x (spec §6 hazards).
    with pytest.raises(RuntimePayloadError, match=r"qiskit\.algorithms"):
        loads(tagged("settings", {}, __module__="qiskit.algorithms.optimizers", __class__="SPSA"))


def test_callable_becomes_null_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="not JSON serializable"):
        assert dumps({"f": len}) == '{"f": null}'


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "dia", "bsr"])
@pytest.mark.parametrize("kind", ["matrix", "array"])
def test_spmatrix_roundtrip(fmt: str, kind: str) -> None:
    dense = np.array([[0, 1.5, 0, 0], [2j, 0, 0, 3], [0, 0, 0, 0], [1, 0, 0, 4]])
    sparse = getattr(scipy.sparse, f"{fmt}_{kind}")(dense)
    payload = json.loads(dumps(sparse))
    assert payload["__type__"] == "spmatrix"
    back = roundtrip(sparse)
    assert type(back) is type(sparse)
    np.testing.assert_array_equal(back.toarray(), dense)


# ---------------------------------------------------------------------------------------------
# Plain JSON rules and our own choices


def test_plain_json_rules() -> None:
    value = {"t": (1, (2, 3)), 4: "int key", "f": np.float64(0.125)}
    assert roundtrip(value) == {"t": [1, [2, 3]], "4": "int key", "f": 0.125}


def test_numpy_scalars_are_sent_as_plain_numbers() -> None:
    assert dumps([np.int64(3), np.uint8(7), np.bool_(True), np.float32(0.5)]) == "[3, 7, true, 0.5]"
    assert roundtrip(np.complex64(1 - 2j)) == 1 - 2j


def test_unknown_types_still_raise() -> None:
    with pytest.raises(TypeError):
        dumps(object())


def test_unknown_tags_decode_to_the_raw_value() -> None:
    assert loads(tagged("NoSuchTag", {"a": [1]})) == {"a": [1]}
    assert loads('{"__type__": "complex"}') == {"__type__": "complex"}  # no __value__: not a tag


@settings(max_examples=40, deadline=None, database=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**60), 2**60)
        | st.floats(allow_nan=False)
        | st.text(max_size=8)
        | st.complex_numbers(allow_nan=False, allow_infinity=False),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_nested_json_with_complex_roundtrips(value: Any) -> None:
    assert roundtrip(value) == value


# ---------------------------------------------------------------------------------------------
# Extension tags: Qiskit primitives V2


def test_sampler_result_roundtrip() -> None:
    result = StatevectorSampler(seed=7).run([bell(), (bell(), None, 5)], shots=64).result()
    payload = json.loads(dumps(result))
    assert payload["__type__"] == "PrimitiveResult"
    assert payload["__value__"]["pub_results"][0]["__type__"] == "SamplerPubResult"
    back = roundtrip(result)
    assert isinstance(back, PrimitiveResult)
    assert back.metadata == result.metadata
    assert len(back) == 2
    for got, want in zip(back, result, strict=True):
        assert isinstance(got, SamplerPubResult)
        assert got.metadata == want.metadata
        assert isinstance(got.data.meas, BitArray)
        assert got.data.meas == want.data.meas
        assert got.data.meas.get_counts() == want.data.meas.get_counts()
        assert got.join_data().get_counts() == want.join_data().get_counts()


def test_estimator_result_and_observables_roundtrip() -> None:
    observables = ObservablesArray([[SparsePauliOp(["ZZ", "XX"], [1.0, 0.5])], ["IZ"]])
    back_obs = roundtrip(observables)
    assert isinstance(back_obs, ObservablesArray)
    assert back_obs.shape == observables.shape == (2, 1)
    assert back_obs.tolist() == observables.tolist()
    result = StatevectorEstimator().run([(bell(measure=False), observables)]).result()
    back = roundtrip(result)
    pub = back[0]
    assert type(pub) is PubResult
    assert isinstance(pub.data, DataBin)
    assert pub.data.shape == result[0].data.shape == (2, 1)
    np.testing.assert_allclose(pub.data.evs, result[0].data.evs)
    np.testing.assert_allclose(pub.data.evs, [[1.5], [0.0]], atol=1e-12)
    assert pub.metadata == result[0].metadata


def test_databin_with_fields_and_shape() -> None:
    data = DataBin(evs=np.arange(3.0), label="x", shape=(3,))
    back = roundtrip(data)
    assert back.shape == (3,)
    assert back.label == "x"
    np.testing.assert_array_equal(back.evs, np.arange(3.0))


# ---------------------------------------------------------------------------------------------
# Decoder safety


class _Boom:
    """Unpickling this object creates ``path``: proof that a decoder unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.path),))


def _pickled_object_npy(path: Path) -> bytes:
    array = np.empty(1, dtype=object)
    array[0] = _Boom(path)
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def test_ndarray_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    payload = base64.b64encode(zlib.compress(_pickled_object_npy(marker))).decode()
    with pytest.raises(RuntimePayloadError, match="pickle"):
        loads(tagged("ndarray", payload))
    # A bare pickle stream is no .npy file either.
    import pickle

    bare = base64.b64encode(zlib.compress(pickle.dumps(_Boom(marker)))).decode()
    with pytest.raises(RuntimePayloadError, match=r"not an \.npy"):
        loads(tagged("ndarray", bare))
    assert not marker.exists()


def test_spmatrix_with_pickled_member_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("format.npy", _pickled_object_npy(marker))
    with pytest.raises(RuntimePayloadError, match="pickle"):
        loads(tagged("spmatrix", base64.b64encode(buf.getvalue()).decode()))
    assert not marker.exists()


def _zero_bomb(size: int) -> str:
    compressor = zlib.compressobj(9)
    chunk = b"\0" * (1 << 20)
    parts = [compressor.compress(chunk) for _ in range(size // len(chunk))]
    parts.append(compressor.flush())
    return base64.b64encode(b"".join(parts)).decode()


def test_zlib_bomb_is_refused() -> None:
    assert DEFAULT_MAX_DECOMPRESSED_BYTES == 256 * 1024 * 1024
    bomb = tagged("ndarray", _zero_bomb(8 << 20))
    assert len(bomb) < 100_000
    with pytest.raises(RuntimePayloadError, match="beyond the limit") as info:
        loads(bomb, max_decompressed_bytes=4 << 20)
    assert info.value.error_code == "PAYLOAD_TOO_LARGE"
    with pytest.raises(RuntimePayloadError, match="beyond the limit"):
        loads(tagged("QuantumCircuit", _zero_bomb(8 << 20)), max_decompressed_bytes=4 << 20)


def test_limit_applies_to_the_whole_document_and_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    array = np.zeros(300_000, dtype=np.uint8)  # ~300 kB once inflated
    one = dumps(array)
    assert loads(one, max_decompressed_bytes=400_000).shape == (300_000,)
    with pytest.raises(RuntimePayloadError):
        loads(dumps([array, array]), max_decompressed_bytes=400_000)
    monkeypatch.setenv(MAX_DECOMPRESSED_BYTES_ENV, "100000")
    with pytest.raises(RuntimePayloadError):
        loads(one)
    # The budget is per document, not per decoder instance.
    decoder = RuntimeDecoder(max_decompressed_bytes=400_000)
    for _ in range(3):
        assert decoder.decode(one).shape == (300_000,)


def test_npy_header_cannot_claim_more_than_it_holds() -> None:
    buf = io.BytesIO()
    np.save(buf, np.zeros(1))
    lie = buf.getvalue().replace(b"(1,)", b"(10000000000000,)".ljust(4), 1)
    header_len = len(b"(10000000000000,)") - len(b"(1,)")
    # Keep the header 64-byte aligned as numpy expects: eat the padding spaces.
    lie = lie.replace(b" " * header_len + b"\n", b"\n", 1)
    payload = base64.b64encode(zlib.compress(lie)).decode()
    with pytest.raises(RuntimePayloadError, match="declares"):
        loads(tagged("ndarray", payload))


def test_npz_member_sizes_count_against_the_limit() -> None:
    sparse = scipy.sparse.csr_matrix(np.eye(2000))
    text = dumps(sparse)
    assert loads(text).nnz == 2000
    with pytest.raises(RuntimePayloadError, match="beyond the limit"):
        loads(text, max_decompressed_bytes=10_000)


@pytest.mark.parametrize(
    "text",
    [
        tagged("complex", "nope"),
        tagged("ndarray", "!!!not base64"),
        tagged("ndarray", base64.b64encode(b"not zlib").decode()),
        tagged("QuantumCircuit", base64.b64encode(zlib.compress(b"QISKIT\x0dgarbage")).decode()),
        tagged("QuantumCircuit", base64.b64encode(zlib.compress(b"PK not qpy")).decode()),
        tagged("Result", {"no": "results"}),
        tagged("spmatrix", base64.b64encode(b"PK\x03\x04 broken").decode()),
        tagged("settings", [1, 2], __module__="qiskit.quantum_info", __class__="Pauli"),
        tagged("BitArray", {"array": 1}),
    ],
)
def test_malformed_payloads_raise_a_typed_error(text: str) -> None:
    with pytest.raises(RuntimePayloadError):
        loads(text)


# ---------------------------------------------------------------------------------------------
# ResultDecoder and RunnerResult


def test_result_decoder_falls_back_to_text() -> None:
    assert ResultDecoder.decode("All done!") == "All done!"
    assert ResultDecoder.decode(dumps({"z": 1j, "a": np.arange(3)}))["z"] == 1j


class _MyDecoder(ResultDecoder):
    @classmethod
    def decode(cls, data: str) -> Any:
        return {"wrapped": super().decode(data)}


def test_result_decoder_subclass() -> None:
    assert _MyDecoder.decode(dumps({1, 2})) == {"wrapped": {1, 2}}


def test_runner_result_quasiprobabilities() -> None:
    text = json.dumps(result_dict())
    result = RunnerResult.decode(text)
    assert isinstance(result, RunnerResult)
    assert isinstance(result, Result)
    assert result.get_counts() == {"000": 40, "101": 60}
    quasi = result.get_quasiprobabilities()
    assert isinstance(quasi, QuasiDistribution)
    assert quasi.shots == 100
    assert quasi.binary_probabilities() == {"000": 0.4, "101": 0.6}
    assert result.get_quasiprobabilities(0) == quasi
    assert result.get_quasiprobabilities("exp0") == quasi


def test_runner_result_width_comes_from_the_mapping_and_lists_experiments() -> None:
    data = result_dict()
    second = json.loads(json.dumps(data["results"][0]))
    second["header"]["name"] = "exp1"
    second["header"]["final_measurement_mapping"] = [0, 1, 2, 3, 4]
    second["data"]["quasiprobabilities"] = {"0x1": 1.0}
    data["results"].append(second)
    result = RunnerResult.decode(json.dumps(data))
    both = result.get_quasiprobabilities()
    assert isinstance(both, list)
    assert [q.binary_probabilities() for q in both] == [{"000": 0.4, "101": 0.6}, {"00001": 1.0}]
    assert result.get_quasiprobabilities([1]).binary_probabilities() == {"00001": 1.0}


def test_runner_result_without_quasiprobabilities_raises() -> None:
    plain = result_dict(data={"counts": {"0x0": 100}})
    with pytest.raises(QiskitError, match="No quasiprobabilities"):
        RunnerResult.decode(json.dumps(plain)).get_quasiprobabilities()
    no_mapping = result_dict(header={"name": "exp0", "memory_slots": 3})
    with pytest.raises(QiskitError, match="No quasiprobabilities"):
        RunnerResult.decode(json.dumps(no_mapping)).get_quasiprobabilities()


def test_runner_result_of_a_real_simulator_run_and_pickling() -> None:
    import pickle

    from qiskit_aer import AerSimulator

    result = AerSimulator(seed_simulator=3).run(bell(), shots=50).result()
    data = runner_result_dict(result)
    assert data["qobj_id"] == result.to_dict().get("qobj_id", "")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runner = RunnerResult.decode(json.dumps(data))  # plain JSON, as spec §8 requires
    assert runner.get_counts() == result.get_counts()
    assert pickle.loads(pickle.dumps(runner)).get_counts() == result.get_counts()
