#!/usr/bin/env python
"""Throughput of 1, then 2 service replicas sharing one PostgreSQL database.

Usage::

    python benchmarks/replicas.py [--jobs N] [--clients C] [--workers W] [--postgres-url URL]
                                  [--json PATH]

or ``python benchmarks/run.py --replicas N`` (the same measurement, after the other ones). The
database is ``--postgres-url``, else ``$PQR_BENCH_POSTGRES_URL``, else ``$PQR_TEST_POSTGRES_URL``: a
``postgresql+psycopg://`` URL whose role may create schemas. Without one the section prints how to
enable it and is skipped. Each configuration gets a fresh schema (dropped afterwards) and replicas
started as a user would (``server start --database-url URL --workers W`` in homes of their own, a
``users add --database-url`` token each for the same user). The noop program is uploaded once;
each replica runs one untimed warm-up job; then C client threads run N noop jobs between them,
each submitted and awaited in turn, job ``x`` sent to replica ``x mod replicas`` (round robin, as
a load balancer would: :func:`scaleout.closed_loop`). Figures per configuration:

- ``jobs_per_s``, ``submit_p50_ms``/``submit_p99_ms`` (the ``POST /jobs``),
  ``round_trip_p50_ms``/``round_trip_p99_ms`` (submission to result, under that load);
- ``jobs_run_per_replica`` (from the jobs table: which instance claimed each job),
  ``ran_elsewhere`` (jobs run by another replica than the one they were submitted to, whose end
  the waiting replica learns from the store, not from its in-process broker) and
  ``ran_elsewhere_round_trip_p50_ms`` (their median round trip);
- ``lost``: submitted jobs that did not end ``COMPLETED`` with their own input as result (read back
  afterwards, untimed); ``duplicates``: rows of the jobs table beyond one per submitted job, plus
  job ids handed out twice; ``statuses``: the final states of the timed jobs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402
import scaleout  # noqa: E402

#: Where the database comes from when ``--postgres-url`` is not given, in order.
POSTGRES_ENVS = ("PQR_BENCH_POSTGRES_URL", "PQR_TEST_POSTGRES_URL")
HOW_TO_ENABLE = (
    "replicas: skipped (no PostgreSQL): pass --postgres-url or set PQR_BENCH_POSTGRES_URL to a "
    "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE whose role may create schemas"
)
REPLICAS = (1, 2)


def postgres_url(given: str | None = None) -> str | None:
    """``given``, else the first of :data:`POSTGRES_ENVS` that is set, else ``None``."""
    return given or next((os.environ[e] for e in POSTGRES_ENVS if os.environ.get(e)), None)


@contextlib.contextmanager
def fresh_schema(base_url: str) -> Iterator[str]:
    """Create an empty schema in ``base_url``'s database; yield a URL that uses only it; drop it.

    Raises:
        RuntimeError: If the database cannot be used (one line, without the password).
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    schema = f"bench_{secrets.token_hex(6)}"
    shown = make_url(base_url).render_as_string(hide_password=True)
    try:
        admin = create_engine(base_url, poolclass=NullPool)
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except (SQLAlchemyError, ImportError) as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise RuntimeError(f"cannot use the database {shown}: {detail}") from None
    try:
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '10s'"))
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


