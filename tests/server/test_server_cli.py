"""The command line: ``users add``, the admin listings, ``server start`` with TLS, the idle timeout
and a clean stop."""

from __future__ import annotations

import ipaddress
import json
import ssl
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from cryptography import x509
from server_helpers import PUBLISHER, Api, make_api
from service_helpers import RunningService, cli, start_service, stop_service
from websockets.sync.client import connect


def test_version_and_help() -> None:
    assert cli("--version").stdout.strip().endswith("0.1.0")
    assert "server" in cli("--help").stdout
    bad = cli("server", "start", "--tls-cert", "only-a-cert.pem", check=False)
    assert bad.returncode != 0 and "--tls-key" in bad.stderr


def test_embedded_status_and_stop_of_an_empty_home(tmp_path: Path) -> None:
    """``server status`` / ``server stop`` act on the embedded service of a home (none here)."""
    status = cli("server", "status", "--home", str(tmp_path), check=False)
    assert status.returncode == 1 and "not running" in status.stdout
    stop = cli("server", "stop", "--home", str(tmp_path))
    assert "not running" in stop.stdout


def test_users_add_prints_the_token_last(service: RunningService) -> None:
    """Each ``users add`` prints a fresh token as its last line; every token of a user works."""
    first = (
        cli("users", "add", "carol", "--home", str(service.home)).stdout.strip().splitlines()[-1]
    )
    second = cli("users", "add", "carol", "--can-upload", "--home", str(service.home))
    token2 = second.stdout.strip().splitlines()[-1]
    assert first != token2 and first.startswith("pqr_")
    for token in (first, token2):
        api = Api(service.url, token)
        assert api.get("/programs", params={"limit": 1}).status_code == 200
    # The second call granted upload rights to the existing user.
    assert Api(service.url, first).upload(PUBLISHER)
    assert "carol" in cli("users", "list", "--home", str(service.home)).stdout
    refused = cli("users", "add", "system", "--home", str(service.home), check=False)
    assert refused.returncode != 0


def test_users_revoke_one_token_or_all(service: RunningService) -> None:
    """A revoked token is refused once the service's cache forgets it (a logout does it at once);
    the user's other tokens keep working until they are revoked too."""
    home = ("--home", str(service.home))
    tokens = [cli("users", "add", "dave", *home).stdout.strip().splitlines()[-1] for _ in range(3)]
    for token in tokens:  # each one checked, so the service trusts it from its cache
        assert Api(service.url, token).get("/programs").status_code == 200

    def refused(token: str) -> bool:
        api = Api(service.url, token)
        assert api.request("POST", "/logout").status_code in (200, 204, 401)
        return api.get("/programs").status_code == 401

    one = cli("users", "revoke", "dave", "--token", tokens[0], *home)
    assert "Revoked 1 token" in one.stdout
    assert refused(tokens[0]) and not refused(tokens[1])
    again = cli("users", "revoke", "dave", "--token", tokens[0], *home, check=False)
    assert again.returncode != 0 and "not one of 'dave'" in again.stderr
    rest = cli("users", "revoke", "dave", *home)
    assert "Revoked 2 token" in rest.stdout
    assert refused(tokens[1]) and refused(tokens[2])
    nobody = cli("users", "revoke", "nobody", *home, check=False)
    assert nobody.returncode != 0 and "No user named 'nobody'" in nobody.stderr


def test_admin_listings(service: RunningService, alice: Api) -> None:
    """``programs list``, ``jobs list`` and ``logs`` read the store of a home directly."""
    job_id = alice.run(alice.upload(PUBLISHER, "cli-listed"), {"iterations": 0})
    alice.wait(job_id)
    home = str(service.home)
    assert "hello-world" in cli("programs", "list", "--home", home).stdout
    assert "cli-listed" in cli("programs", "list", "--home", home).stdout
    assert job_id in cli("jobs", "list", "--home", home, "--limit", "200").stdout
    logged = alice.run(
        alice.upload("def main(backend, user_messenger):\n    print('to the log')\n")
    )
    alice.wait(logged)
    assert "to the log" in cli("logs", logged, "--home", home).stdout
    assert cli("logs", "nope", "--home", home, check=False).returncode == 1


def test_tls_self_signed(tmp_path: Path) -> None:
    """``--tls-self-signed``: https and wss with a certificate for localhost and 127.0.0.1, created
    once (key 0600) and reused on the next start."""
    home = tmp_path / "tls-home"
    svc = start_service(home, "--tls-self-signed", "--workers", "1")
    cert_path, key_path = home / "tls" / "cert.pem", home / "tls" / "key.pem"
    try:
        assert svc.url.startswith("https://127.0.0.1:")
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "localhost" in names.get_values_for_type(x509.DNSName)
        assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
        api = make_api(svc, "tls-user")
        api.verify = str(cert_path)
        me = requests.get(
            svc.url + "/api/users/me",
            headers={"X-Access-Token": api.token},
            verify=api.verify,
            timeout=30,
        ).json()
        assert me["urls"]["services"]["runtime"] == svc.url + "/runtime"
        assert me["urls"]["ws"].startswith("wss://")
        job_id = api.run(api.upload(PUBLISHER), {"iterations": 2})
        context = ssl.create_default_context(cafile=str(cert_path))
        wss = "wss" + svc.url[len("https") :] + f"/runtime/stream/jobs/{job_id}"
        with connect(wss, ssl=context, additional_headers={"X-Access-Token": api.token}) as ws:
            frames = [ws.recv(timeout=120) for _ in range(3)]
        assert frames[0] == "ACK" and json.loads(frames[1]) == {"iteration": 0}
        first_cert = cert_path.read_bytes()
        api.session.close()  # an idle TLS connection would hold the graceful stop until its timeout
    finally:
        assert stop_service(svc) == 0
    svc = start_service(home, "--tls-self-signed", "--workers", "1")
    try:
        assert cert_path.read_bytes() == first_cert
        health = requests.get(svc.url + "/health", verify=str(cert_path), timeout=30)
        assert health.json()["status"] == "ok"
    finally:
        stop_service(svc)


def test_idle_timeout_exits_cleanly(tmp_path: Path) -> None:
    """``--idle-timeout``: with no request and no running job the service stops by itself."""
    home = tmp_path / "idle-home"
    svc = start_service(home, "--idle-timeout", "1", "--workers", "1")
    assert svc.process.wait(timeout=120) == 0
    assert not (home / "ready.json").exists()
    assert "idle for" in svc.log_path.read_text()


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_status_and_stop_find_a_service_started_in_the_foreground(
    tmp_path: Path, tls: bool
) -> None:
    """``server status/stop --home`` act on a service that ``server start --home`` started."""
    home = tmp_path / "served"
    before = datetime.now(timezone.utc).replace(microsecond=0)
    svc = start_service(home, *(["--tls-self-signed"] if tls else []))
    try:
        status = cli("server", "status", "--home", str(home))
        info = json.loads(status.stdout)
        assert info["pid"] == svc.process.pid and info["url"] == svc.url
        started = datetime.fromisoformat(info["started"])
        assert before <= started <= datetime.now(timezone.utc)
        assert info["uptime_seconds"] >= 0 and info["version"]
        stopped = cli("server", "stop", "--home", str(home))
        assert stopped.stdout.strip() == "stopped"
        assert svc.process.wait(timeout=60) == 0
        again = cli("server", "status", "--home", str(home), check=False)
        assert again.returncode == 1 and "not running" in again.stdout
        assert not (home / "embedded.json").exists()
    finally:
        stop_service(svc)
