#!/usr/bin/env python
"""Measure prefect-qiskit-runtime against its alternatives, in one run on one problem.

Usage::

    python benchmarks/run.py [--quick] [--json PATH] [--chart PNG] [--cache-dir DIR] [--keep]
                             [--executors N] [--replicas N [--postgres-url URL]]

``--quick`` drains 2,000 jobs (10,000 without) and shortens the other series; either way the report
has the same keys. It prints the figures and the project's goals (pass/fail) as tables, writes the
report to ``--json`` and the per-iteration chart to ``--chart``, and exits 1 if a measurement
failed (its figures are then ``null``). What is measured, and how, is in ``docs/benchmarks.md``:

- ``hybrid_loop``: ms per iteration of the same 4-qubit estimator loop in five settings: bare Aer in
  this process, one job per iteration through ``RuntimeService``, the same inside a Prefect flow via
  ``loops.minimize``, the whole loop inside one job, and prefect-qiskit 0.2.1's
  ``QuantumRuntime.estimator`` (in its own venv, built once under the user cache directory).
- ``round_trip``: latency percentiles of a trivial job for one client, and throughput with 1, 8 and
  32 concurrent clients.
- ``cold_start``: a fresh process to its first result, with and without the embedded service up.
- ``drain``: a backlog of trivial jobs: time, lost jobs, service memory, database bytes per job.
- ``machine``: cores, Python, platform, package versions and the load average at the start.
- ``executors`` (only with ``--executors N``): N noop jobs on the local executor and on the Ray
  executor, side by side (``benchmarks/executors.py``, which also runs on its own).
- ``replicas`` (only with ``--replicas N``): N noop jobs on 1, then 2 service replicas sharing one
  PostgreSQL database (``benchmarks/replicas.py``, which also runs on its own); with
  ``--executors`` too, one scale-out table puts every configuration side by side.

Every measurement runs against a service started for it in a temporary home; nothing of the user's
(embedded service, Prefect home) is touched.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.metadata
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import problem  # noqa: E402

PREFECT_QISKIT_VERSION = "0.2.1"
#: Installed next to prefect-qiskit: Prefect 3.8.8's server breaks with FastAPI >= 0.151.
PREFECT_QISKIT_EXTRA_PINS = ("fastapi>=0.139,<0.151",)


def comparison_requirements() -> list[str]:
    """What the comparison venv installs: prefect-qiskit, on the Prefect version we run on.

    Both sides of the comparison then pay for the same Prefect task engine and server.
    """
    return [
        f"prefect-qiskit=={PREFECT_QISKIT_VERSION}",
        f"prefect=={importlib.metadata.version('prefect')}",
        *PREFECT_QISKIT_EXTRA_PINS,
    ]


BACKEND = "aer_simulator"
#: The energies of the exact settings must agree with the statevector reference this closely.
EXACT_ATOL = 1e-6
#: prefect-qiskit's Aer path estimates with 4,096 shots per observable group: a loose bound.
SHOTS_ATOL = 0.25


@dataclass(frozen=True)
class Sizes:
    """How much of each series one mode measures.

    Attributes:
        name: ``full``, ``quick`` or ``smoke``.
        iterations: Parameter vectors of the hybrid loop (bare, client, Prefect, server loop).
        pq_iterations: The first this many of them for prefect-qiskit (about 0.6 s each).
        warmup: Untimed iterations before each hybrid-loop series.
        server_loop_repeats: Rounds of (bare pass, whole-loop job); medians are reported.
        round_trip_jobs: Sequential trivial jobs of the one-client latency series.
        throughput_jobs: Jobs per concurrency level (split evenly between the clients).
        cold_repeats: Cold starts (each followed by one warm start); medians are reported.
        drain_jobs: Jobs of the drain.
    """

    name: str
    iterations: int
    pq_iterations: int
    warmup: int
    server_loop_repeats: int
    round_trip_jobs: int
    throughput_jobs: int
    cold_repeats: int
    drain_jobs: int


FULL = Sizes("full", 200, 40, 5, 7, 1000, 1000, 5, 10_000)
QUICK = Sizes("quick", 100, 20, 3, 5, 300, 300, 3, 2_000)
#: Every series at its minimum: for the smoke test, which checks keys, not figures.
SMOKE = Sizes("smoke", 3, 2, 1, 1, 5, 8, 1, 20)

CONCURRENCY = (1, 8, 32)
#: Extra noop jobs whose round trip is split into phases (after the timed ones).
PHASE_JOBS = 50


@dataclass(frozen=True)
class Goal:
    """One goal of the issue: a figure computed from the report, compared with a bound."""

    label: str
    compute: Callable[[dict[str, Any]], float | None]
    op: str  # "<=" or ">=" or "=="
    bound: float

    def check(self, report: dict[str, Any]) -> tuple[float | None, bool | None]:
        """The figure and whether it meets the bound (``None`` when it could not be measured)."""
        try:
            value = self.compute(report)
        except (KeyError, TypeError, ZeroDivisionError):
            value = None
        if value is None or not math.isfinite(value):
            return value, None
        if self.op == "<=":
            return value, value <= self.bound
        if self.op == ">=":
            return value, value >= self.bound
        return value, value == self.bound


GOALS = (
    Goal(
        "prefect_ms / bare_ms",
        lambda r: r["hybrid_loop"]["prefect_ms"] / r["hybrid_loop"]["bare_ms"],
        "<=",
        3,
    ),
    Goal(
        "server_loop_ms / bare_ms",
        lambda r: r["hybrid_loop"]["server_loop_ms"] / r["hybrid_loop"]["bare_ms"],
        "<=",
        1.2,
    ),
    Goal(
        "prefect_qiskit_ms / prefect_ms",
        lambda r: r["hybrid_loop"]["prefect_qiskit_ms"] / r["hybrid_loop"]["prefect_ms"],
        ">=",
        15,
    ),
    Goal("round_trip.p50_ms", lambda r: r["round_trip"]["p50_ms"], "<=", 10),
    Goal("round_trip.jobs_per_s_8", lambda r: r["round_trip"]["jobs_per_s_8"], ">=", 100),
    Goal(
        "cold_start.embedded_first_result_s",
        lambda r: r["cold_start"]["embedded_first_result_s"],
        "<=",
        5,
    ),
    Goal("drain.lost", lambda r: r["drain"]["lost"], "==", 0),
)


# ------------------------------------------------------------------------------------------------
# Small helpers.
# ------------------------------------------------------------------------------------------------


class Run:
    """State of one benchmark run: the scratch directory, the log, notes and failures."""

    def __init__(self, sizes: Sizes, scratch: Path, console: Any) -> None:
        self.sizes = sizes
        self.scratch = scratch
        self.console = console
        self.notes: list[str] = []
        self.failures: list[str] = []

    def step(self, text: str) -> None:
        """Print a progress line."""
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {text}")

    def note(self, text: str) -> None:
        """Record a remark printed under the table."""
        self.notes.append(text)

    def path(self, name: str) -> Path:
        """A fresh path in the scratch directory."""
        return self.scratch / name

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Run a measurement; a failure is recorded and the run goes on with the next one."""
        started = time.monotonic()
        self.step(f"[bold]{name}[/bold]")
        try:
            yield
        except Exception as exc:
            self.failures.append(f"{name}: {type(exc).__name__}: {exc}")
            self.console.print(f"[red]{name} failed[/red]: {type(exc).__name__}: {exc}")
            log = self.path(f"{name}-traceback.txt")
            log.write_text(traceback.format_exc())
            self.console.print(f"[red]traceback in {log}[/red]")
        finally:
            self.step(f"{name} took {time.monotonic() - started:.1f}s")


