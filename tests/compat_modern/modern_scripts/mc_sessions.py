# mypy: ignore-errors
"""Session and Batch on the noisy 5-qubit device: jobs carry the session, close and cancel."""

from __future__ import annotations

from mc_common import (
    ARGS,
    RESULTS,
    bell,
    check,
    connect,
    counts_of,
    finish,
    raised,
    slow_pub,
    wait_for_status,
)
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import Batch, EstimatorV2, SamplerV2, Session

service = connect(ARGS["carol"])
device = service.backend("fake_5q_device")
manager = generate_preset_pass_manager(backend=device, optimization_level=1, seed_transpiler=11)
isa_bell = manager.run(bell())
isa_state = manager.run(bell(measure=False))
zz = SparsePauliOp("ZZ").apply_layout(isa_state.layout)

with check("not_isa") as r:
    # A device checks its circuits against the Target; an H gate is not in its basis.
    r["run"] = raised(lambda: SamplerV2(mode=device).run([bell()]))

with check("session") as r:
    with Session(backend=device, max_time=600) as session:
        r["session_id"] = session.session_id
        r["status_before"] = session.status()
        sampler = SamplerV2(mode=session)
        sampler.options.simulator.seed_simulator = 99
        job = sampler.run([isa_bell], shots=4000)
        r["counts"] = counts_of(job.result()[0])
        r["job_session"] = job.session_id
        estimator = EstimatorV2(mode=session)
        est_job = estimator.run([(isa_state, zz)])
        r["zz"] = float(est_job.result()[0].data.evs)
        r["est_session"] = est_job.session_id
        details = session.details()
        r["details"] = {k: details[k] for k in ("mode", "state", "accepting_jobs", "max_time")}
        r["usage"] = session.usage()
        r["status_during"] = session.status()
    r["status_after"] = session.status()
    r["closed_run"] = raised(lambda: sampler.run([isa_bell]))
    listed = service.jobs(session_id=session.session_id)
    r["listed"] = sorted(j.job_id() for j in listed)
    r["expected"] = sorted(
        [job.job_id(), *[j.job_id() for j in listed if j.job_id() != job.job_id()]]
    )
    r["looked_up_session"] = service.job(job.job_id()).session_id

with check("from_id") as r:
    again = Session.from_id(r_id := RESULTS["session"]["session_id"], service)
    r["backend"] = again.backend()
    r["session_id"] = again.session_id == r_id
    r["as_batch"] = raised(lambda: Batch.from_id(r_id, service))

with check("batch") as r:
    with Batch(backend=device) as batch:
        sampler = SamplerV2(mode=batch)
        jobs = [sampler.run([isa_bell], shots=100 * (i + 1)) for i in range(3)]
        r["shots"] = [j.result()[0].data.meas.num_shots for j in jobs]
        r["sessions"] = sorted({j.session_id for j in jobs})
        r["batch_id"] = batch.session_id
        r["mode"] = batch.details()["mode"]
    r["status_after"] = batch.status()
    r["listed"] = len(service.jobs(session_id=batch.session_id))

with check("session_cancel") as r:
    session = Session(backend=device)
    sampler = SamplerV2(mode=session)
    circuit, values = slow_pub(qubits=5, points=4000)
    job = sampler.run([(manager.run(circuit), values)], shots=4000)
    r["running"] = wait_for_status(job, ("RUNNING",))
    r["status_running"] = session.status()
    session.cancel()
    r["job_status"] = wait_for_status(job, ("CANCELLED", "DONE", "ERROR"))
    r["session_status"] = session.status()
    r["details_state"] = session.details()["state"]

finish()
