"""The client commands of the command line: programs, jobs, ``jobs watch`` and backends.

Each test drives ``python -m prefect_qiskit_runtime.cli`` in a subprocess against a real service
(the session's, or one of its own for TLS), as a user would, and checks the exit code, the output
(``--json`` parsed) and that nothing printed a traceback.
"""

from __future__ import annotations

import json
import queue
import re
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from server_helpers import FAILING, PUBLISHER, SLEEPER, Api, unique
from service_helpers import RunningService, cli, start_service, stop_service

# Publishes step 1 of 3, then blocks until the test connects it through to its gate (a TCP port of
# the test) and sends one byte; then publishes steps 2 and 3 and returns.
GATED = """
import socket

def main(backend, user_messenger, port, steps=3, **kwargs):
    user_messenger.publish({"iteration": 1, "iterations": steps})
    with socket.create_connection(("127.0.0.1", port), timeout=300) as gate:
        gate.recv(1)
    for step in range(2, steps + 1):
        user_messenger.publish({"iteration": step, "iterations": steps})
    return {"answer": 42}
"""

FLAT_METADATA = {
    "description": "publishes its iterations",
    "max_execution_time": 60,
    "parameters": [
        {"name": "iterations", "description": "how many", "type": "int", "required": True}
    ],
    "return_values": [{"name": "final", "description": "the final result", "type": "str"}],
    "interim_results": [{"name": "iteration", "description": "index", "type": "int"}],
}


#: A traceback line of this package's own code: the command line crashed.
_OUR_FRAME = re.compile(r'File ".*prefect_qiskit_runtime[/\\]')


@dataclass
class Cli:
    """The command line as one user of one service."""

    url: str
    token: str
    ca_bundle: str | None = None

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a command with ``--url``/``--token``; it must never crash with a traceback.

        (A failed job's error is its program's traceback, from the job's own ``program.py``.)
        """
        extra = ["--ca-bundle", self.ca_bundle] if self.ca_bundle else []
        result = cli(*args, "--url", self.url, "--token", self.token, *extra, check=False)
        assert not _OUR_FRAME.search(result.stderr), result.stderr
        return result

    def ok(self, *args: str) -> str:
        """Run a command that must succeed; its stdout."""
        result = self(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def json(self, *args: str) -> Any:
        """Run a command with ``--json`` that must succeed; its parsed stdout."""
        return json.loads(self.ok(*args, "--json"))

    def fails(self, *args: str, code: int = 1) -> str:
        """Run a command that must exit with ``code``; its stderr."""
        result = self(*args)
        assert result.returncode == code, (result.stdout, result.stderr)
        return result.stderr


@pytest.fixture
def user(fresh: Api) -> Cli:
    """A new uploader's command line on the session service."""
    return Cli(fresh.url, fresh.token)


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_program_upload_show_update_visibility_delete(user: Cli, tmp_path: Path) -> None:
    """A program's whole life through the CLI, with metadata in the flat and in the spec form."""
    source = tmp_path / "publisher.py"
    source.write_text(PUBLISHER)
    flat = tmp_path / "flat.json"
    name = unique("cli-flat")
    flat.write_text(json.dumps({"name": name, **FLAT_METADATA}))

    program_id = user.json("programs", "upload", str(source), "--metadata", str(flat))["id"]
    shown = user.json("programs", "show", program_id)
    assert shown["program_id"] == program_id and shown["name"] == name
    assert shown["max_execution_time"] == 60 and shown["is_public"] is False
    assert shown["parameters"]["properties"]["iterations"]["type"] == "integer"
    assert shown["parameters"]["required"] == ["iterations"]
    assert "iteration" in shown["interim_results"]["properties"]
    table = user.ok("programs", "show", program_id)
    assert name in table and "iterations" in table and "publishes its iterations" in table
    # The metadata's required input is enforced by the service.
    assert "iterations" in user.fails("jobs", "run", program_id)

    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "name": "overridden",
                "description": "spec form",
                "max_execution_time": 100,
                "spec": {"parameters": {"type": "object", "properties": {"sleep": {}}}},
            }
        )
    )
    flags = ("--name", unique("cli-spec"), "--max-execution-time", "30", "--public")
    second = user.ok("programs", "upload", str(source), "--metadata", str(spec), *flags).strip()
    shown = user.json("programs", "show", second)
    assert shown["name"] == flags[1] and shown["max_execution_time"] == 30
    assert shown["is_public"] is True and shown["description"] == "spec form"
    assert "sleep" in shown["parameters"]["properties"]
    listed = {p["program_id"] for p in user.json("programs", "list")}
    assert {program_id, second} <= listed and "hello-world" in listed

    new_source = tmp_path / "new.py"
    new_source.write_text("def main(backend, user_messenger, **kwargs):\n    return 'v2'\n")
    user.ok("programs", "update", program_id, "--description", "edited")
    user.ok(
        "programs", "update", program_id, "--max-execution-time", "90", "--data", str(new_source)
    )
    shown = user.json("programs", "show", program_id)
    assert shown["description"] == "edited" and shown["max_execution_time"] == 90
    assert "return 'v2'" in user.ok("programs", "show", program_id, "--source")
    assert "nothing to update" in user.fails("programs", "update", program_id, code=2)

    user.ok("programs", "visibility", program_id, "public")
    assert user.json("programs", "show", program_id)["is_public"] is True
    done = user.json("programs", "visibility", program_id, "private")
    assert done == {"id": program_id, "done": "made private"}
    assert user.json("programs", "show", program_id)["is_public"] is False
    user.fails("programs", "visibility", program_id, "shared", code=2)

    for pid in (program_id, second):
        assert user.ok("programs", "delete", pid).strip() == f"deleted {pid}"
    assert "not found" in _one_line(user.fails("programs", "show", program_id)).lower()
    user.fails("programs", "delete", program_id)


