"""The Landlock confinement of job processes, in a throwaway process of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_qiskit_runtime.server.executors.sandbox import landlock_abi

pytestmark = pytest.mark.skipif(landlock_abi() < 1, reason="this kernel offers no Landlock")

CONFINED = """
import json, sys
from prefect_qiskit_runtime.server.executors.sandbox import confine, read_roots

job, home, ancestor = sys.argv[1:4]
done = confine([job], [home], readable=read_roots([ancestor]))
seen = {}
for path in sys.argv[4:]:
    try:
        open(path).read()
        seen[path] = "read"
    except PermissionError:
        seen[path] = "denied"
with open(job + "/out.txt", "w") as fh:
    fh.write("ok")
try:
    open(home + "/new.txt", "w")
    seen["write home"] = "written"
except PermissionError:
    seen["write home"] = "denied"
print(json.dumps({"seen": seen, "skipped": done.skipped, "abi": done.abi}))
"""


def test_confined_process_reads_only_its_own_directory_and_the_system(tmp_path: Path) -> None:
    home = tmp_path / "home"
    job, other = home / "jobs" / "a", home / "jobs" / "b"
    job.mkdir(parents=True)
    other.mkdir(parents=True)
    (home / "runtime.db").write_text("secret")
    (other / "x").write_text("other job")
    (job / "mine").write_text("mine")
    targets = [str(home / "runtime.db"), str(other / "x"), str(job / "mine"), "/etc/hostname"]
    out = subprocess.run(
        [sys.executable, "-c", CONFINED, str(job), str(home), str(tmp_path), *targets],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(out.stdout)
    assert report["seen"] == {
        str(home / "runtime.db"): "denied",
        str(other / "x"): "denied",
        str(job / "mine"): "read",
        "/etc/hostname": "read",
        "write home": "denied",
    }
    # An allowed directory that contains the protected home is left out, not granted.
    assert str(tmp_path.resolve()) in report["skipped"]
    assert (job / "out.txt").read_text() == "ok"
    assert report["abi"] == landlock_abi()
