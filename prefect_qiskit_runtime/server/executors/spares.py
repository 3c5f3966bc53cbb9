"""The warm parent's children: forking them, following their warm-ups, keeping spares ready.

**Spares.** The warm parent keeps one spare process per free slot (``spares`` minus the jobs that
hold a slot), and one even when every slot is busy (the next job arrives the moment a job ends,
before a spare for the freed slot could be forked). It forks them only when it has nothing else
to do. A spare isolates itself and waits on its job pipe (:mod:`.child`). ``run`` hands the job's
frame to the oldest spare that is not in the middle of its warm-up (the write end is closed after
it, so the spare reads to EOF); when every spare is warming up, or none is left, a fresh process
is forked for the job, so a job never waits for a warm-up.

**Warm-up policy.** The warm-up costs a spare about 16 ms of CPU and saves a job that uses Aer and
the transpiler 12-15 ms (an estimator job runs in about 6 ms instead of 18-20, a sampler job in
about 10 instead of 21); a trivial job gains nothing from it. A new spare therefore warms up only on
a free core (the jobs running and the spares warming up are fewer than the cores this process may
use: under full load the warm-up would take CPU from jobs) and, with ``warm_up="auto"``, only while
the jobs of late used enough CPU to be of the kind that gains: a moving average of at least
``WARM_UP_MIN_JOB_CPU`` (even warmed up, an Aer job uses about 6 ms, a trivial one under 1 ms). A
stream of trivial jobs keeps its CPU for itself; a hybrid loop of estimator jobs gets warm
processes. ``always`` skips the CPU-time test, ``never`` turns warm-ups off.

Spares that keep dying before they get a job first lose their warm-ups, then the warm parent stops
keeping spares (every job then gets a fresh fork).
"""

from __future__ import annotations

import collections
import contextlib
import os
import selectors
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prefect_qiskit_runtime.server.executors.child import run_child
from prefect_qiskit_runtime.server.executors.ipc import EXIT_SETUP_FAILED, send_frame

__all__ = ["WARM_UP_MIN_JOB_CPU", "Proc", "SparePool"]

#: Spares that die before they get a job, in a row, before warm-ups (then spares) are given up.
_SPARE_FAILURES_LIMIT = 3
#: New spares warm up while the moving average of the jobs' CPU seconds is at least this.
WARM_UP_MIN_JOB_CPU = 0.005
#: Weight of the latest job in that moving average.
_CPU_AVERAGE_WEIGHT = 0.3


@dataclass(eq=False)
class Proc:
    """A process forked by the warm parent: an idle spare until it is given a job."""

    pid: int
    wfd: int | None  # the write end of its job pipe, until the job's frame is written
    sfd: int | None  # the read end of its state pipe: b"w" when a warm-up starts, EOF when done
    job_id: str | None = None
    warm_up: bool = False  # forked to warm up
    warming: bool = False
    warmed: bool = False
    fresh: bool = False  # forked for a job that found no spare ready
    #: Set while it is kept as a dedicated session's worker (:mod:`.session_workers`): its job
    #: pipe stays open for the session's next jobs.
    session_id: str | None = None
    session_dir: str | None = None
    idle_since: float | None = None  # when its last job ended, while it waits for the next


