# mypy: ignore-errors
"""Jobs through the old client: streaming callbacks, results, failures, logs, cancel, listing,
delete, logout, and a second user who must not see any of it (checklist items 21-43, 45-51).

ARGS: url, carol, dave (tokens), uid, program_path.

The streaming jobs start first; their websocket threads (which, with websocket-client 1.9, reconnect
five times after the job ends) run while the other checks proceed, and are joined at the end.
"""

import threading
from pathlib import Path

from oc_common import (
    ARGS,
    RESULTS,
    check,
    connect,
    finish,
    log_lines,
    raised,
    wait_for_status,
    wait_streams,
)
from qiskit.providers.ibmq.runtime import RuntimeJob

UID = ARGS["uid"]
SOURCE = Path(ARGS["program_path"]).read_text()
BACKEND = "aer_simulator"
OPTIONS = {"backend_name": BACKEND}
POLL = 0.2  # the old client's own polling interval for result()/wait_for_final_state()

provider = connect(ARGS["carol"])
runtime = provider.runtime

pid = runtime.upload_program(
    data=SOURCE,
    metadata={
        "name": f"compat-jobs-{UID}",
        "description": "Program of the jobs checks.",
        "max_execution_time": 300,
        "spec": {
            "parameters": {
                "type": "object",
                "properties": {
                    "iterations": {"type": "integer"},
                    "interval": {"type": "number"},
                    "sleep": {"type": "number"},
                },
            }
        },
    },
)
RESULTS["program_id"] = pid
submitted = []  # every job of this program, in submission order


class Collector:
    """A callback that records (job_id, value) pairs from the stream thread.

    With ``kaboom_at``, the call that receives that iteration raises after recording it (item 50).
    """

    def __init__(self, kaboom_at=None):
        self.calls = []
        self.first = threading.Event()
        self.lock = threading.Lock()
        self.kaboom_at = kaboom_at

    def __call__(self, job_id, value):
        with self.lock:
            self.calls.append([job_id, value])
        self.first.set()
        if self.kaboom_at is not None and value == {"iteration": self.kaboom_at}:
            raise RuntimeError("Kaboom!")


def fresh_job_object(job_id):
    """A RuntimeJob for an existing job whose local status is not final yet (so it may stream)."""
    return RuntimeJob(
        backend=provider.get_backend(BACKEND),
        api_client=runtime._api_client,
        credentials=provider.credentials,
        job_id=job_id,
        program_id=pid,
    )


def run(inputs, callback=None, **options):
    job = runtime.run(pid, options={**OPTIONS, **options}, inputs=inputs, callback=callback)
    submitted.append(job)
    return job


# --- Streaming: a callback given to run(), and stream_results() right after run().
cb_a, cb_b = Collector(), Collector(kaboom_at=1)
inputs_a = {"iterations": 5, "interval": 0.2, "tag": "stream-a", "z": 1 + 1j}
with check("stream_start") as r:
    job_a = run(inputs_a, callback=cb_a)
    job_b = run({"iterations": 5, "interval": 0.3, "tag": "stream-b"})
    job_b.stream_results(cb_b)
    r["ids"] = [job_a.job_id(), job_b.job_id()]
    r["type"] = type(job_a).__name__

with check("result") as r:
    value = job_a.result(wait=POLL)
    r["value"] = value
    r["complex"] = [value["complex"].real, value["complex"].imag]
    r["complex_type"] = type(value["complex"]).__name__
    r["again_equal"] = job_a.result(wait=POLL) == value
    r["status"] = job_a.status().name
    r["b_value"] = job_b.result(wait=POLL)
    r["inputs"] = job_a.inputs
    r["program_id"] = job_a.program_id
    r["backend"] = job_a.backend().name()
    r["creation_date"] = str(job_a.creation_date)
    r["is_runtime_job"] = isinstance(job_a, RuntimeJob)

with check("retrieved") as r:
    got = runtime.job(job_a.job_id())
    r["job_id"] = got.job_id()
    r["program_id"] = got.program_id
    r["inputs"] = got.inputs
    r["z"] = [got.inputs["z"].real, got.inputs["z"].imag] if "z" in got.inputs else None
    r["backend"] = got.backend().name()
    r["status"] = got.status().name
    r["creation_date"] = str(got.creation_date)
    r["result"] = got.result(wait=POLL)["tag"]

# --- A program that raises: KeyError, since "iterations" is missing (item 27).
with check("failed") as r:
    job_f = run({})
    r["result"] = raised(lambda: job_f.result(wait=POLL))
    r["status"] = job_f.status().name
    r["error_message"] = job_f.error_message()
    r["job_id"] = job_f.job_id()

