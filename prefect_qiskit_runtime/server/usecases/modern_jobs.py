"""Primitive jobs of the modern Qiskit Runtime API, run as jobs of the built-in programs.

A ``SamplerV2`` or ``EstimatorV2`` of ``qiskit-ibm-runtime`` posts ``program_id`` ``sampler`` or
``estimator`` with ``params`` of primitive version 2: ``pubs`` (RuntimeEncoder-tagged PUBs),
``options`` (the client's option tree) and ``version``. :func:`primitive_inputs` turns that into
the inputs of the built-in ``sampler``/``estimator`` program, which then runs through the one job
path (:func:`.jobs.run_job`): the program's input schema, the scheduler, isolated job processes,
cancel, limits and logs all apply as to any job. The PUBs are never decoded here; only the job's
own process decodes them, with the service's pickle-free decoder.

What carries over from the options: ``default_shots`` (4096 when unset, the service's default),
``default_precision`` (unset: exact expectation values on the ideal simulators),
``simulator.seed_simulator`` and ``seed_estimator`` (the simulator's seed). Error mitigation,
twirling and dynamical decoupling have no meaning on a simulator and are ignored; the job's
``max_execution_time`` (the body's ``cost``) is enforced by the service's watchdog.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from prefect_qiskit_runtime.core.models import JobState
from prefect_qiskit_runtime.server.auth import store_read
from prefect_qiskit_runtime.server.schemas import JobCreate, ModernJobCreate
from prefect_qiskit_runtime.server.store import Job, JobExtras, JobFilter, User, isoformat
from prefect_qiskit_runtime.server.store.sessions import join_session, record_extras
from prefect_qiskit_runtime.server.usecases import jobs as job_cases
from prefect_qiskit_runtime.server.usecases.errors import (
    InvalidArgument,
    InvalidState,
    JobNotFound,
    ProgramNotFound,
    SessionNotFound,
)
from prefect_qiskit_runtime.server.usecases.modern_sessions import accepts_jobs
from prefect_qiskit_runtime.server.usecases.programs import MAX_PAGE

if TYPE_CHECKING:
    from prefect_qiskit_runtime.server.runtime import Runtime

#: The programs the modern API runs, by the ``program_id`` the client sends.
PRIMITIVES = ("sampler", "estimator")
#: Shots per PUB when the client sets none (IBM's documented default).
DEFAULT_SHOTS = 4096
#: Longest tag accepted.
MAX_TAG_LENGTH = 200


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument("INVALID_INPUT", f"{where} must be an object.")
    return value


def primitive_inputs(program_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """The built-in program's inputs for a primitive version 2 ``params`` object.

    Args:
        program_id: ``sampler`` or ``estimator``.
        params: What the client sent.

    Returns:
        ``{"pubs": [...], "options": {...}}`` for the program (checked against its schema later).

    Raises:
        InvalidArgument: ``INVALID_INPUT`` for another primitive version, no PUBs, or options that
            are not objects.

    Example:
        >>> primitive_inputs("sampler", {"pubs": [["c", None, 100]], "version": 2})
        {'pubs': [['c', None, 100]], 'options': {'shots': 4096}}
    """
    version = params.get("version", 2)
    if version != 2 or isinstance(version, bool):
        raise InvalidArgument(
            "INVALID_INPUT", "Only version 2 primitives (SamplerV2, EstimatorV2) are served."
        )
    pubs = params.get("pubs")
    if not isinstance(pubs, list) or not pubs:
        raise InvalidArgument("INVALID_INPUT", "params.pubs must be a non-empty list of PUBs.")
    options = _object(params.get("options"), "params.options")
    simulator = _object(options.get("simulator"), "params.options.simulator")
    seed = simulator.get("seed_simulator")
    chosen: dict[str, Any]
    if program_id == "sampler":
        chosen = {"shots": options.get("default_shots", DEFAULT_SHOTS), "seed": seed}
    else:
        chosen = {
            "precision": options.get("default_precision"),
            "seed": options.get("seed_estimator", seed),
        }
    return {"pubs": pubs, "options": {k: v for k, v in chosen.items() if v is not None}}


def check_tags(tags: list[str] | None) -> tuple[str, ...]:
    """The job's tags, each 1 to :data:`MAX_TAG_LENGTH` characters, without duplicates.

    Raises:
        InvalidArgument: ``INVALID_REQUEST`` for an empty or too long tag.
    """
    if not tags:
        return ()
    for tag in tags:
        if not tag.strip() or len(tag) > MAX_TAG_LENGTH:
            raise InvalidArgument(
                "INVALID_REQUEST", f"Tags must be 1 to {MAX_TAG_LENGTH} non-blank characters."
            )
    return tuple(sorted(set(tags)))


def submit(runtime: Runtime, user: User, body: ModernJobCreate) -> dict[str, Any]:
    """Run a primitive job, in a session or batch when ``session_id`` names one.

    Args:
        runtime: The service instance.
        user: The caller.
        body: The submission.

    Returns:
        ``{"id", "backend"}`` (and ``session_id`` for a job of a session).

    Raises:
        ProgramNotFound: For a program other than ``sampler`` and ``estimator``.
        SessionNotFound: If the caller has no such session.
        InvalidState: If the session no longer accepts jobs.
        InvalidArgument: For bad inputs, tags, or a backend other than the session's.
    """
    if body.program_id not in PRIMITIVES:
        raise ProgramNotFound(body.program_id)
    if body.calibration_id is not None:
        raise InvalidArgument("INVALID_REQUEST", "Calibrations are not supported here.")
    session_id = body.session_id
    backend = body.backend
    if session_id is not None:
        session = runtime.store.get_session(session_id, user.id)
        if session is None:
            raise SessionNotFound(session_id)
        backend = backend or session.backend
        if backend != session.backend:
            raise InvalidArgument(
                "INVALID_BACKEND",
                f"Session {session_id} runs on {session.backend}, not on {backend}.",
            )
    if backend is None:
        raise InvalidArgument("INVALID_BACKEND", "A job needs a backend.")
    params = primitive_inputs(body.program_id, body.params)
    extras = JobExtras(session_id, bool(body.private), check_tags(body.tags))

    def on_insert(conn: Connection, job_id: str) -> None:
        # In the job's own transaction: a session closing now either gets the job or refuses it.
        if session_id is not None:
            row = join_session(conn, session_id, user.id)
            if row is None:
                raise SessionNotFound(session_id)
            if not accepts_jobs(row, datetime.now(timezone.utc)):
                raise InvalidState(f"Session {session_id} is closed; it accepts no more jobs.")
        record_extras(conn, job_id, extras)

    job = JobCreate(
        program_id=body.program_id,
        backend=backend,
        runtime=body.runtime,
        log_level=body.log_level,
        max_execution_time=body.cost,
    )
    answer = job_cases.run_job(runtime, user, job, None, params=params, on_insert=on_insert)
    created = {"id": answer.body["id"], "backend": backend}
    if session_id is not None:
        created["session_id"] = session_id
    return created


async def read_job(
    runtime: Runtime, user: User, job_id: str, *, grace: bool = False
) -> tuple[Job, JobExtras]:
    """The caller's job (without result, error and logs) and its extras.

    Args:
        runtime: The service instance.
        user: The caller.
        job_id: The job.
        grace: Whether a young pending job is waited for (see :func:`status_wait`).

    Raises:
        JobNotFound: If the caller has no such job.
    """
    job = await job_cases.wait_for_job(runtime, job_id, user, None, light=True)
    wait = status_wait(job, runtime.config.status_grace) if grace else 0.0
    if wait > 0:
        job = await job_cases.wait_for_job(runtime, job_id, user, wait, light=True)
    if job.state is JobState.FAILED:  # its state names the error, which a light read leaves out
        job = await job_cases.wait_for_job(runtime, job_id, user, None, light=False)
    store = runtime.store
    extras = await store_read(store, store.job_extras, [job.id])
    return job, extras.get(job.id, JobExtras())


def status_wait(job: Job, grace: float) -> float:
    """How long a status read of ``job`` waits for its end: until the job is ``grace`` s old.

    The client polls a job's status with a sleep between reads (0.1 s in a session, 0.5 s
    otherwise), so a job that ends a few ms after its submission would cost a whole sleep. A
    read of a pending job younger than ``grace`` answers the moment the job ends instead, and at
    the latest when the job is ``grace`` seconds old; an older or final job answers at once.
    """
    if job.is_final or grace <= 0:
        return 0.0
    created = job.created if job.created.tzinfo else job.created.replace(tzinfo=timezone.utc)
    age = (datetime.now(timezone.utc) - created).total_seconds()
    return max(0.0, grace - max(age, 0.0))


def list_jobs(
    runtime: Runtime, user: User, where: JobFilter, limit: int, offset: int, *, ascending: bool
) -> tuple[list[Job], dict[str, JobExtras], int]:
    """A page of the caller's jobs, their extras, and ``count``.

    Returns:
        The page, the extras by job id and ``count``: ``max(matching, offset)``, so that the
        client's paging loop ends even past the last job.
    """
    store = runtime.store
    jobs, total = store.filter_jobs(
        user.id, where, min(limit, MAX_PAGE), offset, ascending=ascending
    )
    return jobs, store.job_extras([job.id for job in jobs]), max(total, offset)


def replace_tags(runtime: Runtime, user: User, job_id: str, tags: list[str]) -> None:
    """Replace the tags of the caller's job.

    Raises:
        JobNotFound: If the caller has no such job.
        InvalidArgument: For a bad tag.
    """
    if not runtime.store.replace_job_tags(job_id, user.id, check_tags(tags)):
        raise JobNotFound(job_id)


def metrics(job: Job) -> dict[str, Any]:
    """``GET /jobs/{id}/metrics``: the job's timestamps and the time it ran.

    Usage is wall-clock running time (a simulator has no QPU time to bill); it is final, and
    reported as ``completed``, once the job is.
    """
    seconds = _ran_for(job)
    return {
        "timestamps": {
            "created": isoformat(job.created),
            "running": isoformat(job.started),
            "finished": isoformat(job.ended),
        },
        "bss": {"seconds": seconds},
        "usage": {
            "quantum_seconds": seconds,
            "seconds": seconds,
            "qpu_charge_time_seconds": seconds,
            "status": "completed" if job.is_final else "pending",
        },
        "executions": None,
        "num_circuits": None,
    }


def _ran_for(job: Job) -> float:
    if job.started is None:
        return 0.0
    end = job.ended or datetime.now(timezone.utc)
    return round(max((end - job.started).total_seconds(), 0.0), 3)


def state(job: Job) -> dict[str, Any]:
    """The job's ``state`` object: its status as the modern client names it and why it ended.

    ``CANCELLED - RAN TOO LONG`` is the status ``Cancelled`` with reason code 1305, which the
    client turns into ``RuntimeJobMaxTimeoutError``; a failed job's reason is the last line of its
    error (the traceback itself is its result text).
    """
    status = job.state
    if status is JobState.CANCELLED_RAN_TOO_LONG:
        return {
            "status": "Cancelled",
            "reason": "Ran too long: the job exceeded its maximum execution time.",
            "reason_code": 1305,
        }
    body: dict[str, Any] = {"status": status.value.capitalize()}
    if status is JobState.FAILED:
        lines = [line for line in (job.error or "").splitlines() if line.strip()]
        body["reason"] = (lines[-1] if lines else job.reason_code or "failed")[:500]
    return body


__all__ = [
    "DEFAULT_SHOTS",
    "PRIMITIVES",
    "check_tags",
    "list_jobs",
    "metrics",
    "primitive_inputs",
    "read_job",
    "replace_tags",
    "state",
    "status_wait",
    "submit",
]