def test_upload_refused_without_the_right(service: RunningService, tmp_path: Path) -> None:
    """A user who may not upload gets exit 1 and the service's reason."""
    bob = Cli(service.url, service.add_user("bob", can_upload=False))
    source = tmp_path / "p.py"
    source.write_text(PUBLISHER)
    flags = ("--name", unique("bob"), "--description", "d", "--max-execution-time", "10")
    assert "403" in bob.fails("programs", "upload", str(source), *flags)
    missing = bob.fails("programs", "upload", str(source), "--name", "x", code=2)
    assert "description" in missing


def test_jobs_run_wait_result_show_list_delete(user: Cli, fresh: Api, tmp_path: Path) -> None:
    """``jobs run`` (inline and ``@file`` inputs, ``--wait``), ``result``, ``show``, ``list``,
    ``logs`` and ``delete``; a failing job's commands exit 1 with its error."""
    program = fresh.upload(PUBLISHER)
    out = user.ok("jobs", "run", program, "--inputs", '{"iterations": 2, "final": "bar"}', "--wait")
    waited_id, result = out.strip().splitlines()
    assert result == "bar"

    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"iterations": 3, "final": {"x": [1, 2]}}))
    submitted = user.json("jobs", "run", program, "--inputs", f"@{inputs}")
    job_id = submitted["id"]
    assert submitted["program_id"] == program and submitted["backend"] == "aer_simulator"
    outcome = user.json("jobs", "result", job_id)
    assert outcome == {"id": job_id, "status": "COMPLETED", "result": {"x": [1, 2]}}
    assert json.loads(user.ok("jobs", "result", job_id)) == {"x": [1, 2]}
    shown = user.json("jobs", "show", job_id)
    assert shown["status"] == "COMPLETED" and shown["program"]["id"] == program
    assert shown["params"] == {"iterations": 3, "final": {"x": [1, 2]}}
    assert shown["message_count"] == 3
    assert "COMPLETED" in user.ok("jobs", "show", job_id)
    listed = user.json("jobs", "list")
    assert [j["id"] for j in listed] == [job_id, waited_id]
    assert all(j["status"] == "COMPLETED" for j in listed)
    assert user.json("jobs", "list", "--pending") == []

    logged = fresh.upload("def main(backend, user_messenger):\n    print('to the log')\n")
    logged_id = user.ok("jobs", "run", logged, "--wait").splitlines()[0]
    assert "to the log" in user.ok("logs", logged_id)

    assert user.json("jobs", "delete", job_id) == {"id": job_id, "done": "deleted"}
    assert "not found" in _one_line(user.fails("jobs", "show", job_id)).lower()

    failing = fresh.upload(FAILING)
    error = user.fails("jobs", "run", failing, "--wait")
    assert "failed" in error and "no-such-input" in error
    failed_id = user.json("jobs", "list", "--limit", "1")[0]["id"]
    result = user(*("jobs", "result", failed_id, "--json"))
    assert result.returncode == 1
    body = json.loads(result.stdout)
    assert body["status"] == "FAILED" and body["reason_code"] == "PROGRAM_ERROR"
    assert "no-such-input" in body["error"]