# --- Logs (items 40-41): print/stderr/warnings always, logging by log_level.
with check("logs") as r:
    job_l_info = run({"iterations": 0}, log_level="INFO")
    job_l_error = run({"iterations": 0}, log_level="ERROR")
    job_l_info.wait_for_final_state(wait=POLL)
    job_l_error.wait_for_final_state(wait=POLL)
    r["info"] = job_l_info.logs()
    r["error_level"] = job_l_error.logs()
    r["default"] = job_a.logs()

# --- Pending and cancel (items 31-32, 36, 51): three long jobs on two workers.
cb_c = Collector()
with check("pending") as r:
    job_c1 = run({"iterations": 600, "interval": 0.2}, callback=cb_c)
    job_c2 = run({"iterations": 0, "sleep": 120})
    job_c3 = run({"iterations": 0, "sleep": 120})
    r["pending"] = len(runtime.jobs(limit=None, pending=True, program_id=pid))
    r["pending_limit2"] = len(runtime.jobs(limit=2, pending=True, program_id=pid))
    r["pending_skip2"] = len(runtime.jobs(limit=None, skip=2, pending=True, program_id=pid))
    r["pending_ids"] = sorted(
        j.job_id() for j in runtime.jobs(limit=None, pending=True, program_id=pid)
    )
    r["expected_ids"] = sorted(j.job_id() for j in (job_c1, job_c2, job_c3))
    r["not_pending"] = len(runtime.jobs(limit=None, pending=False, program_id=pid))
    # Item 29: a job retrieved while it is still pending carries the same identity and inputs.
    got = runtime.job(job_c3.job_id())
    r["pending_retrieved"] = {
        "status": got.status().name,
        "program_id": got.program_id,
        "inputs": got.inputs,
        "backend": got.backend().name(),
    }

with check("cancel") as r:
    r["c1_before"] = wait_for_status(job_c1, {"RUNNING"})
    r["c1_got_interim"] = cb_c.first.wait(60)
    job_c1.cancel()
    r["c1_local"] = job_c1.status().name
    r["c3_before"] = job_c3.status().name
    job_c3.cancel()
    job_c2.cancel()
    r["c3_local"] = job_c3.status().name
    r["server"] = [runtime.job(j.job_id()).status().name for j in (job_c1, job_c2, job_c3)]
    r["cancel_done"] = raised(job_a.cancel)
    r["cancelled_result"] = raised(lambda: job_c2.result(wait=POLL))

# --- A finished job streamed again from a new connection: ACK, close 1000, no callbacks (item 49).
cb_again = Collector()
with check("stream_finished") as r:
    job_a_again = fresh_job_object(job_a.job_id())
    job_a_again.stream_results(cb_again)
    r["started"] = True

# --- Ran too long (item 28): a program whose max_execution_time is shorter than its run.
with check("too_long_start") as r:
    pid_short = runtime.upload_program(
        data=SOURCE,
        metadata={
            "name": f"compat-short-{UID}",
            "description": "Runs longer than allowed.",
            "max_execution_time": 3,
        },
    )
    job_long = runtime.run(pid_short, options=OPTIONS, inputs={"iterations": 0, "sleep": 60})
    r["id"] = job_long.job_id()

# --- Many quick jobs for paging (items 34-35, 37-38).
with check("listing") as r:
    quick = [run({"iterations": 0, "tag": f"q{i}"}) for i in range(22)]
    for job in quick:
        job.wait_for_final_state(wait=POLL)
    total = len(submitted)
    r["total"] = total
    r["all"] = len(runtime.jobs(limit=None, program_id=pid))
    r["limit21"] = len(runtime.jobs(limit=21, program_id=pid))
    r["limit40"] = len(runtime.jobs(limit=40, program_id=pid))
    r["default"] = len(runtime.jobs(program_id=pid))
    r["skip4_limit2"] = len(runtime.jobs(limit=2, skip=4, program_id=pid))
    r["skip_total_minus_2"] = len(runtime.jobs(limit=None, skip=total - 2, program_id=pid))
    r["skip50"] = len(runtime.jobs(limit=None, skip=50, program_id=pid))
    r["pending_after"] = len(runtime.jobs(limit=None, pending=True, program_id=pid))
    r["not_pending_after"] = len(runtime.jobs(limit=None, pending=False, program_id=pid))
    r["not_pending_limit6_skip2"] = len(
        runtime.jobs(limit=6, skip=2, pending=False, program_id=pid)
    )
    listed = runtime.jobs(limit=None, program_id=pid)
    r["listed_ids_unique"] = len({j.job_id() for j in listed}) == len(listed)
    r["listed_match_submitted"] = {j.job_id() for j in listed} == {j.job_id() for j in submitted}
    r["program_ids"] = sorted({j.program_id for j in listed})
    r["backends"] = sorted({j.backend().name() for j in listed})
    r["creation_dates_truthy"] = all(bool(j.creation_date) for j in listed)
    r["newest3"] = [j.job_id() for j in runtime.jobs(limit=3, program_id=pid)]
    r["submitted_last3_reversed"] = [j.job_id() for j in reversed(quick[-3:])]
    r["latest_in_unfiltered"] = quick[-1].job_id() in [j.job_id() for j in runtime.jobs()]
    r["quick_inputs"] = [j.inputs.get("tag") for j in listed if j.job_id() == quick[5].job_id()]
    r["statuses"] = sorted({j.status().name for j in listed})

