#!/usr/bin/env python
"""The local executor against the Ray executor: N short jobs, side by side.

Usage::

    python benchmarks/executors.py [--jobs N] [--workers W] [--latency-jobs K] [--json PATH]

or ``python benchmarks/run.py --executors N`` (the same measurement, after the other ones). Each
executor gets a service of its own in a temporary home, ``--workers W`` (default 2) jobs at a
time; the Ray one runs on a one-node cluster of W CPUs started for the run
(:func:`prefect_qiskit_runtime.server.executors.raycluster.local_cluster`). Figures:

- ``service_start_s``: ``server start`` until it accepts jobs (Ray: connecting included);
- ``first_job_s``: the first noop job, submission to result;
- ``latency_p50_ms``: the median of K noop jobs one after the other;
- ``jobs_per_s``: N noop jobs from 2·W concurrent clients, so that every slot stays busy
  (:func:`scaleout.closed_loop`, as for the replicas), with ``round_trip_p50_ms`` and
  ``round_trip_p99_ms``, ``submit_p50_ms`` and ``submit_p99_ms`` of those jobs;
- ``cluster_start_s`` (Ray only): ``ray start --head`` until the cluster is up.

Without Ray installed, the Ray column is ``n/a`` and the run says why.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402
import scaleout  # noqa: E402

FIGURES = (
    "cluster_start_s",
    "service_start_s",
    "first_job_s",
    "latency_p50_ms",
    "jobs_per_s",
    "submit_p50_ms",
    "submit_p99_ms",
    "round_trip_p50_ms",
    "round_trip_p99_ms",
)


def measure_service(
    home: Path, extra: tuple[str, ...], env: dict[str, str], jobs: int, workers: int, latency: int
) -> dict[str, Any]:
    """Start a service with ``extra`` arguments and time noop jobs on it.

    Returns:
        ``service_start_s``, ``first_job_s``, ``latency_p50_ms`` and the figures of
        :meth:`scaleout.Load.figures`.
    """
    began = time.perf_counter()
    service = bench.Service.start(home, "--workers", str(workers), *extra, env=env, timeout=300)
    out: dict[str, Any] = {"service_start_s": time.perf_counter() - began}
    try:
        program = service.upload("noop")
        client = service.client()
        began = time.perf_counter()
        bench.trivial_job(client, program, 0)
        out["first_job_s"] = time.perf_counter() - began
        samples = []
        for x in range(latency):
            began = time.perf_counter()
            bench.trivial_job(client, program, x)
            samples.append((time.perf_counter() - began) * 1000)
        out["latency_p50_ms"] = bench.median(samples)
        out.update(scaleout.closed_loop([service], program, 2 * workers, jobs).figures())
    finally:
        service.stop()
    return out


def measure(scratch: Path, jobs: int = 40, workers: int = 2, latency: int = 5) -> dict[str, Any]:
    """Both executors' figures (``None`` for what could not be measured, with ``error``).

    Args:
        scratch: Where the service homes go.
        jobs: Noop jobs of the throughput series.
        workers: Jobs at a time (the local pool's size, the Ray cluster's CPUs).
        latency: Sequential jobs of the latency series.

    Returns:
        ``{"jobs", "workers", "clients", "local": {...}, "ray": {...}}``.
    """
    report: dict[str, Any] = {
        "jobs": jobs,
        "workers": workers,
        "clients": 2 * workers,
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "local": measure_service(scratch / "local-home", (), {}, jobs, workers, latency),
        "ray": dict.fromkeys(FIGURES),
    }
    report["local"]["cluster_start_s"] = None
    try:
        import ray  # noqa: F401
    except ImportError:
        report["ray"]["error"] = "Ray is not installed (pip install 'prefect-qiskit-runtime[ray]')"
        return report
    from prefect_qiskit_runtime.server.executors.raycluster import local_cluster

    began = time.perf_counter()
    # The cluster's workers import this package as the service does (same PYTHONPATH).
    with local_cluster(num_cpus=workers, env=bench.clean_env()) as address:
        started = time.perf_counter() - began
        report["ray"] = measure_service(
            scratch / "ray-home",
            ("--executor", "ray", "--ray-address", address),
            {},
            jobs,
            workers,
            latency,
        )
    report["ray"]["cluster_start_s"] = started
    return report


def render(console: Any, report: dict[str, Any]) -> None:
    """Print the figures side by side, with the ratio Ray / local."""
    from rich.table import Table

    table = Table(
        title=f"executors: {report['jobs']} noop jobs, {report['workers']} at a time, "
        f"{report['clients']} clients"
    )
    for column in ("figure", "local", "ray", "ray / local"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for figure in FIGURES:
        local, ray = report["local"].get(figure), report["ray"].get(figure)
        ratio = f"{ray / local:.3g}x" if local and ray is not None else ""
        table.add_row(figure, _fmt(local), _fmt(ray), ratio)
    console.print(table)
    if report["ray"].get("error"):
        console.print(f"- ray: {report['ray']['error']}")


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:,.2f}" if value < 1000 else f"{value:,.0f}"


def main(argv: list[str] | None = None) -> int:
    """Measure both executors, print the table, write ``--json``."""
    from rich.console import Console

    parser = argparse.ArgumentParser(description="The local executor against the Ray executor.")
    parser.add_argument("--jobs", type=int, default=40, help="noop jobs of the throughput series")
    parser.add_argument("--workers", type=int, default=2, help="jobs at a time (default 2)")
    parser.add_argument("--latency-jobs", type=int, default=5, help="sequential jobs (default 5)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="pqr-bench-executors-"))
    try:
        report = measure(scratch, args.jobs, args.workers, args.latency_jobs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    render(Console(highlight=False), report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