def test_usage_errors_exit_2(user: Cli, tmp_path: Path) -> None:
    """Malformed inputs never reach the service: exit 2 and one line."""
    assert "not JSON" in _one_line(
        user.fails("jobs", "run", "hello-world", "--inputs", "{x", code=2)
    )
    assert "object" in user.fails("jobs", "run", "hello-world", "--inputs", "[1]", code=2)
    missing = tmp_path / "missing.json"
    assert "missing.json" in user.fails("jobs", "run", "x", "--inputs", f"@{missing}", code=2)
    no_id = cli("jobs", "show", check=False)
    assert no_id.returncode == 2 and "job_id" in no_id.stderr


def test_cancel_a_long_job(user: Cli, fresh: Api) -> None:
    """``jobs cancel`` stops a running job; its result, watch and a second cancel follow."""
    job_id = user.json("jobs", "run", fresh.upload(SLEEPER))["id"]
    fresh.wait_running(job_id)
    assert user.ok("jobs", "cancel", job_id).strip() == f"cancelled {job_id}"
    assert user.json("jobs", "show", job_id)["status"] == "CANCELLED"
    assert "cancelled" in user.fails("jobs", "result", job_id)
    watched = user("jobs", "watch", job_id)
    assert watched.returncode == 1 and "CANCELLED" in watched.stdout
    assert '{"started": true}' in watched.stdout
    user.ok("jobs", "cancel", job_id)  # cancelling a cancelled job succeeds
    done = fresh.run(fresh.upload(PUBLISHER), {"iterations": 0})
    fresh.wait(done)
    assert "COMPLETED" in _one_line(user.fails("jobs", "cancel", done))


def test_watch_shows_interim_results_while_the_job_runs(user: Cli, fresh: Api) -> None:
    """``jobs watch`` prints each interim result as it is published (the job is still held at its
    gate when the first one appears), then the final result, and exits 0."""
    with socket.create_server(("127.0.0.1", 0)) as gate:
        gate.settimeout(120)
        port = gate.getsockname()[1]
        job_id = fresh.run(fresh.upload(GATED), {"port": port})
        command = [sys.executable, "-m", "prefect_qiskit_runtime.cli", "jobs", "watch", job_id]
        proc = subprocess.Popen(
            [*command, "--url", user.url, "--token", user.token],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout or []])
        reader.start()
        try:
            first = lines.get(timeout=120)
            assert first.strip() == '[1] {"iteration": 1, "iterations": 3}'
            assert fresh.job(job_id)["status"] == "RUNNING"  # held at the gate: seen live
            connection, _ = gate.accept()
            with connection:
                connection.sendall(b"go")
            assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        reader.join(timeout=30)
    rest = "".join(lines.get_nowait() for _ in range(lines.qsize()))
    assert '[2] {"iteration": 2, "iterations": 3}' in rest
    assert '[3] {"iteration": 3, "iterations": 3}' in rest
    assert f"{job_id} COMPLETED" in rest and "(3 interim results)" in rest
    assert json.loads(rest[rest.index("{", rest.index("COMPLETED")) :]) == {"answer": 42}
    assert not _OUR_FRAME.search(proc.stderr.read() if proc.stderr else "")


def test_watch_json_of_an_ended_job(user: Cli, fresh: Api) -> None:
    """``jobs watch --json`` of a job that has already ended: one JSON document a line, the
    interim results in order, then the outcome."""
    job_id = fresh.run(fresh.upload(PUBLISHER), {"iterations": 2, "final": "done"})
    fresh.wait(job_id)
    lines = [json.loads(line) for line in user.ok("jobs", "watch", job_id, "--json").splitlines()]
    assert lines == [
        {"seq": 1, "interim": {"iteration": 0}},
        {"seq": 2, "interim": {"iteration": 1}},
        {"id": job_id, "status": "COMPLETED", "result": "done"},
    ]


def test_backends_list(user: Cli) -> None:
    """``backends list`` names every backend with its qubits and whether it is noisy."""
    backends = {b["name"]: b for b in user.json("backends", "list")}
    assert backends["aer_simulator"]["n_qubits"] == 30
    assert backends["aer_simulator"]["noisy"] is False
    assert backends["fake_5q_device"]["n_qubits"] == 5
    assert backends["fake_5q_device"]["noisy"] is True
    table = user.ok("backends", "list")
    assert "aer_simulator" in table and "fake_27q_device" in table and " 27 " in table