with check("too_long") as r:
    job_long.wait_for_final_state(wait=POLL, timeout=120)
    r["status"] = job_long.status().name
    r["server_status"] = runtime._api_client.job_get(job_long.job_id())["status"]
    r["error_message"] = job_long.error_message()
    r["result"] = raised(lambda: job_long.result(wait=POLL))
    r["job_id"] = job_long.job_id()

with check("delete_short_program") as r:
    runtime.delete_program(pid_short)
    r["deleted"] = True

# --- A runtime image "name:tag" (item 21): accepted, and the job runs.
with check("image") as r:
    job_img = run({"iterations": 0, "tag": "image"}, image="compat-image:1.0")
    r["local_image"] = job_img.image
    r["result_tag"] = job_img.result(wait=POLL)["tag"]

# --- Delete (item 33): a finished job and a running one.
with check("delete_job") as r:
    done_id = quick[0].job_id()
    runtime.delete_job(done_id)
    r["get_deleted"] = raised(lambda: runtime.job(done_id))
    r["delete_again"] = raised(lambda: runtime.delete_job(done_id))
    # The local status is final, so logs() goes straight to /logs, which is now a 404 -> "".
    r["logs_deleted"] = raised(quick[0].logs)
    job_d = run({"iterations": 0, "sleep": 60})
    r["running_before"] = wait_for_status(job_d, {"RUNNING"})
    runtime.delete_job(job_d.job_id())
    r["get_deleted_running"] = raised(lambda: runtime.job(job_d.job_id()))
    r["listed_after"] = len(runtime.jobs(limit=None, program_id=pid))
    r["expected_after"] = len(submitted) - 2

# --- Unknown program (item 22): a raw RequestsApiError with 404.
with check("unknown_program") as r:
    r["raised"] = raised(
        lambda: runtime.run("no-such-program-" + UID, options=OPTIONS, inputs={"iterations": 1})
    )

# --- Logout (item 42): later calls still work.
with check("logout") as r:
    runtime.logout()
    job_after = run({"iterations": 1, "tag": "after-logout"})
    r["result_tag"] = job_after.result(wait=POLL)["tag"]

# --- dave: sees none of carol's jobs, cannot reach them, cannot run her private program.
carol_ids = {j.job_id() for j in submitted}
with check("dave") as r:
    provider_d = connect(ARGS["dave"])
    rt_d = provider_d.runtime
    dave_jobs = rt_d.jobs(limit=None)
    r["sees_carol_jobs"] = sorted(carol_ids & {j.job_id() for j in dave_jobs})
    r["get_carol_job"] = raised(lambda: rt_d.job(job_a.job_id()))
    r["delete_carol_job"] = raised(lambda: rt_d.delete_job(job_a.job_id()))
    r["filter_carol_program"] = len(rt_d.jobs(limit=None, program_id=pid))
    r["run_carol_private"] = raised(
        lambda: rt_d.run(pid, options=OPTIONS, inputs={"iterations": 1})
    )
    hello = rt_d.run("hello-world", options=OPTIONS, inputs={"iterations": 1})
    r["hello_result"] = hello.result(wait=POLL)
    r["dave_jobs_after"] = [j.job_id() for j in rt_d.jobs(limit=None)]
    r["hello_id"] = hello.job_id()

# --- Streams: join the websocket threads (reconnects included), then judge exactly-once.
with check("streams") as r:
    r["thread_errors"] = wait_streams([job_a, job_b, job_c1, job_a_again])
    r["again"] = cb_again.calls
    r["a"] = cb_a.calls
    r["b"] = cb_b.calls
    r["c_count"] = len(cb_c.calls)
    r["c_values"] = [v for _, v in cb_c.calls]
    r["c_job_ids"] = sorted({j for j, _ in cb_c.calls})
    r["ids"] = {"a": job_a.job_id(), "b": job_b.job_id(), "c1": job_c1.job_id()}
    r["warnings"] = log_lines(contains="")
    r["kaboom_warnings"] = len(log_lines(contains="Kaboom!"))
    r["reconnect_infos"] = len(log_lines(min_level=20, contains="Retrying get_job_status"))

RESULTS["_done"] = True
finish()
