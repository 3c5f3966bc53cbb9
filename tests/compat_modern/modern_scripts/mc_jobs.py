# mypy: ignore-errors
"""Jobs: cancel, lookup by id, listing and filters, tags, logs, metrics, usage, delete, and a
second user's view."""

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
from qiskit_ibm_runtime import EstimatorV2, QiskitRuntimeService, SamplerV2

service = connect(ARGS["carol"])
aer = service.backend("aer_simulator")
tag = "compat-" + ARGS["uid"]

with check("cancel") as r:
    job = SamplerV2(mode=aer).run([slow_pub()], shots=100)
    r["running"] = wait_for_status(job, ("RUNNING",))
    job.cancel()
    r["status"] = job.status()
    r["server_status"] = service.job(job.job_id()).status()
    r["result"] = raised(job.result)
    r["cancel_again"] = raised(job.cancel)

with check("lookup") as r:
    sampler = SamplerV2(mode=aer, options={"environment": {"job_tags": [tag, "first"]}})
    sampler.options.simulator.seed_simulator = 21
    job = sampler.run([bell()], shots=500)
    first = job.result()
    got = service.job(job.job_id())
    r["same_id"] = got.job_id() == job.job_id()
    r["primitive_id"] = got.primitive_id
    r["status"] = got.status()
    r["backend"] = got.backend().name
    r["tags"] = sorted(got.tags)
    r["expected_tags"] = sorted([tag, "first"])
    r["same_counts"] = counts_of(got.result()[0]) == counts_of(first[0])
    r["created"] = got.creation_date is not None
    r["job_id"] = job.job_id()

with check("listing") as r:
    estimator = EstimatorV2(mode=aer, options={"environment": {"job_tags": [tag]}})
    est_job = estimator.run([(bell(measure=False), "ZZ")])
    est_job.result()
    lookup_id = RESULTS["lookup"]["job_id"]
    r["tagged"] = sorted(j.job_id() for j in service.jobs(job_tags=[tag], limit=None))
    r["expected"] = sorted([lookup_id, est_job.job_id()])
    r["both_tags"] = [j.job_id() for j in service.jobs(job_tags=[tag, "first"])]
    r["estimators"] = [j.job_id() for j in service.jobs(program_id="estimator", job_tags=[tag])]
    r["est_id"] = est_job.job_id()
    r["pending"] = [j.job_id() for j in service.jobs(pending=True, job_tags=[tag])]
    r["limit"] = len(service.jobs(limit=2))
    r["past_the_end"] = len(service.jobs(skip=100000, limit=5))
    r["oldest_first"] = [j.job_id() for j in service.jobs(job_tags=[tag], descending=False)]
    est_job.update_tags([tag, "renamed"])
    r["renamed"] = sorted(service.job(est_job.job_id()).tags)

with check("logs_metrics_usage") as r:
    job = service.job(RESULTS["lookup"]["job_id"])
    r["logs_type"] = type(job.logs()).__name__
    metrics = job.metrics()
    r["timestamps"] = sorted(metrics["timestamps"])
    r["usage"] = job.usage()
    usage = service.usage()
    r["consumed"] = usage["usage_consumed_seconds"]
    r["limit_reached"] = usage["usage_limit_reached"]

with check("delete") as r:
    job = SamplerV2(mode=aer).run([bell()], shots=10)
    job.result()
    service.delete_job(job.job_id())
    r["lookup"] = raised(lambda: service.job(job.job_id()))["type"]

with check("other_user") as r:
    dave = connect(ARGS["dave"])
    r["lookup"] = raised(lambda: dave.job(RESULTS["lookup"]["job_id"]))["type"]
    r["listed"] = [j.job_id() for j in dave.jobs(job_tags=[tag])]
    carol_crn = service.active_instance()
    r["dave_crn_differs"] = dave.active_instance() != carol_crn
    r["carol_instance"] = raised(lambda: connect(ARGS["dave"], instance=carol_crn))["type"]

with check("unknown") as r:
    r["job"] = raised(lambda: service.job("0" * 20))["type"]
    r["backend"] = raised(lambda: service.backend("no_such_backend"))["type"]
    r["bad_token"] = raised(lambda: connect("pqr_not_a_token").backends())["type"]
    r["service_type"] = type(service).__name__ == QiskitRuntimeService.__name__

finish()
