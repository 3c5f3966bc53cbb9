"""Backends and built-in programs: every backend runs a Bell circuit, every program runs once.

Programs run through the real local executor (warm parent, forked job processes) with params encoded
by the real ``RuntimeEncoder``, exactly as the service hands them over.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp

from prefect_qiskit_runtime.core.codec import RuntimeDecoder, RuntimeEncoder
from prefect_qiskit_runtime.server import backends
from prefect_qiskit_runtime.server.executors.base import JobSpec, Outcome
from prefect_qiskit_runtime.server.executors.local import LocalExecutor
from prefect_qiskit_runtime.server.programs import PROGRAM_IDS, builtin_programs

module_loop = pytest.mark.asyncio(loop_scope="module")

SOURCES = {pid: src for pid, src, _ in builtin_programs()}

# H2 at 0.735 Å, parity mapping with two-qubit reduction (electronic energy, Hartree).
H2 = {"II": -1.052373245772859, "IZ": 0.39793742484318045, "ZI": -0.39793742484318045,
      "ZZ": -0.01128010425623538, "XX": 0.18093119978423156}  # fmt: skip


def bell(measure: bool = True) -> QuantumCircuit:
    qc = QuantumCircuit(2, 2 if measure else 0)
    qc.h(0)
    qc.cx(0, 1)
    if measure:
        qc.measure([0, 1], [0, 1])
    return qc


class Collector:
    """Consumer of executor events: collects messages and outcomes per job."""

    def __init__(self) -> None:
        self.messages: dict[str, list[Any]] = {}
        self.outcomes: dict[str, asyncio.Future[Outcome]] = {}

    def future(self, job_id: str) -> asyncio.Future[Outcome]:
        return self.outcomes.setdefault(job_id, asyncio.get_running_loop().create_future())

    async def on_started(self, job_id: str) -> None:
        self.messages.setdefault(job_id, [])

    async def on_messages(self, job_id: str, data: list[str]) -> None:
        decoded = [json.loads(text, cls=RuntimeDecoder) for text in data]
        self.messages.setdefault(job_id, []).extend(decoded)

    async def on_finished(self, job_id: str, outcome: Outcome) -> None:
        self.future(job_id).set_result(outcome)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def run_program(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Any]:
    events = Collector()
    executor = LocalExecutor(2)
    await executor.start(events)
    root = tmp_path_factory.mktemp("programs")
    counter = iter(range(1_000_000))

    async def run(
        program_id: str,
        params: dict[str, Any],
        backend: str = "aer_simulator",
        source: str | None = None,
    ) -> tuple[Any, list[Any]]:
        job_id = f"{program_id}-{next(counter)}"
        workdir = Path(root / job_id)
        workdir.mkdir()
        spec = JobSpec(
            job_id=job_id,
            program_source=source if source is not None else SOURCES[program_id],
            params_json=json.dumps(params, cls=RuntimeEncoder),
            backend_name=backend,
            log_level=None,
            workdir=workdir,
        )
        await executor.submit(spec)
        outcome = await asyncio.wait_for(events.future(job_id), 240)
        assert outcome.status == "COMPLETED", f"{outcome.error}\n{outcome.logs}"
        assert outcome.result is not None
        return json.loads(outcome.result, cls=RuntimeDecoder), events.messages.get(job_id, [])

    yield run
    await executor.shutdown()


def test_backend_catalogue_is_static_and_complete() -> None:
    code = (
        "import sys; from prefect_qiskit_runtime.server import backends as b; "
        "b.list_configurations(); b.num_qubits('fake_27q_device'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('qiskit', 'qiskit_aer')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # the service process never imports Qiskit for this
    assert set(backends.names()) >= {
        "aer_simulator",
        "basic_simulator",
        "ibmq_qasm_simulator",
        "fake_5q_device",
        "fake_27q_device",
    }
    required = {"backend_name", "backend_version", "n_qubits", "max_shots", "basis_gates", "gates",
                "local", "simulator", "conditional", "open_pulse", "memory", "coupling_map",
                "online_date", "description"}  # fmt: skip
    for doc in backends.list_configurations():
        assert required <= set(doc), doc["backend_name"]
        assert doc["open_pulse"] is False
        assert doc["input_allowed"] == ["job", "runtime"]
        json.dumps(doc)
    edges = {tuple(e) for e in backends.configuration("fake_27q_device")["coupling_map"]}
    assert len(edges) == 56 and (13, 14) in edges and (14, 13) in edges
    degrees = [sum(1 for a, _ in edges if a == q) for q in range(27)]
    assert max(degrees) == 3  # heavy-hex: no qubit has more than three neighbours
    with pytest.raises(KeyError, match="Unknown backend"):
        backends.configuration("nope")


@pytest.mark.parametrize("name", backends.names())
def test_backend_builds_and_runs_bell(name: str) -> None:
    backend = backends.build_backend(name)
    assert backend.name == name
    doc = backends.configuration(name)
    if backend.num_qubits is not None:
        assert backend.num_qubits == doc["n_qubits"] == backends.num_qubits(name)
    counts = backend.run(transpile(bell(), backend), shots=400, timeout=None).result().get_counts()
    assert sum(counts.values()) == 400
    assert counts.get("00", 0) + counts.get("11", 0) >= 360
    if doc["coupling_map"]:
        assert backend.coupling_map is not None
        assert sorted(map(list, backend.coupling_map.get_edges())) == doc["coupling_map"]


def test_preset_pass_manager_is_built_once_per_backend_level_and_seed() -> None:
    backend = backends.build_backend("fake_5q_device")
    manager = backends.preset_pass_manager(1, backend)
    assert backends.preset_pass_manager(1, backend) is manager
    assert backends.preset_pass_manager(1, backend, seed_transpiler=3) is not manager
    assert backends.preset_pass_manager(2, backend) is not manager
    other = backends.build_backend("fake_5q_device")
    assert backends.preset_pass_manager(1, other) is not manager
    # Reused, it maps circuits exactly as a freshly built one with the same seed does.
    seeded = backends.preset_pass_manager(1, backend, seed_transpiler=11)
    circuits = [bell(), bell(measure=False)]
    fresh = [transpile(c, backend, optimization_level=1, seed_transpiler=11) for c in circuits]
    for _ in range(2):
        assert [seeded.run(c) for c in circuits] == fresh


def _program_module(program_id: str) -> Any:
    """A built-in program's source as a module of this process (to test its helpers)."""
    import types

    module = types.ModuleType(f"builtin_{program_id.replace('-', '_')}")
    exec(compile(SOURCES[program_id], f"{program_id}.py", "exec"), module.__dict__)
    return module


