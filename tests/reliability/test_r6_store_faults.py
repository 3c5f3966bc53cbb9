"""R6: the disk fills up, or the database stays locked, while a job finishes; the job ends in its
final state once the fault clears.

The service's home (database, job directories) is on a small tmpfs. A job runs until told to
return; the disk is then filled, the job returns, and the service cannot write its end. The job
stays RUNNING meanwhile (its outcome held by the service, retried with backoff), and becomes
COMPLETED with its result as soon as the filler is removed; never stuck RUNNING, nothing lost.
The same holds when another process keeps the SQLite write lock beyond the busy timeout.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from reliability_support import BACKEND, WAIT_FOR_GO, until
from service_helpers import add_user, start_service, stop_service

from prefect_qiskit_runtime.client import RuntimeService


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 MiB tmpfs mounted for this test (the machines running the suite are root)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(path: Path) -> int:
    """Write ``path`` until the filesystem is full; returns the bytes written."""
    written = 0
    chunk = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as fh:
        while True:
            try:
                written += fh.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    # The last partial megabyte, so that not even a WAL frame fits.
    with contextlib.suppress(OSError), open(path, "ab", buffering=0) as fh:
        while True:
            written += fh.write(b"\0" * 4096)
    return written


def test_r6_disk_full_during_a_jobs_finish(
    small_disk: Path, tmp_path: Path, figures: Callable[..., str]
) -> None:
    home = small_disk / "home"
    log_path = tmp_path / "service.log"  # on the big disk, to read what the service said
    svc = start_service(home, "--workers", "1", log_path=log_path)
    filler = small_disk / "filler"
    try:
        client = RuntimeService(svc.url, add_user(home, "alice"))
        program_id = client.upload_program(
            WAIT_FOR_GO, name="r6-wait", description="r6", max_execution_time=300
        )
        job = client.run(program_id, BACKEND, {"x": 7})
        workdir = until(lambda: job.interim_results(), 120, "the job to start")[0]["waiting"]
        pid = until(lambda: _job_pid(svc.process.pid, workdir), 30, "the job's process")
        filled = _fill(filler)
        full_since = time.monotonic()
        Path(workdir, "go").touch()  # an inode, not a block: possible on a full tmpfs
        until(lambda: not psutil.pid_exists(pid), 60, "the job's process to return")
        refused = "Could not record the end of job"
        until(lambda: log_path.read_text().count(refused) >= 3, 60, "three refused writes")
        # The outcome is held by the service; the store still says RUNNING, as it must.
        assert client.job(job.job_id()).state.value == "RUNNING"
        refusals_while_full = log_path.read_text().count(refused)
        full_seconds = time.monotonic() - full_since
        filler.unlink()
        cleared = time.monotonic()
        assert job.result(timeout=60) == 7
        to_final = time.monotonic() - cleared
        assert client.job(job.job_id()).state.value == "COMPLETED"
        assert "succeeded after" in log_path.read_text()
        again = client.run(program_id, BACKEND, {"x": 8})
        until(lambda: again.interim_results(), 120, "a new job to start")
        Path(again.interim_results()[0]["waiting"], "go").touch()
        assert again.result(timeout=60) == 8
    finally:
        stop_service(svc)
    figures(
        "R6 disk full during a job's finish",
        filler_mib=round(filled / (1 << 20), 1),
        seconds_full=round(full_seconds, 2),
        status_while_full="RUNNING",
        refused_writes=refusals_while_full,
        final_status="COMPLETED",
        seconds_to_final_after_space_returned=round(to_final, 2),
        next_job="COMPLETED",
    )


def _job_pid(service_pid: int, workdir: str) -> int | None:
    """The pid of the service's descendant whose working directory is ``workdir``."""
    with contextlib.suppress(psutil.Error):
        for proc in psutil.Process(service_pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if os.path.samefile(proc.cwd(), workdir):
                    return proc.pid
    return None


def test_r6_database_locked_during_a_jobs_finish(
    tmp_path: Path, figures: Callable[..., str]
) -> None:
    """Another process holds the SQLite write lock longer than the service's busy timeout while
    a job finishes: the job stays RUNNING, then COMPLETED once the lock is released."""
    home = tmp_path / "home"
    svc = start_service(home, "--workers", "1", "--db-busy-timeout", "0.2")
    try:
        client = RuntimeService(svc.url, add_user(home, "alice"))
        program_id = client.upload_program(
            WAIT_FOR_GO, name="r6-locked", description="r6", max_execution_time=300
        )
        job = client.run(program_id, BACKEND, {"x": 9})
        workdir = until(lambda: job.interim_results(), 120, "the job to start")[0]["waiting"]
        locker = sqlite3.connect(home / "runtime.db", timeout=10, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # the write lock, as a long-running writer holds it
        locked_since = time.monotonic()
        refused = "Could not record the end of job"
        try:
            Path(workdir, "go").touch()
            until(lambda: svc.log_path.read_text().count(refused) >= 3, 60, "three refused writes")
            assert client.job(job.job_id()).state.value == "RUNNING"  # readers are not blocked
            refusals = svc.log_path.read_text().count(refused)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        locked_seconds = time.monotonic() - locked_since
        released = time.monotonic()
        assert job.result(timeout=60) == 9
        to_final = time.monotonic() - released
        assert "database is locked" in svc.log_path.read_text()
    finally:
        stop_service(svc)
    figures(
        "R6 database locked during a job's finish",
        busy_timeout_seconds=0.2,
        seconds_locked=round(locked_seconds, 2),
        status_while_locked="RUNNING",
        refused_writes=refusals,
        final_status="COMPLETED",
        seconds_to_final_after_release=round(to_final, 2),
    )
