"""The one small interface between the scheduler and whatever runs programs.

The scheduler owns the store and the job state machine; an executor only runs code and reports what
happened through :class:`ExecutorEvents`. Executors never touch the database, so a Ray or Kubernetes
executor can replace the local fork pool without changing anything else.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol


class ExecutorUnavailable(RuntimeError):
    """The executor cannot run jobs here: a missing extra, no cluster at its address.

    Raised by an executor's factory (or ``start``); ``server start`` prints the message as one line
    and exits instead of serving.
    """


@dataclass(frozen=True)
class JobSpec:
    """Everything an executor needs to run one job.

    Args:
        job_id: The job's id.
        program_source: The program's source (defines ``main(backend, user_messenger, **kw)``).
        params_json: The job's ``params`` as RuntimeEncoder JSON text (an object). The runner
            decodes it with ``RuntimeDecoder`` and strips the ``_ParameterNamespace__*`` keys.
        backend_name: A name from :mod:`prefect_qiskit_runtime.server.backends`.
        log_level: Logging level for the program's ``logging`` output (``WARNING`` when ``None``).
        workdir: An empty directory that belongs to this job alone.
        memory_limit_mb: Address-space limit of the job's process, ``None`` for none.
        log_limit_bytes: Logs beyond this size are cut (with a marker line).
        session_id: The dedicated session the job belongs to: an executor may run the jobs of one
            session in one process kept for it (``workdir`` is then inside a directory of the
            session's own, ``workdir.parent``).
    """

    job_id: str
    program_source: str
    params_json: str
    backend_name: str
    log_level: str | None
    workdir: Path
    memory_limit_mb: int | None = None
    log_limit_bytes: int = 1_000_000
    session_id: str | None = None


@dataclass
class Outcome:
    """How a job's execution ended, as the executor saw it.

    ``status`` is ``COMPLETED`` (``result`` holds the RuntimeEncoder JSON text of the final result,
    or ``"null"``), ``FAILED`` (``error`` holds the program's traceback text, including the
    exception name), ``CANCELLED`` (the scheduler asked for it through :meth:`Executor.cancel`),
    or ``LOST`` (the process died without reporting: killed by a signal, out of memory, crashed
    interpreter; ``error`` says what is known, for example the signal).
    """

    status: Literal["COMPLETED", "FAILED", "CANCELLED", "LOST"]
    result: str | None = None
    error: str | None = None
    logs: str = ""
    details: dict[str, object] = field(default_factory=dict)


class ExecutorEvents(Protocol):
    """Callbacks the scheduler gives an executor. All are awaited on the service's event loop."""

    async def on_started(self, job_id: str) -> None:
        """The program's process exists and is about to call ``main``."""

    async def on_messages(self, job_id: str, data: list[str]) -> None:
        """The program published interim results (``final=False``); each item is one's JSON text.

        The executor hands over every message it has already read for the job in one call (a
        program that publishes in bursts costs one store transaction per burst, not per message).
        Calls come in publish order, one at a time per job; the executor waits for a call to return
        before the next, so the scheduler can store and number messages in order.
        """

    async def on_finished(self, job_id: str, outcome: Outcome) -> None:
        """The job's process is gone; called exactly once per submitted job."""


class Executor(abc.ABC):
    """Runs jobs somewhere and reports back through :class:`ExecutorEvents`."""

    #: How many jobs may run at once; the scheduler never submits more.
    capacity: int
    #: Whether :meth:`call` reaches the programs (a job's channel); the Ray executor's does not.
    relays_calls: bool = False

    @abc.abstractmethod
    async def start(self, events: ExecutorEvents) -> None:
        """Prepare to run jobs (for example start a warm parent). May return before it is warm."""

    @abc.abstractmethod
    async def submit(self, spec: JobSpec) -> None:
        """Start running a job. Returns as soon as it is handed over, not when it ends."""

    @abc.abstractmethod
    async def cancel(self, job_id: str) -> bool:
        """Stop a running job within a second; ``on_finished`` follows with ``CANCELLED``.

        Returns:
            False if the executor did not know the job (already finished or never submitted).
        """

    def has_job(self, job_id: str) -> bool:
        """Whether the job was submitted here and has not finished (it may take calls)."""
        return False

    async def call(self, job_id: str, data: str) -> str:
        """Send one call (JSON text) to a running job's program; its reply's JSON text.

        Raises:
            ChannelError: (from :mod:`.calls`) no reply: the executor relays no calls, the job
                is not running here or ended, too many calls are unanswered, or the program
                failed the call.
        """
        from prefect_qiskit_runtime.server.executors.calls import ChannelUnavailable

        raise ChannelUnavailable(f"the {type(self).__name__} relays no calls into jobs")

    def end_calls(self, job_id: str) -> bool:
        """Tell a running job's program that no more calls come; False if the job is not here."""
        return False

    async def end_session(self, session_id: str) -> None:
        """A session accepts no more jobs: whatever was kept for it may go once its jobs ended."""
        return None

    @abc.abstractmethod
    async def shutdown(self) -> None:
        """Stop every running job and release resources. Running jobs get no ``on_finished``."""
