"""From the queue to the executor and back: dispatch, outcomes, watchdog, cancel and recovery.

The scheduler owns the job state machine. It claims QUEUED jobs from the store (oldest first) while
the executor has room, hands them over with a fresh working directory, numbers and stores what the
program publishes, and records how each job ended. Nothing here runs program code.

The hot path avoids trips through the queue: a submission that finds a free slot (and no older
job queued) creates its job already claimed (``reserve_slot`` / ``take_reserved``), and a finishing
job's slot goes to the next queued job in the same worker-thread trip that records the outcome.
Every claim first promises its slots (``_reserve``), so running jobs plus promised slots never
exceed the executor's capacity, whichever path claims.

State rules:

- A job is RUNNING from the moment this instance claims it.
- Cancelling or the execution-time watchdog writes the final status first and kills second, so the
  status the API shows changes at once and a late ``COMPLETED`` of the executor never overwrites it.
- At start-up, RUNNING jobs of a dead instance become ``FAILED`` (``SERVICE_RESTARTED``,
  retryable) and QUEUED jobs simply run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect_qiskit_runtime.core.models import JobState, ReasonCode
from prefect_qiskit_runtime.server.broker import Broker
from prefect_qiskit_runtime.server.config import ServiceConfig
from prefect_qiskit_runtime.server.executors.base import Executor, JobSpec, Outcome
from prefect_qiskit_runtime.server.recording import map_outcome, until_stored
from prefect_qiskit_runtime.server.replicas import Instances
from prefect_qiskit_runtime.server.store import ClaimedJob, FinishOutcome, Store

logger = logging.getLogger("prefect_qiskit_runtime.server.scheduler")

#: How often the scheduler re-reads the queue without being woken (jobs of other instances).
POLL_SECONDS = 1.0


@dataclass
class _Running:
    job_id: str
    workdir: Path
    started: float = field(default_factory=time.monotonic)
    watchdog: asyncio.TimerHandle | None = None


class Scheduler:
    """Dispatches queued jobs to an executor and records their outcomes (implements
    :class:`~prefect_qiskit_runtime.server.executors.base.ExecutorEvents`).

    Args:
        store: The repository.
        broker: Where job events are announced.
        executor: What runs the programs.
        config: Service settings (home, limits).
        on_job_end: Called with ``(job_id, status)`` after a job's outcome is stored (metrics).
    """

    def __init__(
        self,
        store: Store,
        broker: Broker,
        executor: Executor,
        config: ServiceConfig,
        on_job_end: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store = store
        self.broker = broker
        self.executor = executor
        self.config = config
        self.instance_id = secrets.token_hex(8)
        self.on_job_end = on_job_end
        self.running: dict[str, _Running] = {}
        #: Slots promised to a claim in progress (the dispatcher's, or a route's that creates a job
        #: already claimed); ``len(running) + _reserved`` never exceeds the executor's capacity.
        self._reserved = 0
        self._contended = False
        self._slots = threading.Lock()
        #: Tasks started from callbacks (hand-overs, watchdogs), referenced until they end.
        self._handovers: set[asyncio.Future[None]] = set()
        self.dropped_messages = 0
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        #: Heartbeats, recovery of gone instances' jobs, cancels made through other instances.
        self.instances = Instances(self)

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> list[str]:
        """Register this instance, recover jobs of dead ones, start the executor and dispatching.

        Returns:
            Ids of jobs failed by the recovery.
        """
        self._loop = asyncio.get_running_loop()
        self.broker.bind(self._loop)
        failed = await self.instances.join()
        for job_id in failed:
            logger.warning("job %s was running when the service stopped; marked FAILED", job_id)
        self._clean_stale_workdirs()
        await self.executor.start(self)
        self._tasks = [
            asyncio.create_task(self._dispatch_loop(), name="scheduler-dispatch"),
            asyncio.create_task(self.instances.keep(), name="scheduler-housekeeping"),
        ]
        self.kick()
        return failed

    async def shutdown(self) -> None:
        """Stop dispatching and stop the executor (running jobs are killed and stay RUNNING in the
        store until the next start-up fails them, unless another instance does it first)."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for running in self.running.values():
            if running.watchdog is not None:
                running.watchdog.cancel()
        try:
            await self.executor.shutdown()
        except Exception:
            logger.exception("executor shutdown failed")
        running_ids = list(self.running)
        self.running.clear()
        if running_ids:
            # This process is going away cleanly: say so now rather than at the next start-up.
            await asyncio.to_thread(self._fail_interrupted, running_ids)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.store.remove_instance, self.instance_id)

    def _fail_interrupted(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self.store.end_running_job(
                job_id,
                JobState.FAILED,
                ReasonCode.SERVICE_RESTARTED,
                "The runtime service was stopped while this job was running (SERVICE_RESTARTED). "
                "The job did not finish; it is safe to submit it again.",
            )
            shutil.rmtree(self.config.jobs_dir / job_id, ignore_errors=True)

    def kick(self) -> None:
        """Wake the dispatcher (thread-safe): a job was queued or a slot became free."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    @property
    def running_count(self) -> int:
        """Jobs this instance is running now."""
        return len(self.running)

    # -- dispatch ------------------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            self._wake.clear()
            try:
                await self._dispatch()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("dispatch failed; retrying")

    async def _dispatch(self) -> None:
        while not self._stopping:
            free = self._reserve(None)
            if free <= 0:
                return
            try:
                claimed = await asyncio.to_thread(
                    self.store.claim_jobs_to_run, self.instance_id, free
                )
            except BaseException:
                self._release(free)
                raise
            for spec in self._start(claimed, free):
                await self._hand_over(spec)
            if len(claimed) < free:
                # The queue was empty behind these: a job queued since then kicks us again.
                return

    def _reserve(self, wanted: int | None) -> int:
        """Promise up to ``wanted`` free slots (every free one for ``None``); thread-safe."""
        with self._slots:
            free = self.executor.capacity - len(self.running) - self._reserved
            taken = max(0, free if wanted is None else min(wanted, free))
            if taken < (wanted or 1) and self._reserved:
                # Someone found the slots promised to a claim in progress; if that claim leaves
                # one unused, the dispatcher must look at the queue again (see _settle).
                self._contended = True
            self._reserved += taken
            return taken

    def _release(self, count: int) -> None:
        self._settle(count, 0)

    def _settle(self, reserved: int, used: int) -> None:
        """End a promise of ``reserved`` slots of which ``used`` became running jobs."""
        with self._slots:
            self._reserved -= reserved
            wake = used < reserved and self._contended
            if wake:
                self._contended = False
        if wake:
            self.kick()

    def _start(self, claimed: list[ClaimedJob], reserved: int) -> list[JobSpec]:
        """Turn ``reserved`` promised slots into running ``claimed`` jobs (on the event loop)."""
        assert self._loop is not None
        with self._slots:
            for item in claimed:
                workdir = self.config.job_workdir(item.job.id, item.session_id)
                self.running[item.job.id] = _Running(job_id=item.job.id, workdir=workdir)
        self._settle(reserved, len(claimed))
        specs = []
        for item in claimed:
            job = item.job
            running = self.running[job.id]
            shutil.rmtree(running.workdir, ignore_errors=True)
            running.workdir.mkdir(parents=True, exist_ok=True)
            running.watchdog = self._loop.call_later(
                max(job.cost, 1), self._watchdog_fired, job.id, job.cost
            )
            specs.append(
                JobSpec(
                    job_id=job.id,
                    program_source=item.program_source,
                    params_json=job.params,
                    backend_name=job.backend,
                    log_level=job.log_level,
                    workdir=running.workdir,
                    memory_limit_mb=self.config.memory_limit_mb,
                    log_limit_bytes=self.config.log_limit_bytes,
                    session_id=item.session_id,
                )
            )
        return specs

    def _watchdog_fired(self, job_id: str, cost: int) -> None:
        self.spawn(self._ran_too_long(job_id, cost))

    @property
    def stopping(self) -> bool:
        """Whether :meth:`shutdown` has begun."""
        return self._stopping

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task kept referenced until it ends."""
        task = asyncio.ensure_future(coro)
        self._handovers.add(task)
        task.add_done_callback(self._handovers.discard)

    async def _hand_over(self, spec: JobSpec) -> None:
        try:
            await self.executor.submit(spec)
        except Exception as exc:
            logger.exception("executor refused job %s", spec.job_id)
            await self.on_finished(
                spec.job_id,
                Outcome(status="LOST", error=f"The executor could not start the job: {exc!r}"),
            )

    # -- jobs claimed at submission ------------------------------------------------------------

    def reserve_slot(self) -> bool:
        """Promise a free slot to a job about to be created (thread-safe, from a route).

        The route then creates the job already claimed by this instance (when no older job is
        queued), which saves the queue's round trip, and must call :meth:`take_reserved` in every
        case.

        Returns:
            Whether a slot was free.
        """
        loop = self._loop
        if self._stopping or loop is None or loop.is_closed():
            return False
        return self._reserve(1) == 1

    def take_reserved(self, claimed: ClaimedJob | None) -> None:
        """Run the job created on a slot from :meth:`reserve_slot` (thread-safe).

        Args:
            claimed: The job, claimed by this instance; ``None`` if the slot went unused (the job
                was queued behind older ones, or nothing was created).
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            self._release(1)
            return
        loop.call_soon_threadsafe(self._start_reserved, claimed)

    def _start_reserved(self, claimed: ClaimedJob | None) -> None:
        if claimed is None or self._stopping:
            # An unused slot, or a job that the next start-up's recovery fails (retryable).
            self._release(1)
            self.kick()
            return
        for spec in self._start([claimed], 1):
            self.spawn(self._hand_over(spec))

    # -- executor events -----------------------------------------------------------------------

    async def on_started(self, job_id: str) -> None:
        """The job's process is about to call ``main`` (nothing to record: RUNNING since claim)."""
        logger.debug("job %s started", job_id)

    async def on_messages(self, job_id: str, data: list[str]) -> None:
        """Store a burst of interim messages in one transaction, then announce each in order.

        Messages over the size limit are dropped (and counted) before numbering, so the stored
        sequence has no gaps.
        """
        limit = self.config.max_message_bytes
        kept: list[str] = []
        for text in data:
            # A str's UTF-8 size is at most 4 bytes per character: most messages skip the encode.
            if len(text) * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit:
                self.dropped_messages += 1
                logger.warning("job %s published a message over %d bytes; dropped", job_id, limit)
                continue
            kept.append(text)
        if not kept:
            return
        first = await until_stored(
            lambda: self.store.add_messages(job_id, kept),
            f"store interim results of job {job_id}",
            lambda: self._stopping,
        )
        if first is None:
            return
        for offset, text in enumerate(kept):
            self.broker.publish_message(job_id, first + offset, text)

    async def on_finished(self, job_id: str, outcome: Outcome) -> None:
        """Record the outcome (unless the job already ended), announce it, free the slot."""
        running = self.running.pop(job_id, None)
        if running is not None and running.watchdog is not None:
            running.watchdog.cancel()
        status, reason, result, error = map_outcome(outcome)
        workdir = running.workdir if running else self.config.jobs_dir / job_id

        # The freed slot goes to the oldest queued job, claimed in the same trip to a thread; only
        # that one slot, so that a submission arriving meanwhile still finds the others free.
        reserved = 0 if self._stopping else self._reserve(1)

        finished: list[FinishOutcome] = []

        def record() -> tuple[FinishOutcome, list[ClaimedJob]]:
            # One trip to a worker thread for all of it (a trip costs about as much as the SQL):
            # store the outcome, clean up the working directory, announce the end, claim the
            # next queued jobs for the freed slot. The directory goes before the announcement so
            # that whoever learns of the end never finds the job's files still there. A retry
            # after a failed claim does not record the outcome twice.
            if not finished:
                try:
                    finished.append(
                        self.store.finish_job(
                            job_id,
                            status,
                            reason_code=reason,
                            result=result,
                            error=error,
                            logs=outcome.logs,
                        )
                    )
                finally:
                    shutil.rmtree(workdir, ignore_errors=True)
                self.broker.publish_final(
                    job_id, finished[0].status or status.value, finished[0].job
                )
            claimed = self.store.claim_jobs_to_run(self.instance_id, reserved) if reserved else []
            return finished[0], claimed

        try:
            # A job must never stay RUNNING because its end could not be written (database
            # locked, disk full): the outcome is held here and written once the fault clears.
            done, claimed = await until_stored(
                record, f"record the end of job {job_id}", lambda: self._stopping
            )
        except BaseException:
            self._release(reserved)
            self.kick()
            raise
        if done.applied and self.on_job_end is not None:
            self.on_job_end(job_id, done.status or status.value)
        for spec in self._start(claimed, reserved):
            # In a task of its own: this callback runs inside the executor's bookkeeping.
            self.spawn(self._hand_over(spec))

    # -- cancel, delete, watchdog --------------------------------------------------------------

    async def kill(self, job_id: str) -> bool:
        """Stop a job this instance runs (its final status must already be stored).

        Returns:
            Whether the executor knew the job.
        """
        if job_id not in self.running:
            return False
        try:
            return await self.executor.cancel(job_id)
        except Exception:
            logger.exception("cancelling job %s failed", job_id)
            return False

    def end_session_threadsafe(self, session_id: str) -> None:
        """Tell the executor that a session accepts no more jobs (from a route's thread)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            asyncio.run_coroutine_threadsafe(self.executor.end_session(session_id), loop)

    def kill_threadsafe(self, job_id: str) -> None:
        """Ask the event loop to stop a job (from a route running in a worker thread)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            asyncio.run_coroutine_threadsafe(self.kill(job_id), loop)

    async def _ran_too_long(self, job_id: str, cost: int) -> None:
        message = (
            f"Job {job_id} ran longer than its maximum execution time of {cost} seconds "
            "and was cancelled (RAN_TOO_LONG)."
        )
        changed = await until_stored(
            lambda: self.store.end_running_job(
                job_id, JobState.CANCELLED_RAN_TOO_LONG, ReasonCode.RAN_TOO_LONG, message
            ),
            f"end job {job_id} that ran too long",
            lambda: self._stopping,
        )
        if changed:
            if self.on_job_end is not None:
                self.on_job_end(job_id, JobState.CANCELLED_RAN_TOO_LONG.value)
            self.broker.publish_final(job_id, JobState.CANCELLED_RAN_TOO_LONG.value)
        await self.kill(job_id)

    def _clean_stale_workdirs(self) -> None:
        jobs_dir = self.config.jobs_dir
        if not jobs_dir.is_dir():
            return
        for child in jobs_dir.iterdir():
            if child.name not in self.running:
                shutil.rmtree(child, ignore_errors=True)


__all__ = ["Scheduler"]