def test_needs_transpilation_recognises_isa_circuits() -> None:
    aer = backends.build_backend("aer_simulator")
    device = backends.build_backend("fake_5q_device")
    ansatz = QuantumCircuit(2)
    ansatz.ry(Parameter("a"), 0)
    ansatz.ry(Parameter("b"), 1)
    ansatz.cx(0, 1)
    assert backends.needs_transpilation(ansatz, aer) is False  # Aer runs ry and cx anywhere
    assert backends.needs_transpilation(ansatz, device) is True  # ry is not a device gate
    isa = backends.preset_pass_manager(1, device).run(ansatz)
    assert backends.needs_transpilation(isa, device) is False
    far = QuantumCircuit(5)
    far.cx(0, 4)  # no such coupling on the 5-qubit T
    assert backends.needs_transpilation(far, device) is True
    assert backends.needs_transpilation(QuantumCircuit(6), device) is True  # wider than it


def test_estimator_transpiles_only_what_needs_it() -> None:
    estimator = _program_module("estimator")
    aer = backends.build_backend("aer_simulator")
    device = backends.build_backend("fake_5q_device")
    circuit = bell(measure=False)
    # An ISA circuit is used as it is, and so are its observables.
    isa = backends.preset_pass_manager(1, aer).run(circuit)
    kept = estimator.normalize_pub((isa, {"ZZ": 1.0}), aer)
    assert kept[0] is isa and kept[1].tolist() == {"ZZ": 1.0}
    # The same circuit on the device is mapped, and the observable follows the layout.
    moved = estimator.normalize_pub((circuit, {"ZI": 1.0}), device)
    assert moved[0] is not circuit and moved[0].num_qubits == 5
    assert backends.needs_transpilation(moved[0], device) is False
    # skip_transpilation false, or an explicit optimization level, transpiles even ISA circuits.
    assert estimator.normalize_pub((isa, {"ZZ": 1.0}), device, always=True)[0].num_qubits == 5
    assert estimator.normalize_pub((isa, {"ZZ": 1.0}), aer, optimization_level=1)[0] is not isa
    # skip_transpilation true: no backend to transpile for, the circuit stays as it is.
    assert estimator.normalize_pub((circuit, {"ZI": 1.0}))[0] is circuit


# The warm parent builds the level-1 pass manager of each backend before it forks, so a job finds
# it ready instead of paying 3-7 ms to build it.
PREBUILT_PROBE = """
from prefect_qiskit_runtime.server import backends

def main(backend, user_messenger):
    prebuilt = [v[2] for k, v in backends._PASS_MANAGERS.items() if k[0] == id(backend)]
    reused = backends.preset_pass_manager(1, backend) in prebuilt
    return {"prebuilt": len(prebuilt), "reused": reused}
"""


@module_loop
async def test_jobs_get_the_pass_manager_the_warm_parent_built(run_program: Any) -> None:
    for name in ("aer_simulator", "fake_27q_device"):
        result, _ = await run_program("probe", {}, backend=name, source=PREBUILT_PROBE)
        assert result == {"prebuilt": 1, "reused": True}, name


def test_every_builtin_program_has_metadata() -> None:
    programs = builtin_programs()
    assert [p[0] for p in programs] == list(PROGRAM_IDS)
    for program_id, source, meta in programs:
        assert "def main(" in source
        assert meta["name"] == program_id and meta["description"] and meta["max_execution_time"] > 0
        assert meta["spec"]["parameters"]["type"] == "object"
        assert meta["is_public"] is True


