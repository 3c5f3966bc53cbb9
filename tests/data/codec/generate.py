"""Regenerate the old-client codec fixtures in this directory.

Run with the old client's interpreter (qiskit-terra 0.46.3 + qiskit-ibmq-provider 0.20.2)::

    /tmp/oldvenv/bin/python tests/data/codec/generate.py

Each ``<name>.json`` file holds the exact text ``json.dumps(value, cls=RuntimeEncoder)`` produced by
the old client; ``tests/test_codec_oldclient.py`` knows the value each one must decode to.
"""

import datetime
import json
import pathlib
import sys
import warnings

import numpy as np
import scipy.sparse
from qiskit.circuit import Parameter, ParameterVector, QuantumCircuit
from qiskit.circuit.library import RZZGate
from qiskit.providers.ibmq.runtime.utils import RuntimeEncoder
from qiskit.quantum_info import SparsePauliOp, Statevector
from qiskit.result import Result

HERE = pathlib.Path(__file__).resolve().parent


def bound_circuit():
    theta = Parameter("theta")
    qc = QuantumCircuit(2, 2, name="bound")
    qc.h(0)
    qc.rx(theta, 1)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    return qc.assign_parameters({theta: 0.5})


def param_circuit():
    theta = Parameter("θ")
    vec = ParameterVector("v", 2)
    qc = QuantumCircuit(2, name="param")
    qc.ry(theta, 0)
    qc.rz(vec[0] + 2 * vec[1], 1)
    qc.rx(theta * vec[1], 0)
    qc.cx(0, 1)
    return qc


def c_if_circuit():
    qc = QuantumCircuit(1, 1, name="cif")
    qc.h(0)
    qc.measure(0, 0)
    qc.x(0).c_if(0, 1)
    return qc


def result():
    return Result.from_dict(
        {
            "backend_name": "aer_simulator",
            "backend_version": "0.12.0",
            "qobj_id": "q-1",
            "job_id": "j-1",
            "success": True,
            "date": "2024-01-02T03:04:05+00:00",
            "results": [
                {
                    "shots": 1024,
                    "success": True,
                    "data": {
                        "counts": {"0x0": 500, "0x3": 524},
                        "quasiprobabilities": {"0x0": 0.49, "0x3": 0.51},
                    },
                    "header": {
                        "name": "bell",
                        "creg_sizes": [["c", 2]],
                        "memory_slots": 2,
                        "final_measurement_mapping": [0, 1],
                    },
                }
            ],
        }
    )


class WithToJson:
    def to_json(self):
        return json.dumps({"kind": "custom", "n": 3})


CASES = {
    "complex": lambda: 1.5 - 2.25j,
    "ndarray_float": lambda: np.linspace(0.0, 1.0, 6).reshape(2, 3),
    "ndarray_complex": lambda: np.array([1 + 1j, -0.5j, 2.0], dtype=np.complex128),
    "ndarray_int": lambda: np.arange(12, dtype=np.int32).reshape(3, 4),
    "ndarray_object": lambda: np.array([1, "a", None], dtype=object),
    "set": lambda: {1, 2, 3},
    "datetime": lambda: datetime.datetime(
        2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc
    ),
    "date": lambda: datetime.date(2024, 5, 6),
    "result": result,
    "to_json": WithToJson,
    "circuit_bound": bound_circuit,
    "circuit_param": param_circuit,
    "circuit_c_if": c_if_circuit,
    "instruction": lambda: RZZGate(0.25),
    "instruction_custom": lambda: (
        bound_circuit().remove_final_measurements(inplace=False).to_gate()
    ),
    "sparse_pauli_op": lambda: SparsePauliOp(["XZ", "YY", "II"], coeffs=[0.5, -1j, 2.0]),
    "statevector": lambda: Statevector([1 / np.sqrt(2), 0, 0, 1j / np.sqrt(2)]),
    "spmatrix": lambda: scipy.sparse.csr_matrix(np.array([[0, 1.5, 0], [2j, 0, 0]])),
    "callable": lambda: len,
    "mixed": lambda: {
        "tuple": (1, 2.5, "x"),
        "int_keys": {1: "a", 2: "b"},
        "np_float": np.float64(0.125),
        "nested": [{"z": 1 + 0j}, {3, 4}],
        "none": None,
    },
}


def parameter_expression():
    """What terra 0.19-0.45 clients sent: the raw sympy-form QPY record, base64, uncompressed.

    terra 0.46's encoder itself raises TypeError here (a missing ``use_symengine`` argument), so the
    record is written by calling the serializer with that argument.
    """
    import base64
    import io

    from qiskit.qpy import binary_io

    theta = Parameter("theta")
    vec = ParameterVector("v", 2)
    buff = io.BytesIO()
    binary_io.value._write_parameter_expression(buff, 2 * theta + vec[1] - 0.5, False)
    value = base64.standard_b64encode(buff.getvalue()).decode("utf-8")
    return json.dumps({"__type__": "ParameterExpression", "__value__": value})


def main():
    (HERE / "parameter_expression.json").write_text(parameter_expression() + "\n", encoding="utf-8")
    print("wrote parameter_expression.json")
    for name, make in CASES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            text = json.dumps(make(), cls=RuntimeEncoder)
        (HERE / f"{name}.json").write_text(text + "\n", encoding="utf-8")
        print(f"wrote {name}.json ({len(text)} chars)")
    # The old client cannot encode these (spec §6 hazards); kept here as evidence.
    for name, make in {
        "parameter": lambda: Parameter("p"),
        "np_int64": lambda: np.int64(3),
    }.items():
        try:
            json.dumps(make(), cls=RuntimeEncoder)
        except TypeError as exc:
            print(f"{name}: TypeError as expected: {exc}", file=sys.stderr)
        else:
            print(f"{name}: unexpectedly encoded", file=sys.stderr)


if __name__ == "__main__":
    main()