def median(values: list[float]) -> float:
    """The median of a non-empty series."""
    if not values:
        raise ValueError("no samples")
    return float(statistics.median(values))


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation)."""
    return float(np.percentile(np.asarray(values, dtype=float), q))


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without Prefect API settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE")
    }
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env.update(extra)
    return env


def run_worker(
    run: Run, name: str, python: str, script: str, config: dict[str, Any], timeout: float = 900
) -> dict[str, Any]:
    """Run a worker script with its own Prefect home; return the JSON it writes.

    Args:
        run: The run.
        name: Names the worker's files in the scratch directory.
        python: The interpreter.
        script: File name under ``benchmarks/workers``.
        config: Written to the worker's config file.
        timeout: Seconds the worker may take.

    Returns:
        The worker's report.

    Raises:
        RuntimeError: If the worker fails; the message points at its log.
    """
    home = run.path(f"{name}-prefect-home")
    home.mkdir()
    config_path, out_path, log_path = (
        run.path(f"{name}-config.json"),
        run.path(f"{name}-out.json"),
        run.path(f"{name}.log"),
    )
    config_path.write_text(json.dumps(config))
    with open(log_path, "wb") as log:
        # Its own session, so that a timeout also ends the Prefect server the harness started.
        proc = subprocess.Popen(
            [python, str(HERE / "workers" / script), str(config_path), str(out_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(PREFECT_HOME=str(home)),
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if proc.returncode != 0 or not out_path.exists():
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{script} exited with {proc.returncode}; log {log_path}:\n{tail}")
    report: dict[str, Any] = json.loads(out_path.read_text())
    return report


def run_all(
    run: Run, jobs: dict[str, Callable[[], dict[str, Any]]], parallel: bool
) -> dict[str, dict[str, Any]]:
    """Run named measurements, one after the other or at once; failures are recorded, not raised.

    Returns:
        The reports of the measurements that succeeded, by name.
    """
    reports: dict[str, dict[str, Any]] = {}
    if not parallel:
        for name, job in jobs.items():
            with run.section(f"hybrid_loop.{name}"):
                reports[name] = job()
        return reports
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        for name, future in futures.items():
            with run.section(f"hybrid_loop.{name}"):
                reports[name] = future.result()
    return reports


def check_energies(run: Run, label: str, got: list[float], want: np.ndarray, atol: float) -> None:
    """Record a failure if a setting computed different energies than the reference."""
    diff = float(np.max(np.abs(np.asarray(got, dtype=float) - want[: len(got)])))
    if len(got) != len(want[: len(got)]) or diff > atol:
        run.failures.append(f"{label}: energies differ from the reference by {diff:.3g}")
    else:
        run.note(f"{label}: energies agree with the exact reference (max |diff| {diff:.1e})")


# ------------------------------------------------------------------------------------------------
# The service under test.
# ------------------------------------------------------------------------------------------------


def cli_command(*args: str) -> list[str]:
    """The package's CLI in this interpreter."""
    return [sys.executable, "-m", "prefect_qiskit_runtime.cli", *args]


