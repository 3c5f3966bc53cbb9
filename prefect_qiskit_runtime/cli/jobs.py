"""``jobs list|run|show|cancel|delete|result`` and ``logs``: jobs through the client.

``jobs run`` prints the new job's id (alone on its line, for ``JOB=$(... jobs run ...)``); with
``--wait`` it then waits and prints the result like ``jobs result``, which exits 1 with the job's
error for a job that FAILED, ran too long or was CANCELLED. Results are printed as the service sent
them (tagged values as their JSON), see :class:`~prefect_qiskit_runtime.cli.output.WireDecoder`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect_qiskit_runtime.cli import admin
from prefect_qiskit_runtime.cli.context import FAILED, OK, Context, UsageError, positive_int
from prefect_qiskit_runtime.cli.output import WireDecoder

if TYPE_CHECKING:
    from prefect_qiskit_runtime.client import RuntimeJob


def add_parser(sub: Any, client: argparse.ArgumentParser) -> Any:
    """Register ``jobs ...`` on the top-level subparsers ``sub``.

    Args:
        sub: The top-level subparsers.
        client: The parent parser of the client options.

    Returns:
        The subparsers of ``jobs``, for commands defined elsewhere (``jobs watch``).
    """
    jobs = sub.add_parser("jobs", help="run and manage jobs")
    jobs_sub = jobs.add_subparsers(dest="action", required=True)

    listing = jobs_sub.add_parser(
        "list",
        parents=[client],
        help="your newest jobs (with --home: every user's, from the store)",
    )
    listing.add_argument("--limit", type=positive_int, default=20, help="at most this many (20)")
    pending = listing.add_mutually_exclusive_group()
    pending.add_argument("--pending", action="store_true", help="only queued and running jobs")
    pending.add_argument("--finished", action="store_true", help="only final jobs")
    listing.add_argument("--program", help="only jobs of this program")
    admin.store_options(listing)
    listing.set_defaults(handler=_list)

    run = jobs_sub.add_parser("run", parents=[client], help="run a program; prints the job id")
    run.add_argument("program", help="the program's id")
    run.add_argument("--backend", default="aer_simulator", help="backend name (aer_simulator)")
    run.add_argument(
        "--inputs",
        metavar="JSON",
        help="the inputs: a JSON object, @FILE holding one, or @- (stdin)",
    )
    run.add_argument("--log-level", help="log level of the job (DEBUG ... CRITICAL)")
    run.add_argument(
        "--max-execution-time", type=positive_int, metavar="SECONDS", help="this job's time limit"
    )
    run.add_argument("--wait", action="store_true", help="wait for the job and print its result")
    run.add_argument("--timeout", type=float, metavar="SECONDS", help="with --wait: wait at most")
    run.set_defaults(handler=_run)

    for name, handler, text in (
        ("show", _show, "a job's status, times and inputs"),
        ("cancel", _cancel, "cancel a queued or running job"),
        ("delete", _delete, "delete a job (stopping it first if it runs)"),
        ("result", _result, "wait for a job and print its result (exit 1 unless COMPLETED)"),
    ):
        cmd = jobs_sub.add_parser(name, parents=[client], help=text)
        cmd.add_argument("job_id")
        if name == "result":
            cmd.add_argument("--timeout", type=float, metavar="SECONDS", help="wait at most")
        cmd.set_defaults(handler=handler)
    return jobs_sub


def add_logs_parser(sub: Any, client: argparse.ArgumentParser) -> None:
    """Register ``logs JOB_ID`` on the top-level subparsers ``sub``."""
    logs = sub.add_parser("logs", parents=[client], help="print a job's logs")
    logs.add_argument("job_id")
    admin.store_options(logs)
    logs.set_defaults(handler=_logs)


def parse_inputs(text: str | None) -> dict[str, Any]:
    """The program inputs of ``--inputs``: JSON text, ``@FILE`` or ``@-`` (stdin).

    Args:
        text: The option's value, or ``None`` (no inputs).

    Returns:
        The inputs.

    Raises:
        UsageError: If the file cannot be read or the text is not a JSON object.
    """
    if text is None:
        return {}
    if text.startswith("@"):
        name = text[1:]
        try:
            text = sys.stdin.read() if name == "-" else Path(name).expanduser().read_text("utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read the inputs file {name}: {exc.strerror}") from None
    try:
        inputs = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--inputs is not JSON: {exc}") from None
    if not isinstance(inputs, dict):
        raise UsageError("--inputs must be a JSON object of input names and values")
    return inputs


def report_outcome(
    ctx: Context, job: RuntimeJob, timeout: float | None = None, *, compact: bool = False
) -> int:
    """Wait for ``job`` and print its result, or its error on stderr.

    Args:
        ctx: The command.
        job: The job.
        timeout: Seconds to wait at most (``None``: as long as it takes).
        compact: With ``--json``, one line instead of an indented document.

    Returns:
        0 when the job COMPLETED, 1 otherwise.

    Raises:
        RuntimeJobTimeoutError: If ``timeout`` passed first.
    """
    from prefect_qiskit_runtime.core.exceptions import RuntimeJobFailureError

    out = ctx.out
    try:
        result = job.result(timeout=timeout, decoder=WireDecoder)
    except RuntimeJobFailureError as exc:
        if out.json:
            status = job.state.value if job.state else None
            failure = {"id": job.job_id(), "status": status, "reason_code": exc.error_code}
            out.data({**failure, "error": exc.message}, compact=compact)
        else:
            out.error(exc.message)
        return FAILED
    if out.json:
        out.data({"id": job.job_id(), "status": "COMPLETED", "result": result}, compact=compact)
    else:
        out.value(result)
    return OK


def _list(ctx: Context) -> int:
    args = ctx.args
    if admin.uses_store(args):
        return admin.store_jobs(ctx)
    pending = True if args.pending else False if args.finished else None
    jobs = ctx.service.jobs(limit=args.limit, pending=pending, program_id=args.program)
    rows = [
        {
            "id": job.job_id(),
            "program_id": job.program_id,
            "backend": job.backend(),
            "status": job.state.value if job.state else None,
            "created": job.creation_date,
        }
        for job in jobs
    ]
    if ctx.out.json:
        ctx.out.data(rows)
    else:
        columns = ("ID", "Program", "Backend", "Status", "Created")
        ctx.out.table(columns, [list(r.values()) for r in rows], no_wrap=("ID", "Status"))
    return OK


def _run(ctx: Context) -> int:
    args = ctx.args
    inputs = parse_inputs(args.inputs)
    options: dict[str, Any] = {"backend_name": args.backend}
    if args.log_level:
        options["log_level"] = args.log_level
    if args.max_execution_time:
        options["max_execution_time"] = args.max_execution_time
    job = ctx.service.run(args.program, options, inputs)
    if not args.wait:
        if ctx.out.json:
            ctx.out.data({"id": job.job_id(), "program_id": args.program, "backend": args.backend})
        else:
            ctx.out.line(job.job_id())
        return OK
    if not ctx.out.json:
        ctx.out.line(job.job_id())
    return report_outcome(ctx, job, args.timeout)


def _show(ctx: Context) -> int:
    from prefect_qiskit_runtime.client.wire import job_timings

    obj = ctx.service.job(ctx.args.job_id).refresh()
    if ctx.out.json:
        ctx.out.data(obj)
        return OK
    times = job_timings(obj)
    program = obj.get("program")
    ctx.out.fields(
        [
            ("ID", obj.get("id")),
            ("Program", program.get("id") if isinstance(program, dict) else program),
            ("Backend", obj.get("backend")),
            ("Status", obj.get("status")),
            ("Reason", obj.get("reason_code")),
            ("Retryable", obj.get("retryable") if obj.get("reason_code") else None),
            ("Created", times["created"]),
            ("Started", times["started"]),
            ("Ended", times["finished"]),
            ("Queued (s)", _seconds(times["queue_seconds"])),
            ("Ran (s)", _seconds(times["run_seconds"])),
            ("Interim results", obj.get("message_count")),
            ("Log level", obj.get("log_level")),
            ("Inputs", obj.get("params")),
        ]
    )
    return OK


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def _cancel(ctx: Context) -> int:
    job = ctx.service.job(ctx.args.job_id)
    job.cancel()
    ctx.out.done("cancelled", job.job_id())
    return OK


def _delete(ctx: Context) -> int:
    ctx.service.delete_job(ctx.args.job_id)
    ctx.out.done("deleted", ctx.args.job_id)
    return OK


def _result(ctx: Context) -> int:
    return report_outcome(ctx, ctx.service.job(ctx.args.job_id), ctx.args.timeout)


def _logs(ctx: Context) -> int:
    if admin.uses_store(ctx.args):
        return admin.store_logs(ctx)
    text = ctx.service.job(ctx.args.job_id).logs()
    if ctx.out.json:
        ctx.out.data({"id": ctx.args.job_id, "logs": text})
    else:
        sys.stdout.write(text)
    return OK


__all__ = ["add_logs_parser", "add_parser", "parse_inputs", "report_outcome"]