def job_rows(url: str) -> dict[str, tuple[str, str | None]]:
    """``{job id: (status, claiming instance)}`` of every row of the jobs table at ``url``."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, status, instance_id FROM jobs")).all()
    finally:
        engine.dispose()
    return {row[0]: (row[1], row[2]) for row in rows}


def measure_replicas(
    scratch: Path, url: str, replicas: int, jobs: int, clients: int, workers: int
) -> dict[str, Any]:
    """Start ``replicas`` services on the database at ``url`` and run the closed loop on them.

    Returns:
        The figures of one configuration (see the module's docstring).
    """
    import requests

    services: list[bench.Service] = []
    out: dict[str, Any] = {"replicas": replicas}
    try:
        began = time.perf_counter()
        for i in range(replicas):
            services.append(
                bench.Service.start(
                    scratch / f"replica-{i}", "--workers", str(workers), "--database-url", url
                )
            )
        out["service_start_s"] = time.perf_counter() - began
        instances = [
            requests.get(s.url + "/health", timeout=30).json()["instance_id"] for s in services
        ]
        program = services[0].upload("noop")
        warm = [
            s.client().run(program, {"backend_name": bench.BACKEND}, {"x": -1}).job_id()
            for s in services
        ]
        for service, job_id in zip(services, warm, strict=False):
            service.client().job(job_id).result(timeout=300)
        load = scaleout.closed_loop(services, program, clients, jobs)
        out.update(load.figures())
        # Checked after timing: every job read back (through a client of each replica in turn).
        errors: list[str] = []
        readers = [s.client() for s in services] * max(1, 4 // replicas)
        delivered = bench.count_delivered(readers, load.submitted, errors)
        x_of = {job.job_id(): x for x, job in load.submitted.items()}
        rows = job_rows(url)
        timed = {job_id: rows[job_id] for job_id in x_of if job_id in rows}
        ran = Counter(instance for _status, instance in timed.values())
        out["jobs_run_per_replica"] = [ran.get(instance, 0) for instance in instances]
        out["ran_elsewhere"] = sum(
            instance != instances[load.target[x_of[job_id]]]
            for job_id, (_status, instance) in timed.items()
        )
        elsewhere = [
            ms
            for x, ms in zip(load.inputs, load.round_trip_ms, strict=True)
            if timed.get(load.submitted[x].job_id(), ("", None))[1] != instances[load.target[x]]
        ]
        out["ran_elsewhere_round_trip_p50_ms"] = bench.median(elsewhere) if elsewhere else None
        out["lost"] = jobs - delivered
        out["duplicates"] = (len(rows) - len(warm) - len(x_of)) + (len(load.submitted) - len(x_of))
        out["statuses"] = dict(Counter(status for status, _instance in timed.values()))
        if errors:
            out["first_error"] = errors[0]
    finally:
        for service in services:
            service.stop()
    return out


def measure(
    scratch: Path, jobs: int, url: str | None, clients: int = 8, workers: int = 2
) -> dict[str, Any]:
    """1, then 2 replicas, each on a fresh schema of the database at ``url``.

    Args:
        scratch: Where the replicas' homes go.
        jobs: Noop jobs per configuration.
        url: The PostgreSQL database; ``None`` skips the measurement (``skipped`` says how to
            enable it).
        clients: Client threads.
        workers: ``--workers`` of each replica.

    Returns:
        ``{"jobs", "clients", "workers", "runs": [one dict per configuration]}``, or
        ``{"skipped": ...}``.
    """
    if not url:
        return {"skipped": HOW_TO_ENABLE}
    report: dict[str, Any] = {"jobs": jobs, "clients": clients, "workers": workers, "runs": []}
    # Other work on the machine skews every figure; the load average says how much there was.
    report["load_average_1m"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    for replicas in REPLICAS:
        home = scratch / f"{replicas}-replicas"
        with fresh_schema(url) as schema_url:
            report["runs"].append(
                measure_replicas(home, schema_url, replicas, jobs, clients, workers)
            )
    return report


def problems(report: dict[str, Any]) -> list[str]:
    """A line per configuration that lost or duplicated jobs (empty when every check passed)."""
    return [
        f"replicas: {run['replicas']} replica(s) lost {run['lost']} and duplicated "
        f"{run['duplicates']} of {report['jobs']} jobs ({run.get('first_error', '')})"
        for run in report.get("runs", [])
        if run["lost"] or run["duplicates"]
    ]


ROWS = (
    "service_start_s",
    "jobs_per_s",
    "submit_p50_ms",
    "submit_p99_ms",
    "round_trip_p50_ms",
    "round_trip_p99_ms",
    "jobs_run_per_replica",
    "ran_elsewhere",
    "ran_elsewhere_round_trip_p50_ms",
    "lost",
    "duplicates",
)


def render(console: Any, report: dict[str, Any]) -> None:
    """Print the configurations side by side, or the one line saying why there are none."""
    from rich.table import Table

    if "skipped" in report:
        console.print(report["skipped"], soft_wrap=True)
        return
    runs = report["runs"]
    table = Table(
        title=f"replicas on one PostgreSQL database: {report['jobs']} noop jobs, "
        f"{report['clients']} clients round robin, --workers {report['workers']} each"
    )
    table.add_column("figure")
    for run in runs:
        table.add_column(
            f"{run['replicas']} replica{'s' if run['replicas'] > 1 else ''}", justify="right"
        )
    for figure in ROWS:
        cells = []
        for run in runs:
            value = run.get(figure)
            cells.append(
                " / ".join(map(str, value)) if isinstance(value, list) else scaleout._fmt(value)
            )
        table.add_row(figure, *cells)
    console.print(table)
    console.print(f"load average {report['load_average_1m']:.2f} at the start", soft_wrap=True)
    for line in problems(report):
        console.print(f"[red]- {line}[/red]")


def main(argv: list[str] | None = None) -> int:
    """Measure 1 and 2 replicas, print the table, write ``--json``; exit 1 if a check failed."""
    from rich.console import Console

    parser = argparse.ArgumentParser(description="1 and 2 service replicas on one PostgreSQL.")
    parser.add_argument("--jobs", type=int, default=400, help="noop jobs per configuration")
    parser.add_argument("--clients", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="--workers of each replica")
    parser.add_argument(
        "--postgres-url",
        help="PostgreSQL database (default $PQR_BENCH_POSTGRES_URL, else $PQR_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    console = Console(highlight=False)
    scratch = Path(tempfile.mkdtemp(prefix="pqr-bench-replicas-"))
    try:
        report = measure(
            scratch, args.jobs, postgres_url(args.postgres_url), args.clients, args.workers
        )
    except Exception as exc:
        console.print(
            f"replicas: failed: {type(exc).__name__}: {exc} (logs in {scratch})", soft_wrap=True
        )
        return 1
    shutil.rmtree(scratch, ignore_errors=True)
    render(console, report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if problems(report) else 0


if __name__ == "__main__":
    sys.exit(main())