@dataclass
class Service:
    """A runtime service started for the benchmark, in its own temporary home."""

    url: str
    token: str
    home: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    _clients: list[Any] = field(default_factory=list)

    @classmethod
    def start(
        cls, home: Path, *extra: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> Service:
        """Start ``server start --port 0 [EXTRA...]`` in ``home``, wait until ready, add a user.

        Args:
            home: The service home (created).
            extra: More ``server start`` arguments (``--executor ray``, ``--workers 2``).
            env: More environment variables of the service.
            timeout: Seconds it may take to be ready.

        Raises:
            EmbeddedServiceError: If it exits or is not ready in time.
        """
        from prefect_qiskit_runtime.client.embedded import launch_service

        home.mkdir(parents=True)
        log_path = home / "service.log"
        ready = home / "ready.json"
        proc, info = launch_service(
            home,
            *extra,
            ready_file=ready,
            log_path=log_path,
            env=clean_env(**(env or {})),
            timeout=timeout,
        )
        url = info["url"]
        # On a shared database (replicas) every service adds a token for the same user.
        database = (
            list(extra[extra.index("--database-url") :][:2]) if "--database-url" in extra else []
        )
        added = subprocess.run(
            cli_command("users", "add", "bench", "--can-upload", "--home", str(home), *database),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        token = added.stdout.strip().splitlines()[-1].strip()
        return cls(url=url, token=token, home=home, process=proc, log_path=log_path)

    def client(self) -> Any:
        """A new ``RuntimeService`` for this service (one per thread: sessions are not shared)."""
        from prefect_qiskit_runtime.client import RuntimeService

        service = RuntimeService(self.url, self.token)
        self._clients.append(service)
        return service

    def upload(self, name: str, max_execution_time: int = 600) -> str:
        """Upload ``benchmarks/programs/<name>.py`` and return the program id."""
        source = (HERE / "programs" / f"{name.replace('-', '_')}.py").read_text()
        return str(
            self.client().upload_program(
                source,
                name=name,
                description=f"benchmark program {name}",
                max_execution_time=max_execution_time,
            )
        )

    def stop(self) -> None:
        """Stop the service (SIGTERM, then SIGKILL after 30 s)."""
        for client in self._clients:
            client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def db_bytes(self) -> int:
        """Bytes of the SQLite database, its WAL and shared-memory files, after a checkpoint.

        Without the checkpoint the figure would depend on how far the WAL had grown since the last
        automatic one (about 1 KB or 2.4 KB per job for the same drain); a ``TRUNCATE`` checkpoint
        is an ordinary operation alongside the service's own connections.
        """
        import sqlite3

        database = self.home / "runtime.db"
        with (
            contextlib.suppress(sqlite3.Error),
            contextlib.closing(sqlite3.connect(database, timeout=30)) as conn,
        ):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return sum(p.stat().st_size for p in self.home.glob("runtime.db*") if p.is_file())


# ------------------------------------------------------------------------------------------------
# prefect-qiskit in its own venv.
# ------------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``~/.cache/prefect-qiskit-runtime`` on Linux (the platform's user cache directory)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("prefect-qiskit-runtime", appauthor=False))


def venv_python(venv: Path) -> Path:
    """The interpreter of ``venv``."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_prefect_qiskit_venv(run: Run, cache: Path) -> Path:
    """Return the interpreter of a venv with ``prefect-qiskit==0.2.1``, building it once.

    The venv is complete once its marker file names the requirements it was built with; a
    half-built one (an interrupted run) or one built for other pins is removed and built again.
    A file lock keeps two benchmark runs from building it at once.

    Args:
        run: The run (for progress lines).
        cache: The cache directory that holds the venv.

    Returns:
        The venv's ``python``.

    Raises:
        subprocess.CalledProcessError: If creating the venv or installing fails.
    """
    venv = cache / f"bench-prefect-qiskit-{PREFECT_QISKIT_VERSION}"
    marker = venv / ".benchmark-ready"
    requirements = comparison_requirements()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(OSError, ValueError):
            if json.loads(marker.read_text()).get("requirements") == requirements:
                run.step(f"prefect-qiskit venv: {venv} (cached)")
                return venv_python(venv)
        started = time.monotonic()
        run.step(f"building the prefect-qiskit venv in {venv} (once)")
        shutil.rmtree(venv, ignore_errors=True)
        log_path = run.path("prefect-qiskit-venv.log")
        with open(log_path, "wb") as log:
            subprocess.run(
                [sys.executable, "-m", "venv", str(venv)], stdout=log, stderr=log, check=True
            )
            subprocess.run(
                [
                    str(venv_python(venv)),
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--no-input",
                    *requirements,
                ],
                stdout=log,
                stderr=log,
                check=True,
                timeout=900,
            )
        marker.write_text(json.dumps({"built": time.time(), "requirements": requirements}))
        run.step(f"prefect-qiskit venv built in {time.monotonic() - started:.0f}s")
        return venv_python(venv)


def venv_versions(python: Path) -> dict[str, str]:
    """Versions of the comparison's main packages inside its venv."""
    code = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({p: m.version(p) for p in"
        " ('prefect-qiskit', 'prefect', 'qiskit', 'qiskit-aer', 'qiskit-ibm-runtime')}))"
    )
    out = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    versions: dict[str, str] = json.loads(out.stdout)
    return versions


# ------------------------------------------------------------------------------------------------
# hybrid_loop
# ------------------------------------------------------------------------------------------------


class BareLoop:
    """Aer ``EstimatorV2`` in this process, one ``run`` per vector: the limit of every setting."""

    def __init__(self, warmup: list[list[float]]) -> None:
        from qiskit_aer.primitives import EstimatorV2

        self.circuit, self.observable = problem.ansatz(), problem.hamiltonian()
        self.estimator = EstimatorV2()
        for params in warmup:
            self.estimator.run([(self.circuit, self.observable, params)]).result()

    def once(self, vectors: list[list[float]]) -> tuple[float, list[float]]:
        """One pass over ``vectors``: (median ms per iteration, energies)."""
        times, energies = [], []
        for params in vectors:
            start = time.perf_counter()
            result = self.estimator.run([(self.circuit, self.observable, params)]).result()
            times.append((time.perf_counter() - start) * 1000)
            energies.append(float(result[0].data.evs))
        return median(times), energies


def measure_client(
    service: Service, vectors: list[list[float]], warmup: list[list[float]]
) -> tuple[float, list[float]]:
    """One ``estimator`` job per vector through ``RuntimeService``: (median ms, energies)."""
    client = service.client()
    options = {"backend_name": BACKEND}

    def once(params: list[float]) -> float:
        job = client.run("estimator", options, {"pubs": [problem.estimator_pub(params)]})
        return float(job.result(timeout=300)[0].data.evs)

    for params in warmup:
        once(params)
    times, energies = [], []
    for params in vectors:
        start = time.perf_counter()
        energies.append(once(params))
        times.append((time.perf_counter() - start) * 1000)
    return median(times), energies


def measure_bare_and_server_loop(
    service: Service, vectors: list[list[float]], warmup: list[list[float]], rounds: int
) -> tuple[float, list[float], float, list[float]]:
    """The limit and the whole loop inside one job, in alternating rounds.

    Both figures feed the tightest goal (a 1.2 ratio), so a round of each runs back to back: a
    burst of load from elsewhere on the machine then hits both, not one.

    Returns:
        (bare ms per iteration, its energies, server-loop ms per iteration, its energies), each the
        median over the rounds.
    """
    bare = BareLoop(warmup)
    program = service.upload("fixed-loop")
    client = service.client()
    inputs = {
        "circuit": problem.ansatz(),
        "observable": problem.hamiltonian(),
        "parameter_vectors": vectors,
    }
    client.run(program, {"backend_name": BACKEND}, {**inputs, "parameter_vectors": warmup}).result(
        timeout=300
    )
    bare_rounds: list[float] = []
    loop_rounds: list[float] = []
    bare_energies: list[float] = []
    loop_energies: list[float] = []
    for _ in range(rounds):
        ms, bare_energies = bare.once(vectors)
        bare_rounds.append(ms)
        start = time.perf_counter()
        result = client.run(program, {"backend_name": BACKEND}, inputs).result(timeout=600)
        loop_rounds.append((time.perf_counter() - start) * 1000 / len(vectors))
        loop_energies = [float(e) for e in result["energies"]]
    return median(bare_rounds), bare_energies, median(loop_rounds), loop_energies


def measure_hybrid_loop(run: Run, service: Service, pq_python: Path | None) -> dict[str, Any]:
    """Every setting of the hybrid loop; a setting that fails leaves its key ``None``."""
    sizes = run.sizes
    vectors = problem.parameter_vectors(sizes.iterations)
    warmup = problem.parameter_vectors(sizes.warmup + 1000)[1000:]
    reference = problem.exact_energies(vectors)
    out: dict[str, Any] = {
        "iterations": sizes.iterations,
        "bare_ms": None,
        "client_ms": None,
        "prefect_ms": None,
        "server_loop_ms": None,
        "prefect_qiskit_ms": None,
    }
    with run.section("hybrid_loop.bare+server_loop"):
        out["bare_ms"], bare_energies, out["server_loop_ms"], loop_energies = (
            measure_bare_and_server_loop(service, vectors, warmup, sizes.server_loop_repeats)
        )
        check_energies(run, "bare", bare_energies, reference, EXACT_ATOL)
        check_energies(run, "server loop", loop_energies, reference, EXACT_ATOL)
    with run.section("hybrid_loop.client"):
        out["client_ms"], energies = measure_client(service, vectors, warmup)
        check_energies(run, "client", energies, reference, EXACT_ATOL)
    prefect_config = {
        "url": service.url,
        "token": service.token,
        "iterations": sizes.iterations,
        "warmup": sizes.warmup,
        "checkpoints": str(run.path("prefect-loop-checkpoints")),
    }
    pq_config = {"iterations": sizes.pq_iterations, "warmup": sizes.warmup}
    workers: dict[str, Callable[[], dict[str, Any]]] = {
        "prefect": lambda: run_worker(
            run, "prefect-loop", sys.executable, "prefect_loop.py", prefect_config
        ),
        "prefect_qiskit": lambda: run_worker(
            run, "prefect-qiskit-loop", str(pq_python), "prefect_qiskit_loop.py", pq_config
        ),
    }
    if pq_python is None:
        del workers["prefect_qiskit"]
        run.failures.append("hybrid_loop.prefect_qiskit: the prefect-qiskit venv is missing")
    # Timings only count when the two Prefect loops run one after the other; the smoke mode,
    # which checks keys and not figures, overlaps their Prefect API start-ups to save time.
    reports = run_all(run, workers, parallel=sizes.name == "smoke")
    if "prefect" in reports:
        out["prefect_ms"] = median(reports["prefect"]["per_iteration_ms"])
        check_energies(run, "prefect", reports["prefect"]["energies"], reference, EXACT_ATOL)
    if "prefect_qiskit" in reports:
        report = reports["prefect_qiskit"]
        out["prefect_qiskit_ms"] = median(report["per_iteration_ms"])
        check_energies(run, "prefect-qiskit", report["energies"], reference, SHOTS_ATOL)
        run.note(
            f"prefect-qiskit: {sizes.pq_iterations} iterations (the first of the list); its own "
            f"primitive without Prefect (BackendEstimatorV2, 4,096 shots) takes "
            f"{median(report['sim_ms']):.1f} ms per iteration"
        )
    return out


# ------------------------------------------------------------------------------------------------
# round_trip
# ------------------------------------------------------------------------------------------------


def trivial_job(client: Any, program: str, x: int) -> None:
    """Run the noop program once and check its answer."""
    got = client.run(program, {"backend_name": BACKEND}, {"x": x}).result(timeout=300)
    if got != x:
        raise RuntimeError(f"noop returned {got!r} for {x}")


def timed_trivial_job(client: Any, program: str, x: int) -> list[float]:
    """Run the noop program once; return ms spent in each phase of the round trip.

    Phases: the submission request, queued (created → started) and running (started → ended) by
    the service's clock, the end until the client's long-poll returns, and fetching the result.
    """
    t0 = time.time()
    job = client.run(program, {"backend_name": BACKEND}, {"x": x})
    t1 = time.time()
    job.wait_for_final_state(timeout=300)
    t2 = time.time()
    got = job.result(timeout=300)
    t3 = time.time()
    if got != x:
        raise RuntimeError(f"noop returned {got!r} for {x}")
    metrics = job.metrics()
    created, started, ended = (metrics[k].timestamp() for k in ("created", "started", "finished"))
    return [
        (t1 - t0) * 1000,
        (started - created) * 1000,
        (ended - started) * 1000,
        (t2 - ended) * 1000,
        (t3 - t2) * 1000,
    ]


def throughput(service: Service, program: str, clients: int, total: int) -> float:
    """Jobs per second of ``clients`` threads, each with its own client, sharing ``total`` jobs.

    Threads rather than processes: concurrent Prefect task runs are threads of one process (the
    default task runner), and a thread's client spends its time waiting on sockets, not the GIL.
    """
    import scaleout  # imports this module: not at the top

    return scaleout.closed_loop([service], program, clients, total).jobs_per_s


def measure_round_trip(run: Run, service: Service) -> dict[str, Any]:
    """Latency of one client and throughput of 1, 8 and 32 clients, on the noop program."""
    out: dict[str, Any] = dict.fromkeys(
        ("p50_ms", "p95_ms", "p99_ms", "jobs_per_s_1", "jobs_per_s_8", "jobs_per_s_32")
    )
    program = service.upload("noop")
    with run.section("round_trip.latency"):
        client = service.client()
        for i in range(10):
            trivial_job(client, program, i)
        times = []
        for i in range(run.sizes.round_trip_jobs):
            start = time.perf_counter()
            trivial_job(client, program, i)
            times.append((time.perf_counter() - start) * 1000)
        # The split into phases takes extra requests (wait, result, metrics), so it is measured
        # on jobs of its own, not on the timed ones.
        phases = [timed_trivial_job(client, program, i) for i in range(PHASE_JOBS)]
        out["p50_ms"] = percentile(times, 50)
        out["p95_ms"] = percentile(times, 95)
        out["p99_ms"] = percentile(times, 99)
        names = ("POST /jobs", "queued", "running", "end seen", "GET results")
        split = ", ".join(
            f"{name} {median([p[k] for p in phases]):.1f}" for k, name in enumerate(names)
        )
        run.note(f"round trip, median ms per phase (server clock for queued/running): {split}")
    for clients in CONCURRENCY:
        with run.section(f"round_trip.jobs_per_s_{clients}"):
            out[f"jobs_per_s_{clients}"] = throughput(
                service, program, clients, run.sizes.throughput_jobs
            )
    return out


# ------------------------------------------------------------------------------------------------
# drain
# ------------------------------------------------------------------------------------------------


class RssSampler:
    """Samples the summed RSS of the service process and its long-lived children (warm parent).

    Job processes are short-lived forks that share their parent's pages; they are left out, so
    the figure is what the service keeps, not what a job borrows for a few milliseconds.
    """

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        import psutil

        root = psutil.Process(pid)
        self._procs = [root, *root.children(recursive=True)]
        self._interval = interval
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> int:
        """Current summed RSS in bytes."""
        import psutil

        total = 0
        for proc in self._procs:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        self.peak = max(self.peak, total)
        return total

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def wait_until_drained(client: Any, timeout: float = 3600) -> None:
    """Block until the user has no queued or running job, long-polling one pending job at a time.

    Raises:
        TimeoutError: If jobs are still pending after ``timeout`` seconds.
    """
    from prefect_qiskit_runtime.client.job import RuntimeJob

    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs still pending after {timeout:.0f}s")
        body = client.transport.request(
            "GET", "/jobs", what="list pending jobs", params={"limit": 1, "pending": "true"}
        ).json()
        jobs = body.get("jobs", [])
        if not jobs:
            return
        RuntimeJob.from_wire(client.transport, jobs[0]).wait_for_final_state(timeout=600)


def measure_drain(run: Run, service: Service) -> dict[str, Any]:
    """Submit a backlog of noop jobs from 8 threads and time until every one is final."""
    jobs = run.sizes.drain_jobs
    out: dict[str, Any] = {
        "jobs": jobs,
        "seconds": None,
        "lost": None,
        "service_rss_mb": None,
        "db_bytes_per_job": None,
    }
    program = service.upload("noop")
    submitters = 8
    clients = [service.client() for _ in range(submitters)]
    for client in clients:
        trivial_job(client, program, -1)  # warm: connection, account discovery, program cache
    db_before = service.db_bytes()
    submitted: dict[int, Any] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def submit(index: int) -> None:
        client = clients[index]
        for x in range(index, jobs, submitters):
            try:
                job = client.run(program, {"backend_name": BACKEND}, {"x": x})
            except Exception as exc:
                with lock:
                    errors.append(f"submit {x}: {exc!r}")
                continue
            with lock:
                submitted[x] = job

    with RssSampler(service.process.pid) as rss:
        start = time.perf_counter()
        threads = [threading.Thread(target=submit, args=(i,)) for i in range(submitters)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        submit_seconds = time.perf_counter() - start
        wait_until_drained(clients[0])
        out["seconds"] = time.perf_counter() - start
    out["service_rss_mb"] = rss.peak / 2**20
    run.note(
        f"drain: {jobs} jobs submitted by {submitters} threads in {submit_seconds:.1f}s, "
        f"all final after {out['seconds']:.1f}s"
    )
    out["lost"] = jobs - count_delivered(clients, submitted, errors)
    out["db_bytes_per_job"] = (service.db_bytes() - db_before) / jobs
    if errors:
        run.note(f"drain: {len(errors)} errors, first: {errors[0]}")
    return out


def count_delivered(clients: list[Any], submitted: dict[int, Any], errors: list[str]) -> int:
    """How many submitted jobs ended ``COMPLETED`` with the right result (checked after timing).

    Args:
        clients: One client per checking thread.
        submitted: The jobs by the input each was given (and must return).
        errors: Receives a line per job that was not delivered.

    Returns:
        The number of delivered jobs.
    """
    items = sorted(submitted.items())
    delivered = 0
    lock = threading.Lock()

    def check(index: int) -> None:
        nonlocal delivered
        mine = 0
        for x, job in items[index :: len(clients)]:
            try:
                fresh = clients[index].job(job.job_id())
                if fresh.result(timeout=60) == x:
                    mine += 1
                else:
                    errors.append(f"job {job.job_id()} (x={x}) has a wrong result")
            except Exception as exc:
                errors.append(f"job {job.job_id()} (x={x}): {exc!r}")
        with lock:
            delivered += mine

    threads = [threading.Thread(target=check, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return delivered


# ------------------------------------------------------------------------------------------------
# cold_start
# ------------------------------------------------------------------------------------------------


def first_result(home: Path, log_path: Path) -> float:
    """Seconds from starting a fresh interpreter to its first result, with ``home`` as data dir."""
    env = clean_env(PREFECT_QISKIT_RUNTIME_HOME=str(home))
    with open(log_path, "ab") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "workers" / "first_result.py")],
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
        )
        assert proc.stdout is not None
        elapsed = None
        watchdog = threading.Timer(300, proc.kill)  # reading stdout would otherwise block forever
        watchdog.start()
        try:
            for line in proc.stdout:
                if line.startswith(b"FIRST_RESULT"):
                    elapsed = time.perf_counter() - start
            proc.wait()
        finally:
            watchdog.cancel()
    if proc.returncode != 0 or elapsed is None:
        raise RuntimeError(f"first_result.py exited with {proc.returncode}; see {log_path}")
    return elapsed


def measure_cold_start(run: Run) -> dict[str, Any]:
    """Cold (no embedded service) and warm (service up) first results, in fresh data dirs."""
    from prefect_qiskit_runtime.client import embedded

    cold, warm = [], []
    for i in range(run.sizes.cold_repeats):
        home = run.path(f"embedded-home-{i}")
        home.mkdir()
        log_path = run.path(f"first-result-{i}.log")
        try:
            cold.append(first_result(home, log_path))
            warm.append(first_result(home, log_path))
        finally:
            embedded.stop(home)
    return {"embedded_first_result_s": median(cold), "warm_first_result_s": median(warm)}


# ------------------------------------------------------------------------------------------------
# machine and report
# ------------------------------------------------------------------------------------------------

PACKAGES = (
    "prefect-qiskit-runtime",
    "prefect",
    "qiskit",
    "qiskit-aer",
    "fastapi",
    "uvicorn",
    "sqlalchemy",
    "requests",
    "websockets",
    "numpy",
)


def machine(pq_versions: dict[str, str] | None, load: float | None) -> dict[str, Any]:
    """Cores, Python, platform, package versions, and the load average when the run began."""
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "packages": versions,
        "comparison_venv": pq_versions,
        "load_average_1m": load,
    }


def render(run: Run, report: dict[str, Any]) -> None:
    """Print the figures and the goals as rich tables."""
    from rich.table import Table

    def fmt(value: Any) -> str:
        if value is None:
            return "[red]n/a[/red]"
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
        return str(value)

    figures = Table(title=f"prefect-qiskit-runtime benchmarks ({run.sizes.name})")
    figures.add_column("section")
    figures.add_column("figure")
    figures.add_column("value", justify="right")
    for section in ("hybrid_loop", "round_trip", "cold_start", "drain"):
        for key, value in report[section].items():
            figures.add_row(section, key, fmt(value))
    run.console.print(figures)

    goals = Table(title="goals (same run)")
    goals.add_column("figure")
    goals.add_column("value", justify="right")
    goals.add_column("goal", justify="right")
    goals.add_column("result")
    for goal in GOALS:
        value, ok = goal.check(report)
        verdict = (
            "[red]n/a[/red]" if ok is None else "[green]pass[/green]" if ok else "[red]FAIL[/red]"
        )
        goals.add_row(goal.label, fmt(value), f"{goal.op} {goal.bound:g}", verdict)
    run.console.print(goals)
    m = report["machine"]
    run.console.print(
        f"machine: {m['cores']} cores, {m['cpu']}, Python {m['python']}, {m['platform']}, "
        f"load average {m['load_average_1m']} at the start"
    )
    for note in run.notes:
        run.console.print(f"- {note}")
    for failure in run.failures:
        run.console.print(f"[red]- {failure}[/red]")


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Benchmark prefect-qiskit-runtime against its alternatives."
    )
    parser.add_argument(
        "--quick", action="store_true", help="drain 2,000 jobs instead of 10,000; shorter series"
    )
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where the prefect-qiskit comparison venv is kept (default: the user cache dir)",
    )
    parser.add_argument("--chart", type=Path, help="also draw the per-iteration chart (PNG) here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the scratch directory (logs, service homes)"
    )
    import scaleout

    scaleout.add_arguments(parser)  # --executors N, --replicas N, --postgres-url URL
    parser.add_argument(
        "--session-loop",
        type=int,
        default=0,
        metavar="N",
        help="also time N iterations of a hybrid loop of Prefect tasks in a session (sessions.py)",
    )
    # Every series at its minimum, for the smoke test of the report's keys.
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark, print the tables, write the JSON; exit 1 if a measurement failed."""
    from rich.console import Console

    args = parse_args(argv)
    sizes = SMOKE if args.smoke else QUICK if args.quick else FULL
    console = Console(stderr=False, highlight=False)
    scratch = Path(tempfile.mkdtemp(prefix="pqr-bench-"))
    run = Run(sizes, scratch, console)
    run.step(f"mode {sizes.name}; scratch directory {scratch}")
    began = time.monotonic()
    # Other work on the machine skews every figure; the load average says how much there was.
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    report: dict[str, Any] = {}

    pq_python: Path | None = None
    pq_versions: dict[str, str] | None = None
    with run.section("setup.prefect_qiskit_venv"):
        pq_python = ensure_prefect_qiskit_venv(run, args.cache_dir or default_cache_dir())
        pq_versions = venv_versions(pq_python)

    service: Service | None = None
    report["hybrid_loop"] = {}
    report["round_trip"] = {}
    try:
        with run.section("setup.service"):
            service = Service.start(run.path("service-home"))
        if service is not None:
            with run.section("hybrid_loop"):
                report["hybrid_loop"] = measure_hybrid_loop(run, service, pq_python)
            with run.section("round_trip"):
                report["round_trip"] = measure_round_trip(run, service)
    finally:
        if service is not None:
            service.stop()

    report["drain"] = {"jobs": sizes.drain_jobs}
    drain_service: Service | None = None
    try:
        with run.section("drain"):
            drain_service = Service.start(run.path("drain-home"))
            report["drain"] = measure_drain(run, drain_service)
    finally:
        if drain_service is not None:
            drain_service.stop()

    report["cold_start"] = {"embedded_first_result_s": None, "warm_first_result_s": None}
    with run.section("cold_start"):
        report["cold_start"] = measure_cold_start(run)

    import scaleout

    scale = scaleout.measure(run, args)  # only with --executors or --replicas

    session_report: dict[str, Any] | None = None
    if args.session_loop:
        import sessions

        with run.section("session_loop"):
            session_report = sessions.measure_in_subprocess(
                run.path("session-loop"), args.session_loop
            )

    report["machine"] = machine(pq_versions, load)
    report = complete(report, sizes)
    render(run, report)
    report.update(scale)
    scaleout.render(run.console, scale.get("executors"), scale.get("replicas"))
    if session_report is not None:
        report["session_loop"] = session_report
        sessions.render(run.console, session_report)
    run.step(f"total {time.monotonic() - began:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        run.step(f"wrote {args.json}")
    if args.chart:
        from chart import render_chart

        render_chart(report, args.chart)
        run.step(f"wrote {args.chart}")
    if args.keep or run.failures:
        run.step(f"kept {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if run.failures else 0


REPORT_KEYS: dict[str, tuple[str, ...]] = {
    "hybrid_loop": (
        "iterations",
        "bare_ms",
        "client_ms",
        "prefect_ms",
        "server_loop_ms",
        "prefect_qiskit_ms",
    ),
    "round_trip": ("p50_ms", "p95_ms", "p99_ms", "jobs_per_s_1", "jobs_per_s_8", "jobs_per_s_32"),
    "cold_start": ("embedded_first_result_s", "warm_first_result_s"),
    "drain": ("jobs", "seconds", "lost", "service_rss_mb", "db_bytes_per_job"),
}


def complete(report: dict[str, Any], sizes: Sizes) -> dict[str, Any]:
    """The report with every key of the issue, in order (``None`` where a measurement failed)."""
    out: dict[str, Any] = {}
    for section, keys in REPORT_KEYS.items():
        got = report.get(section) or {}
        out[section] = {key: got.get(key) for key in keys}
    out["hybrid_loop"]["iterations"] = sizes.iterations
    out["drain"]["jobs"] = sizes.drain_jobs
    out["machine"] = report["machine"]
    return out


if __name__ == "__main__":
    sys.exit(main())
