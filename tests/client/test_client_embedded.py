"""The embedded service: fresh processes with nothing configured start it from an empty home, share
one instance when they start at once, reuse it later, and ``server status/stop`` act on it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from service_helpers import cli

from prefect_qiskit_runtime.client import embedded

# Exactly the acceptance call, in a fresh interpreter; the timings go to the report, not asserts.
SCRIPT = """
import json, time
t0 = time.perf_counter()
from prefect_qiskit_runtime import RuntimeService
calls = []
def cb(job_id, message):
    calls.append(message["iteration"])
service = RuntimeService()
t_client = time.perf_counter()
result = RuntimeService().run(
    "hello-world", {"backend_name": "aer_simulator"}, {"iterations": 3}, callback=cb
).result()
t1 = time.perf_counter()
print(json.dumps({"result": result, "callbacks": calls, "url": service.url,
                  "first_result_seconds": t1 - t0, "client_seconds": t_client - t0}))
"""


def _start(home: Path) -> subprocess.Popen[str]:
    env = {**os.environ, embedded.HOME_ENV: str(home)}
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    return dict(json.loads(out.strip().splitlines()[-1]))


def _servers(home: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "server" in cmdline and "start" in cmdline and str(home) in cmdline:
            found.append(proc)
    return found


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """An empty data directory whose embedded service is stopped afterwards."""
    path = tmp_path / "embedded-home"
    yield path
    embedded.stop(path)


def test_fresh_processes_start_share_and_reuse_one_service(
    home: Path, record_property: Callable[[str, object], None]
) -> None:
    assert not home.exists()
    first, second = _start(home), _start(home)  # both find no service and race to start one
    results = [_finish(first), _finish(second)]
    for outcome in results:
        assert outcome["result"] == "All done!"
        assert outcome["callbacks"] == [0, 1, 2]
    assert results[0]["url"] == results[1]["url"]
    assert len(_servers(home)) == 1

    record = json.loads((home / "embedded.json").read_text())
    assert record["url"] == results[0]["url"]
    for name in ("embedded.json", "token"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600

    reused = _finish(_start(home))
    assert reused["result"] == "All done!" and reused["callbacks"] == [0, 1, 2]
    assert reused["url"] == record["url"]
    assert json.loads((home / "embedded.json").read_text())["pid"] == record["pid"]
    cold = max(r["first_result_seconds"] for r in results)
    warm = reused["first_result_seconds"]
    record_property("cold_first_result_seconds", cold)
    record_property("warm_first_result_seconds", warm)
    print(f"embedded timings: cold first result {cold:.2f}s, warm first result {warm:.2f}s")

    status = cli("server", "status", "--home", str(home))
    assert json.loads(status.stdout)["pid"] == record["pid"]
    assert embedded.status(home) is not None
    assert cli("server", "stop", "--home", str(home)).stdout.strip() == "stopped"
    assert embedded.status(home) is None
    assert not (home / "embedded.json").exists()
    assert not psutil.pid_exists(record["pid"]) or not _servers(home)
    assert embedded.stop(home) is False


def test_dead_service_is_replaced(home: Path) -> None:
    """A recorded service that no longer answers is replaced by a new one on the next call."""
    info = embedded.ensure(home)
    assert info.started is True
    process = psutil.Process(info.pid)
    process.kill()  # it exits without removing embedded.json, as after a crash
    process.wait(timeout=60)
    replacement = embedded.ensure(home)
    assert replacement.started is True
    assert replacement.pid != info.pid
    assert replacement.token == info.token  # the local user's token is created only once
    again = embedded.ensure(home)
    assert (again.started, again.url) == (False, replacement.url)
