"""``jobs watch JOB_ID``: follow one job live, then print its result and exit with its outcome.

The view (``rich.live.Live``) shows the job's status, the time it has run, how many interim results
it has published, the latest one, and a progress bar when the program reports progress. Every
interim result is also printed on its own line as it arrives (above the view on a terminal), so
the output of a watch holds all of them, in order. The exit code is 0 when the job COMPLETED and 1
otherwise; ``--json`` prints one JSON document a line instead (``{"seq", "interim"}`` per interim
result, then the outcome as ``jobs result --json`` prints it).

Interim results arrive over the job's websocket stream
(:class:`~prefect_qiskit_runtime.client.stream.ResultStream`, resumed after a dropped connection),
which replays those published before the watch began, so a job that has already ended is shown the
same way. The status is followed by long-polling the job.

**Progress.** An interim result reports progress when it is a JSON object with either

- ``"progress"``: the fraction done, a number from 0 to 1; or
- ``"iteration"``: the step just finished, an integer, with the number of steps in
  ``"iterations"`` or ``"maxiter"`` of the same message or else of the job's inputs (or of the
  defaults of the program's inputs).

This is what the built-in programs publish: ``hello-world`` ``{"iteration": i, ...}`` counting from
0 for ``iterations`` circuits, ``vqe`` and ``qaoa`` ``{"iteration": n, "energy", ...}`` counting
cost evaluations from 1 up to ``maxiter``. A program whose first step is 0 is counted from 0, so
``iteration`` 0 is one step done. Without a number of steps the view counts the steps.
"""

from __future__ import annotations

import argparse
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from prefect_qiskit_runtime.cli.context import Context
from prefect_qiskit_runtime.cli.jobs import report_outcome
from prefect_qiskit_runtime.cli.output import WireDecoder, to_json

if TYPE_CHECKING:
    from rich.console import RenderableType

    from prefect_qiskit_runtime.client import RuntimeJob, RuntimeService

#: Seconds each long-poll of the job's status may last (its end is seen at once either way).
STATUS_POLL_SECONDS = 5.0
#: Keys of an interim result or of the job's inputs that hold the number of steps.
TOTAL_KEYS = ("iterations", "maxiter")
_STATUS_STYLES = {"COMPLETED": "green", "RUNNING": "cyan", "QUEUED": "yellow"}