@module_loop
async def test_hello_world(run_program: Any) -> None:
    result, messages = await run_program("hello-world", {"iterations": 2}, "fake_5q_device")
    assert result == "All done!"
    assert [m["iteration"] for m in messages] == [0, 1]
    assert all(sum(m["counts"].values()) == 1024 for m in messages)
    assert await run_program("hello-world", {"iterations": 0}) == ("All done!", [])


@module_loop
async def test_circuit_runner_with_mitigation(run_program: Any) -> None:
    from qiskit.result import Result

    params = {
        "circuits": [bell(), bell()],
        "shots": 2000,
        "optimization_level": 1,
        "init_qubits": True,
        "measurement_error_mitigation": True,
        "seed_transpiler": 3,
        "seed_simulator": 11,
    }
    doc, _ = await run_program("circuit-runner", params, "fake_5q_device")
    assert isinstance(doc, dict) and "__type__" not in doc  # a bare Result.to_dict() document
    for key in ("backend_name", "backend_version", "qobj_id", "job_id", "success", "results"):
        assert key in doc
    assert doc["qobj_id"] == "" and doc["backend_name"] == "fake_5q_device"
    result = Result.from_dict(doc)
    for i, exp in enumerate(doc["results"]):
        assert all(k.startswith("0x") for k in exp["data"]["counts"])
        assert exp["header"]["memory_slots"] == 2 and exp["header"]["creg_sizes"] == [["c", 2]]
        assert len(exp["header"]["final_measurement_mapping"]) == 2
        counts = result.get_counts(i)
        assert sum(counts.values()) == 2000
        quasi = {int(k, 16): v for k, v in exp["data"]["quasiprobabilities"].items()}
        assert sum(quasi.values()) == pytest.approx(1.0, abs=1e-9)
        raw_good = (counts.get("00", 0) + counts.get("11", 0)) / 2000
        mitigated_good = quasi.get(0, 0) + quasi.get(3, 0)
        assert mitigated_good >= raw_good - 1e-9  # readout errors were taken out, not added
    from prefect_qiskit_runtime.core.codec import RunnerResult

    decoded = RunnerResult.decode(json.dumps(doc))
    assert decoded.get_quasiprobabilities(0)  # the old client's accessor works on it


@module_loop
async def test_sampler(run_program: Any) -> None:
    theta = Parameter("theta")
    rot = QuantumCircuit(1)
    rot.ry(theta, 0)
    rot.measure_all()
    pubs = [bell(), [rot, [[0.0], [np.pi]], 300]]
    result, _ = await run_program("sampler", {"pubs": pubs, "options": {"shots": 500, "seed": 7}})
    first = result[0].data.c.get_counts()
    assert sum(first.values()) == 500 and set(first) <= {"00", "11"}
    second = result[1].data.meas
    assert second.shape == (2,) and second.num_shots == 300
    assert second[0].get_counts() == {"0": 300} and second[1].get_counts() == {"1": 300}


@module_loop
async def test_estimator(run_program: Any) -> None:
    pubs = [
        [bell(measure=False), [{"ZZ": 1.0, "XX": 1.0}, {"ZI": 1.0}]],
        [bell(measure=False), SparsePauliOp.from_list([("YY", -2.0)])],
    ]
    result, _ = await run_program("estimator", {"pubs": pubs, "options": {"seed": 5}})
    np.testing.assert_allclose(result[0].data.evs, [2.0, 0.0], atol=1e-9)
    assert float(result[1].data.evs) == pytest.approx(2.0, abs=1e-9)


@module_loop
async def test_vqe_reaches_h2_ground_energy(run_program: Any) -> None:
    exact = float(np.linalg.eigvalsh(SparsePauliOp.from_list(list(H2.items())).to_matrix())[0])
    params = {"hamiltonian": H2, "ansatz": "real_amplitudes", "reps": 1, "maxiter": 200, "seed": 7}
    result, messages = await run_program("vqe", params)
    assert abs(result["energy"] - exact) < 1.6e-3
    assert result["iterations"] == len(result["history"]) == len(messages)
    assert [m["iteration"] for m in messages] == list(range(1, len(messages) + 1))
    assert messages[-1].keys() == {"iteration", "energy", "parameters"}
    assert len(result["parameters"]) == 4


@module_loop
async def test_qaoa_finds_the_max_cut(run_program: Any) -> None:
    square = [[0, 1], [1, 2], [2, 3], [3, 0]]
    params = {"edges": square, "reps": 2, "maxiter": 80, "seed": 3, "shots": 512}
    result, messages = await run_program("qaoa", params)
    assert result["cut_value"] == 4.0
    assert result["best_bitstring"] in ("0101", "1010")
    assert result["iterations"] == len(messages) > 0
    assert min(result["history"]) <= result["history"][0]