class SparePool:
    """Every child of the warm parent not reaped yet, and the idle spares among them.

    Owned by the warm parent's loop (:class:`.warm.WarmParent`), single-threaded since it forks.

    Args:
        ctrl: The control socket to the executor (``spare_ready`` and ``spare_gone`` go there).
        selector: The loop's selector; the pool registers its children's pipes with it.
        inherited: What a child closes first, in this order (the selector, the parent's sockets).
    """

    def __init__(
        self,
        ctrl: socket.socket,
        selector: selectors.BaseSelector,
        inherited: Sequence[Any],
    ) -> None:
        self.ctrl = ctrl
        self.selector = selector
        self.inherited = inherited
        self.procs: dict[int, Proc] = {}  # pid -> every child not reaped yet
        self.spares: collections.deque[Proc] = collections.deque()  # idle, oldest first
        self.busy: set[str] = set()  # jobs that hold a slot
        self.slots = 0  # spares wanted when no job holds a slot
        self.warm_up = "auto"
        # Starts as if the jobs were heavy: the first spares warm up while the service is idle.
        self.job_cpu = WARM_UP_MIN_JOB_CPU
        self.spare_failures = 0
        self.outbox: dict[int, tuple[Proc, bytearray]] = {}  # pipe fd -> job frame left to write
        #: The address space after preloading; a job's memory limit comes on top of it.
        self.baseline_kb = 0
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1

    # ---- policy --------------------------------------------------------------------------------

    def configure(self, count: int, warm_up: str) -> None:
        """Keep spares for ``count`` slots, warming them up per ``warm_up``; retire the extra."""
        self.slots = max(0, count)
        self.warm_up = warm_up
        while len(self.spares) > self.slots:
            self._close_pipes(self.spares.pop())  # EOF without a job: the spare exits

    def release(self, job_id: str, cpu_seconds: Any) -> None:
        """The executor has finished a job: its slot is free, its CPU time joins the average."""
        self.busy.discard(job_id)
        if isinstance(cpu_seconds, int | float):
            self.job_cpu += _CPU_AVERAGE_WEIGHT * (float(cpu_seconds) - self.job_cpu)

    def wants_spare(self) -> bool:
        """Whether another spare should be forked (once nothing else waits)."""
        free = self.slots - len(self.busy)
        # One spare per free slot, and one even when every slot is busy: the next job comes
        # the moment a job ends, before a spare for the freed slot could be forked.
        return len(self.spares) < max(free, min(self.slots, 1))

    def add_spare(self) -> bool:
        """Fork one spare (warming up if that pays off now); False if the fork failed."""
        spare = self._fork(warm_up=self._should_warm_up())
        if spare is None:
            return False
        self.spares.append(spare)
        return True

    def _should_warm_up(self) -> bool:
        if self.warm_up == "never":
            return False
        if self.warm_up == "auto" and self.job_cpu < WARM_UP_MIN_JOB_CPU:
            return False
        # Only on a core that is free: not taken by a job, nor by another spare's warm-up.
        warming = sum(1 for proc in self.spares if proc.warm_up and proc.sfd is not None)
        return len(self.busy) + warming < self.cores

    # ---- processes -----------------------------------------------------------------------------

    def _fork(self, warm_up: bool) -> Proc | None:
        try:
            rfd, wfd = os.pipe()
        except OSError:
            return None
        try:
            state_r, state_w = os.pipe()
        except OSError:
            os.close(rfd)
            os.close(wfd)
            return None
        try:
            pid = os.fork()
        except OSError:
            for fd in (rfd, wfd, state_r, state_w):
                os.close(fd)
            return None
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            code = EXIT_SETUP_FAILED
            try:
                code = run_child(
                    rfd, state_w, warm_up, inherited=self.inherited, baseline_kb=self.baseline_kb
                )
            finally:
                os._exit(code)
        os.close(rfd)
        os.close(state_w)
        os.set_blocking(wfd, False)
        os.set_blocking(state_r, False)
        proc = Proc(pid, wfd, state_r, warm_up=warm_up)
        self.procs[pid] = proc
        self.selector.register(state_r, selectors.EVENT_READ, proc)
        return proc

    def is_warming(self, proc: Proc) -> bool:
        """Whether a spare is in the middle of its warm-up (from its state pipe, never blocking)."""
        while proc.sfd is not None:
            try:
                data = os.read(proc.sfd, 64)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:  # warmed up, or never going to: it waits for a job
                self._close_state(proc)
                proc.warming = False
                if proc.job_id is None and proc.pid in self.procs:
                    send_frame(
                        self.ctrl, {"t": "spare_ready", "pid": proc.pid, "warmed": proc.warmed}
                    )
            else:
                proc.warming = proc.warmed = True
        return proc.warming

    def _close_state(self, proc: Proc) -> None:
        if proc.sfd is not None:
            self.selector.unregister(proc.sfd)
            os.close(proc.sfd)
            proc.sfd = None

    def take_spare(self) -> Proc | None:
        """The oldest spare not warming up, or a fresh fork; ``None`` if forking failed."""
        for proc in self.spares:
            if not self.is_warming(proc):
                self.spares.remove(proc)
                return proc
        # Only spares that are warming up (they stay for later jobs), or none: a fresh process.
        fresh = self._fork(warm_up=False)
        if fresh is not None:
            fresh.fresh = True
        return fresh

    def assign(self, proc: Proc, job_id: str, payload: bytes) -> bool:
        """Write a job's frame to ``proc``'s pipe (the rest later if the pipe is full).

        Returns:
            False if the process died before it could take the job.
        """
        assert proc.wfd is not None
        try:
            written = os.write(proc.wfd, payload)
        except BlockingIOError:
            written = 0  # the pipe is full: the rest goes out as the process reads it
        except OSError:
            # It died before it could take the job; it is reaped as an idle spare.
            self._close_pipes(proc)
            return False
        proc.job_id = job_id
        self.busy.add(job_id)
        self.spare_failures = 0
        self._close_state(proc)
        if written < len(payload):
            self.outbox[proc.wfd] = (proc, bytearray(payload[written:]))
            self.selector.register(proc.wfd, selectors.EVENT_WRITE, "pipe")
        else:
            self._written(proc)
        return True

    def write_pipe(self, fd: int) -> None:
        """Write more of the job frame waiting for pipe ``fd`` (it became writable)."""
        proc, rest = self.outbox[fd]
        try:
            written = os.write(fd, rest)
        except BlockingIOError:
            return
        except OSError:
            written = len(rest)  # the process is gone: its exit tells the executor
        del rest[:written]
        if not rest:
            self.outbox.pop(fd)
            self.selector.unregister(fd)
            self._written(proc)

    def _written(self, proc: Proc) -> None:
        """A job's frame is written: close the pipe (EOF), unless a session keeps the process."""
        if proc.session_id is None:
            self._close_pipes(proc)

    def close_pipes(self, proc: Proc) -> None:
        """Close a process's pipes: an idle one reads EOF and exits."""
        self._close_pipes(proc)

    def _close_pipes(self, proc: Proc) -> None:
        self._close_state(proc)
        if proc.wfd is None:
            return
        if self.outbox.pop(proc.wfd, None) is not None:
            self.selector.unregister(proc.wfd)
        os.close(proc.wfd)
        proc.wfd = None

    def forget(self, pid: int) -> Proc | None:
        """Drop a reaped child: its pipes and the slot of its job; ``None`` if it was not ours."""
        proc = self.procs.pop(pid, None)
        if proc is None:
            return None
        self._close_pipes(proc)
        if proc.job_id is not None:
            self.busy.discard(proc.job_id)
        return proc

    def spare_died(self, proc: Proc, status: int) -> None:
        """A child without a job was reaped: retired, or dead (then maybe give up warm-ups)."""
        with contextlib.suppress(ValueError):
            self.spares.remove(proc)
        send_frame(self.ctrl, {"t": "spare_gone", "pid": proc.pid})
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            return  # retired: its pipe was closed without a job
        # A spare that keeps dying would be forked again and again: first stop warming spares up
        # (the likeliest cause), then stop keeping spares (jobs then get a process of their own).
        self.spare_failures += 1
        if self.spare_failures >= _SPARE_FAILURES_LIMIT:
            self.spare_failures = 0
            if self.warm_up != "never":
                self.warm_up = "never"
            else:
                self.slots = 0
            print(
                f"warm parent: spares keep dying (status {status}); "
                f"warm-up {self.warm_up}, spares {self.slots}",
                file=sys.stderr,
                flush=True,
            )
