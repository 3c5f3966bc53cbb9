"""What the executors and replicas comparisons share: the closed-loop load and the scale-out table.

:func:`closed_loop` is the throughput series of ``executors.py`` and ``replicas.py``: client threads
run a fixed number of noop jobs between them, each job submitted and awaited in turn, spread over
one or more services round robin (as a load balancer in front of replicas would). :func:`render`
prints both comparisons, and, when both were measured, one table with a row per configuration.
:func:`add_arguments` and :func:`measure` are ``run.py``'s ``--executors`` and ``--replicas``.
"""

from __future__ import annotations

import argparse
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import run as bench


@dataclass
class Load:
    """The outcome of :func:`closed_loop`.

    Attributes:
        jobs_per_s: Jobs over the wall time from the first submission to the last result.
        submit_ms: Per job, the submission request (``run()`` until it returns).
        round_trip_ms: Per job, ``run()`` until ``result()`` returns.
        inputs: Per job, its input ``x`` (in the order of ``submit_ms`` and ``round_trip_ms``).
        submitted: The jobs by their input ``x`` (each must return ``x``).
        target: Per input ``x``, the index of the service it was submitted to.
    """

    jobs_per_s: float
    submit_ms: list[float] = field(default_factory=list)
    round_trip_ms: list[float] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    submitted: dict[int, Any] = field(default_factory=dict)
    target: dict[int, int] = field(default_factory=dict)

    def figures(self) -> dict[str, float]:
        """``jobs_per_s`` and the p50/p99 of the submission and of the round trip, in ms."""
        return {
            "jobs_per_s": self.jobs_per_s,
            "submit_p50_ms": bench.percentile(self.submit_ms, 50),
            "submit_p99_ms": bench.percentile(self.submit_ms, 99),
            "round_trip_p50_ms": bench.percentile(self.round_trip_ms, 50),
            "round_trip_p99_ms": bench.percentile(self.round_trip_ms, 99),
        }


def closed_loop(services: list[bench.Service], program: str, clients: int, total: int) -> Load:
    """``clients`` threads run ``total`` noop jobs between them, round robin over ``services``.

    Each thread has its own ``RuntimeService`` per service (sessions are not shared) and takes the
    next input from a shared counter; input ``x`` goes to ``services[x % len(services)]``, so
    consecutive jobs alternate between the services whichever thread sends them.

    Raises:
        RuntimeError: If a job fails or returns something else than its input.
    """
    handles = [[service.client() for service in services] for _ in range(clients)]
    for handle in itertools.chain.from_iterable(handles):
        handle._hub_group_project()  # account discovery belongs to set-up, not to the jobs
    counter = itertools.count()
    lock = threading.Lock()
    load = Load(jobs_per_s=0.0)
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def worker(index: int) -> None:
        barrier.wait()
        try:
            while (x := next(counter)) < total:
                target = x % len(services)
                t0 = time.perf_counter()
                job = handles[index][target].run(program, {"backend_name": bench.BACKEND}, {"x": x})
                t1 = time.perf_counter()
                got = job.result(timeout=300)
                t2 = time.perf_counter()
                if got != x:
                    raise RuntimeError(f"noop returned {got!r} for {x}")
                with lock:
                    load.submit_ms.append((t1 - t0) * 1000)
                    load.round_trip_ms.append((t2 - t0) * 1000)
                    load.inputs.append(x)
                    load.submitted[x], load.target[x] = job, target
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} clients failed; first: {errors[0]!r}")
    load.jobs_per_s = total / elapsed
    return load


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def scaleout_rows(
    executors: dict[str, Any] | None, replicas: dict[str, Any] | None
) -> list[tuple[str, ...]]:
    """One row per configuration: name, jobs, clients, slots, jobs/s, round-trip p50 and p99."""
    rows: list[tuple[str, ...]] = []
    for name, label in (("local", "local executor"), ("ray", "Ray executor")):
        if executors is not None:
            got = executors.get(name) or {}
            rows.append(
                (
                    label,
                    _fmt(executors.get("jobs")),
                    _fmt(executors.get("clients")),
                    _fmt(executors.get("workers")),
                    _fmt(got.get("jobs_per_s")),
                    _fmt(got.get("round_trip_p50_ms")),
                    _fmt(got.get("round_trip_p99_ms")),
                )
            )
    for run in (replicas or {}).get("runs", []):
        n = run["replicas"]
        rows.append(
            (
                f"{n} replica{'s' if n > 1 else ''} PG",
                _fmt(replicas["jobs"] if replicas else None),
                _fmt(replicas["clients"] if replicas else None),
                _fmt(n * replicas["workers"] if replicas else None),
                _fmt(run.get("jobs_per_s")),
                _fmt(run.get("round_trip_p50_ms")),
                _fmt(run.get("round_trip_p99_ms")),
            )
        )
    return rows


def render(console: Any, executors: dict[str, Any] | None, replicas: dict[str, Any] | None) -> None:
    """Print each comparison measured, then, when both were, the scale-out table of all rows."""
    import executors as executors_bench
    import replicas as replicas_bench
    from rich.table import Table

    if executors is not None:
        executors_bench.render(console, executors)
    if replicas is not None:
        replicas_bench.render(console, replicas)
    if executors is None or replicas is None or not replicas.get("runs"):
        return
    table = Table(title="scale-out: noop jobs from concurrent clients, each submitted then awaited")
    for column in ("configuration", "jobs", "clients", "slots", "jobs/s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "configuration" else "right")
    for row in scaleout_rows(executors, replicas):
        table.add_row(*row)
    console.print(table)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``run.py``'s options of the two comparisons."""
    parser.add_argument(
        "--executors",
        type=int,
        default=0,
        metavar="N",
        help="also time N noop jobs on the local and the Ray executor (benchmarks/executors.py)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=0,
        metavar="N",
        help="also time N noop jobs on 1 and 2 replicas on one PostgreSQL (benchmarks/replicas.py)",
    )
    parser.add_argument(
        "--postgres-url",
        help="the database of --replicas (default $PQR_BENCH_POSTGRES_URL, $PQR_TEST_POSTGRES_URL)",
    )


def measure(run: bench.Run, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The comparisons ``args`` asks for, each a section of ``run`` (a failure is recorded).

    Returns:
        ``executors`` and ``replicas`` reports, for those that were asked for and did not fail.
    """
    import executors
    import replicas

    out: dict[str, dict[str, Any]] = {}
    if args.executors:
        with run.section("executors"):
            out["executors"] = executors.measure(run.path("executors"), args.executors)
    if args.replicas:
        with run.section("replicas"):
            url = replicas.postgres_url(args.postgres_url)
            out["replicas"] = replicas.measure(run.path("replicas"), args.replicas, url)
            run.failures.extend(replicas.problems(out["replicas"]))
    return out
