# mypy: ignore-errors
"""SamplerV2 and EstimatorV2 in job mode, the account and backends, failures and time limits."""

from __future__ import annotations

from mc_common import ARGS, bell, check, connect, counts_of, finish, raised, slow_pub
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp
from qiskit_ibm_runtime import EstimatorV2, SamplerV2

service = connect(ARGS["carol"])

with check("account") as r:
    instances = service.instances()
    r["instances"] = [{k: i[k] for k in ("crn", "name", "plan", "pricing_type")} for i in instances]
    r["active"] = service.active_instance()
    r["by_name"] = connect(ARGS["carol"], instance="local").active_instance()
    r["by_crn"] = connect(ARGS["carol"], instance=r["active"]).active_instance()
    r["backends"] = sorted(b.name for b in service.backends())
    backend = service.backend("fake_27q_device")
    r["n_qubits"] = backend.num_qubits
    r["simulator"] = backend.configuration().simulator
    r["coupling"] = len(backend.coupling_map.get_edges())
    status = backend.status()
    r["status"] = {"operational": status.operational, "msg": status.status_msg}
    r["least_busy"] = service.least_busy(min_num_qubits=25).name

aer = service.backend("aer_simulator")

with check("sampler_bell") as r:
    sampler = SamplerV2(mode=aer)
    sampler.options.simulator.seed_simulator = 1234
    job = sampler.run([bell()], shots=4000)
    r["job_id"] = job.job_id()
    result = job.result()
    r["result_type"] = type(result).__name__
    r["pub_type"] = type(result[0]).__name__
    r["counts"] = counts_of(result[0])
    r["num_shots"] = result[0].data.meas.num_shots
    r["status"] = job.status()
    again = sampler.run([bell()], shots=4000).result()
    r["same_seed_same_counts"] = counts_of(again[0]) == r["counts"]
    r["inputs_keys"] = sorted(job.inputs)
    r["inputs_options"] = job.inputs["options"]

with check("sampler_default_shots") as r:
    result = SamplerV2(mode=aer).run([bell()]).result()
    r["num_shots"] = result[0].data.meas.num_shots
    sampler = SamplerV2(mode=aer, options={"default_shots": 123})
    r["option_shots"] = sampler.run([bell()]).result()[0].data.meas.num_shots

with check("sampler_sweep") as r:
    theta = Parameter("theta")
    circuit = QuantumCircuit(1)
    circuit.rx(theta, 0)
    circuit.measure_all()
    sampler = SamplerV2(mode=aer)
    sampler.options.simulator.seed_simulator = 5
    result = sampler.run([(circuit, [[0.0], [3.141592653589793]])], shots=200).result()
    bits = result[0].data.meas
    r["shape"] = list(bits.shape)
    r["first"] = dict(bits[0].get_counts())
    r["second"] = dict(bits[1].get_counts())

with check("estimator_zz") as r:
    estimator = EstimatorV2(mode=aer)
    job = estimator.run([(bell(measure=False), SparsePauliOp("ZZ"))])
    result = job.result()
    r["result_type"] = type(result).__name__
    r["evs"] = float(result[0].data.evs)
    r["stds"] = float(result[0].data.stds)
    several = estimator.run([(bell(measure=False), ["ZZ", "XX", "ZI"])]).result()
    r["several"] = [float(v) for v in several[0].data.evs]

with check("estimator_precision") as r:
    estimator = EstimatorV2(mode=aer, options={"default_precision": 0.01, "seed_estimator": 3})
    result = estimator.run([(bell(measure=False), SparsePauliOp("ZZ"))]).result()
    r["evs"] = float(result[0].data.evs)
    r["precision"] = result[0].metadata.get("target_precision")

with check("failure") as r:
    wide = QuantumCircuit(26)
    wide.h(range(26))
    wide.measure_all()
    job = SamplerV2(mode=service.backend("basic_simulator")).run([wide], shots=10)
    r["result"] = raised(job.result)
    r["status"] = job.status()
    r["error_message"] = job.error_message()

with check("time_limit") as r:
    sampler = SamplerV2(mode=aer)
    sampler.options.max_execution_time = 1
    job = sampler.run([slow_pub()], shots=100)
    r["result"] = raised(job.result)
    r["status"] = job.status()
    r["logs"] = raised(job.logs)["type"]

finish()