def add_parser(jobs_sub: Any, client: argparse.ArgumentParser) -> None:
    """Register ``jobs watch`` on the subparsers of ``jobs``.

    Args:
        jobs_sub: The subparsers of ``jobs``.
        client: The parent parser of the client options.
    """
    watch = jobs_sub.add_parser(
        "watch",
        parents=[client],
        help="follow a job live (status, elapsed time, interim results, progress); "
        "exits 0 if it completed, 1 otherwise",
    )
    watch.add_argument("job_id")
    watch.set_defaults(handler=_watch)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _fraction(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return None


class ProgressTracker:
    """Reads progress from interim results, by the convention of this module's docstring.

    Args:
        totals: Where a message without a number of steps finds one (the job's inputs).

    Example:
        >>> tracker = ProgressTracker({"iterations": 4})
        >>> tracker.update({"iteration": 0}), tracker.update({"iteration": 1})
        ((1, 4), (2, 4))
        >>> tracker.update({"progress": 0.5})
        (0.5, 1.0)
    """

    def __init__(self, totals: Mapping[str, Any]) -> None:
        self._total = next((n for k in TOTAL_KEYS if (n := _count(totals.get(k)))), None)
        self._from_zero: bool | None = None

    def update(self, message: Any) -> tuple[float, float | None] | None:
        """The progress ``message`` reports.

        Args:
            message: A decoded interim result.

        Returns:
            ``(done, total)`` (``total`` 1.0 for a fraction, ``None`` when unknown), or ``None``
            when the message reports no progress.
        """
        if not isinstance(message, Mapping):
            return None
        fraction = _fraction(message.get("progress"))
        if fraction is not None:
            return fraction, 1.0
        step = _count(message.get("iteration"))
        if step is None:
            return None
        if self._from_zero is None:
            self._from_zero = step == 0
        done = step + 1 if self._from_zero else step
        total = next((n for k in TOTAL_KEYS if (n := _count(message.get(k)))), self._total)
        if total is None or total <= 0:
            return done, None
        return min(done, total), total


def _totals(service: RuntimeService, job: RuntimeJob) -> dict[str, Any]:
    """The job's ``iterations``/``maxiter``, from its inputs or its program's input defaults."""
    from prefect_qiskit_runtime.core.exceptions import QiskitRuntimeError

    found = {k: job.inputs[k] for k in TOTAL_KEYS if k in job.inputs}
    if found or not job.program_id:
        return found
    try:
        schema = service.program(job.program_id).parameters().metadata
    except QiskitRuntimeError:
        return {}  # the program may be gone or private; the view then counts steps
    properties = schema.get("properties") or {}
    return {
        k: properties[k]["default"]
        for k in TOTAL_KEYS
        if isinstance(properties.get(k), dict) and "default" in properties[k]
    }


def duration(seconds: float | None) -> str:
    """``12.3 s`` under a minute, ``1:02:03`` from then on, ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


@dataclass
class WatchState:
    """What the view shows of one job; updated by the command, read by the view's refreshes."""

    job_id: str
    program_id: str
    backend: str
    status: str = "QUEUED"
    created: datetime | None = None
    started: datetime | None = None
    ended: datetime | None = None
    count: int = 0
    latest: Any = None
    progress: tuple[float, float | None] | None = None

    def absorb(self, obj: Mapping[str, Any]) -> None:
        """Take the status and times of a job object."""
        from prefect_qiskit_runtime.client.wire import parse_time

        self.status = str(obj.get("status") or self.status)
        self.created = parse_time(obj.get("created")) or self.created
        self.started = parse_time(obj.get("started")) or self.started
        self.ended = parse_time(obj.get("ended")) or self.ended

    def add(self, message: Any, tracker: ProgressTracker) -> None:
        """Count an interim result (a job that publishes runs, whatever the last poll said)."""
        self.count += 1
        self.latest = message
        if self.status == "QUEUED":
            self.status = "RUNNING"
        self.progress = tracker.update(message) or self.progress

    def elapsed(self) -> float | None:
        """Seconds the job has run (or had run when it ended); ``None`` before it starts."""
        start = self.started or (self.created if self.status != "QUEUED" else None)
        if start is None:
            return None
        end = self.ended or datetime.now(timezone.utc)
        return max(0.0, (end - start).total_seconds())

    def render(self) -> RenderableType:
        """The view: a grid of the job's status, elapsed time, interim results and progress."""
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        grid.add_row("Job", Text(f"{self.job_id}  ({self.program_id} on {self.backend})"))
        grid.add_row("Status", Text(self.status, style=_STATUS_STYLES.get(self.status, "red")))
        grid.add_row("Elapsed", Text(duration(self.elapsed())))
        grid.add_row("Interim results", Text(str(self.count)))
        if self.progress is not None:
            done, total = self.progress
            if total is None:
                grid.add_row("Progress", Text(f"step {done:g}"))
            else:
                bar = Table.grid(padding=(0, 1))
                label = f"{done / total:.0%}" if total == 1.0 else f"{done:g}/{total:g}"
                bar.add_row(ProgressBar(total=total, completed=done, width=40), Text(label))
                grid.add_row("Progress", bar)
        if self.latest is not None:
            latest = to_json(self.latest, compact=True)
            grid.add_row("Latest", Text(latest if len(latest) <= 120 else latest[:117] + "..."))
        return grid


def _follow(job: RuntimeJob, stream: Any, events: queue.Queue[tuple[str, Any]]) -> None:
    """Long-poll ``job`` until it ends, then let its stream finish; report to ``events``."""
    from prefect_qiskit_runtime.client.stream import STREAM_DRAIN_SECONDS
    from prefect_qiskit_runtime.client.wire import is_final_object

    try:
        while True:
            obj = job.refresh(wait=STATUS_POLL_SECONDS)
            events.put(("status", obj))
            if is_final_object(obj):
                break
        # The service closes the stream once the job has ended and every message went out.
        stream.join(STREAM_DRAIN_SECONDS)
        events.put(("end", None))
    except Exception as exc:  # handed to the command's thread, which reports it
        events.put(("error", exc))


def _watch(ctx: Context) -> int:
    from prefect_qiskit_runtime.client.stream import ResultStream

    service = ctx.service
    job = service.job(ctx.args.job_id)
    state = WatchState(job.job_id(), job.program_id, job.backend())
    state.absorb(job.refresh())
    tracker = ProgressTracker(_totals(service, job))
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    stream = ResultStream(
        service.transport,
        job.job_id(),
        lambda _job_id, message: events.put(("interim", message)),
        WireDecoder,
    ).start()
    threading.Thread(
        target=_follow, args=(job, stream, events), name="watch-status", daemon=True
    ).start()
    try:
        if ctx.out.json:
            _consume(ctx, state, tracker, events, stream)
        else:
            from rich.live import Live

            with Live(
                get_renderable=state.render,
                console=ctx.out.console,
                transient=True,
                refresh_per_second=4,
            ):
                _consume(ctx, state, tracker, events, stream)
    except KeyboardInterrupt:
        ctx.out.error(f"stopped watching; job {state.job_id} goes on")
        raise
    finally:
        stream.cancel()
    if not ctx.out.json:
        ctx.out.line(
            f"{state.job_id} {state.status} after {duration(state.elapsed())} "
            f"({state.count} interim result{'s' if state.count != 1 else ''})"
        )
    return report_outcome(ctx, job, compact=ctx.out.json)


def _consume(
    ctx: Context,
    state: WatchState,
    tracker: ProgressTracker,
    events: queue.Queue[tuple[str, Any]],
    stream: Any,
) -> None:
    """Print interim results and take status changes until the job has ended."""
    while True:
        kind, value = events.get()
        if kind == "interim":
            state.add(value, tracker)
            _print_interim(ctx, state.count, value)
        elif kind == "status":
            state.absorb(value)
        elif kind == "error":
            raise value
        else:
            break
    if not stream.completed:
        # The stream gave up (its warning says why): print what it missed from the stored copy.
        job = ctx.service.job(state.job_id)
        for message in job.interim_results(decoder=WireDecoder)[stream.last_seq :]:
            state.add(message, tracker)
            _print_interim(ctx, state.count, message)


def _print_interim(ctx: Context, seq: int, message: Any) -> None:
    if ctx.out.json:
        ctx.out.data({"seq": seq, "interim": message}, compact=True)
        return
    from rich.text import Text

    text = message if isinstance(message, str) else to_json(message, compact=True)
    ctx.out.console.print(Text(f"[{seq}] {text}"), soft_wrap=True)
    ctx.out.console.file.flush()


__all__ = ["ProgressTracker", "WatchState", "add_parser", "duration"]
