# mypy: ignore-errors
"""circuit-runner through the old client: ``run_circuits`` with and without measurement error
mitigation, and the sample workflow of the seed documentation (checklist item 43, spec §8).

ARGS: url, carol (token).
"""

from oc_common import ARGS, RESULTS, captured_stdout, check, connect, finish
from qiskit import QuantumCircuit
from qiskit.providers.ibmq import RunnerResult

POLL = 0.2

provider = connect(ARGS["carol"])


def bell():
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    return qc


def summary(result):
    counts = result.get_counts()
    return {
        "type": type(result).__name__,
        "success": result.success,
        "backend_name": result.backend_name,
        "counts": counts,
        "total": sum(counts.values()),
    }


with check("bell") as r:
    job = provider.run_circuits(bell(), backend_name="aer_simulator", shots=100)
    result = job.result(wait=POLL)
    r.update(summary(result))
    r["program_id"] = job.program_id
    r["inputs_keys"] = sorted(job.inputs)

with check("mitigation") as r:
    job = provider.run_circuits(
        bell(), backend_name="aer_simulator", shots=100, measurement_error_mitigation=True
    )
    result = job.result(wait=POLL)
    r.update(summary(result))
    quasi = result.get_quasiprobabilities()
    r["quasi"] = quasi.binary_probabilities()
    r["quasi_type"] = type(quasi).__name__
    r["quasi_sum"] = sum(quasi.values())
    r["quasi_shots"] = getattr(quasi, "shots", None)

with check("two_circuits") as r:
    job = provider.run_circuits([bell(), bell()], backend_name="aer_simulator", shots=50)
    result = job.result(wait=POLL)
    counts = result.get_counts()
    r["n"] = len(counts)
    r["totals"] = [sum(c.values()) for c in counts]

with check("seed_workflow") as r:
    # As in the seed documentation of IBMRuntimeService (with its undefined `circuit` read as `qc`).
    backend = provider.backend.ibmq_qasm_simulator
    r["listing"] = captured_stdout(lambda: provider.runtime.pprint_programs())
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure_all()
    program_inputs = {"circuits": qc, "measurement_error_mitigation": True}
    options = {"backend_name": backend.name()}
    job = provider.runtime.run(program_id="circuit-runner", options=options, inputs=program_inputs)
    result = job.result(decoder=RunnerResult, wait=POLL)
    r.update(summary(result))
    r["backend"] = backend.name()
    quasi = result.get_quasiprobabilities()
    r["quasi_sum"] = sum(quasi.values())
    r["quasi_keys"] = sorted(quasi.binary_probabilities())

RESULTS["_done"] = True
finish()