def test_wrong_token_and_unreachable_url(service: RunningService) -> None:
    """A refused token and an unreachable URL: exit 1 and one line each, no traceback."""
    refused = _one_line(Cli(service.url, "pqr_not-a-token").fails("backends", "list"))
    assert "token" in refused and service.url in refused
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        free = f"http://127.0.0.1:{probe.getsockname()[1]}"
    unreachable = _one_line(Cli(free, "pqr_x").fails("jobs", "show", "some-job"))
    assert "unreachable" in unreachable and free in unreachable


def test_environment_names_the_service(service: RunningService) -> None:
    """``PREFECT_QISKIT_RUNTIME_URL``/``_TOKEN`` stand for ``--url``/``--token``."""
    env = {
        "PREFECT_QISKIT_RUNTIME_URL": service.url,
        "PREFECT_QISKIT_RUNTIME_TOKEN": service.add_user("alice"),
    }
    result = cli("backends", "list", "--json", env=env)
    assert "aer_simulator" in {b["name"] for b in json.loads(result.stdout)}
    refused = cli("backends", "list", check=False, env={**env, "PREFECT_QISKIT_RUNTIME_TOKEN": "x"})
    assert refused.returncode == 1 and "token" in refused.stderr


def test_embedded_service_by_default() -> None:
    """Without ``--url`` nor the environment, commands use this user's embedded service."""
    result = cli("jobs", "run", "hello-world", "--inputs", '{"iterations": 1}', "--wait", "--json")
    assert json.loads(result.stdout)["result"] == "All done!"
    status = json.loads(cli("server", "status").stdout)
    assert status["url"].startswith("http://127.0.0.1:")


def test_tls_ca_bundle_and_insecure(tmp_path: Path) -> None:
    """``--ca-bundle`` trusts a self-signed service; without it the command fails in one line;
    ``--insecure`` skips the check without a warning per request."""
    svc = start_service(tmp_path / "tls-home", "--tls-self-signed", "--workers", "1")
    try:
        token = svc.add_user("tls-cli")
        cert = str(svc.home / "tls" / "cert.pem")
        trusted = Cli(svc.url, token, ca_bundle=cert)
        assert "aer_simulator" in {b["name"] for b in trusted.json("backends", "list")}
        outcome = trusted.json("jobs", "run", "hello-world", "--wait")
        assert outcome["result"] == "All done!"
        refused = _one_line(Cli(svc.url, token).fails("backends", "list"))
        assert "certificate" in refused
        insecure = Cli(svc.url, token)("backends", "list", "--insecure", "--json")
        assert insecure.returncode == 0 and insecure.stderr == ""
    finally:
        stop_service(svc)


def test_progress_convention_and_the_live_view() -> None:
    """The progress ``jobs watch`` reads from interim results, and the view that shows it."""
    from rich.console import Console

    from prefect_qiskit_runtime.cli.watch import ProgressTracker, WatchState

    hello = ProgressTracker({"iterations": 4})  # hello-world: from 0, total in the inputs
    assert [hello.update({"iteration": i, "counts": {}}) for i in range(2)] == [(1, 4), (2, 4)]
    vqe = ProgressTracker({"maxiter": 3})  # vqe/qaoa: from 1, capped at maxiter
    assert [vqe.update({"iteration": i, "energy": -1.0}) for i in (1, 2, 5)] == [
        (1, 3),
        (2, 3),
        (3, 3),
    ]
    own = ProgressTracker({})
    assert own.update({"iteration": 1, "maxiter": 10}) == (1, 10)
    assert own.update({"iteration": 2}) == (2, None)  # no total anywhere: a count
    assert own.update({"progress": 0.4}) == (0.4, 1.0)
    assert own.update({"progress": 40}) is None  # not a fraction
    assert own.update("text") is None and own.update({"iteration": True}) is None

    state = WatchState("job-1", "hello-world", "aer_simulator", status="RUNNING")
    state.add({"iteration": 0, "counts": {"00": 3}}, hello)
    console = Console(record=True, width=120)
    console.print(state.render())
    view = console.export_text()
    assert "RUNNING" in view and "hello-world on aer_simulator" in view
    assert "1/4" in view and '{"iteration": 0, "counts": {"00": 3}}' in view
    state.add({"progress": 0.5}, hello)
    console.print(state.render())
    assert "50%" in console.export_text()
