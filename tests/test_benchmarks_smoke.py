"""Smoke test of ``benchmarks/run.py``: every key of the report is produced, with figures.

The benchmark itself never runs in the test suite; ``--smoke`` shrinks every series to its minimum
(a few iterations and jobs, one cold start, a 20-job drain) so that this test checks the plumbing
of every measurement (the service, the Prefect loop, the prefect-qiskit venv, the embedded cold
start) without timing anything. The prefect-qiskit venv is built once under the user cache
directory and reused by later runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "run.py"

EXPECTED = {
    "hybrid_loop": {
        "iterations",
        "bare_ms",
        "client_ms",
        "prefect_ms",
        "server_loop_ms",
        "prefect_qiskit_ms",
    },
    "round_trip": {"p50_ms", "p95_ms", "p99_ms", "jobs_per_s_1", "jobs_per_s_8", "jobs_per_s_32"},
    "cold_start": {"embedded_first_result_s", "warm_first_result_s"},
    "drain": {"jobs", "seconds", "lost", "service_rss_mb", "db_bytes_per_job"},
}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_benchmarks_quick_report_has_every_key(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    chart = tmp_path / "chart.png"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--smoke",
            "--json",
            str(out),
            "--chart",
            str(chart),
        ],
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())

    assert set(report) == {*EXPECTED, "machine"}
    for section, keys in EXPECTED.items():
        assert set(report[section]) == keys, section
        for key in keys:
            value = report[section][key]
            assert isinstance(value, (int, float)) and value >= 0, (section, key, value)
    assert report["drain"]["lost"] == 0
    assert report["drain"]["jobs"] == 20
    machine = report["machine"]
    assert machine["cores"] >= 1
    assert machine["python"] == ".".join(map(str, sys.version_info[:3]))
    assert machine["packages"]["prefect-qiskit-runtime"]
    assert machine["comparison_venv"]["prefect-qiskit"] == "0.2.1"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "goals (same run)" in proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_session_loop_benchmark_reports_every_figure(tmp_path: Path) -> None:
    """``benchmarks/sessions.py``: every figure is produced, the energies are right (not timed)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import sessions
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    report = sessions.measure_in_subprocess(tmp_path, iterations=4, warmup=1)
    assert set(report) == set(sessions.FIGURES)
    assert report["iterations"] == 4
    for key in sessions.FIGURES[1:-1]:
        assert isinstance(report[key], (int, float)), key
        if not key.startswith("added"):  # differences, which may be negative
            assert report[key] > 0, (key, report[key])
    # Every series computed the exact energies, the session's through one serving job.
    assert report["max_energy_error"] < 1e-9
