"""Blocks: Prefect's standard suite, save/load, client caching, no network at build or load."""

# Prefect types Block.load, and flows and tasks returning Any, as possibly coroutines or states.
# mypy: disable-error-code="union-attr"

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from prefect.utilities.dispatch import get_registry_for_type
from prefect.utilities.importtools import to_qualified_name

import prefect_qiskit_runtime.prefect.blocks  # noqa: F401 - registers the block classes
from prefect_qiskit_runtime.prefect.blocks import QiskitRuntimeBackend, QiskitRuntimeCredentials


def _our_blocks() -> list[type[Block]]:
    registry = get_registry_for_type(Block) or {}
    return [
        cls
        for cls in registry.values()
        if to_qualified_name(cls).startswith("prefect_qiskit_runtime.")
    ]


def test_the_blocks_are_registered_with_prefect() -> None:
    assert {cls.__name__ for cls in _our_blocks()} == {
        "QiskitRuntimeCredentials",
        "QiskitRuntimePlatformCredentials",
        "QiskitRuntimeBackend",
    }


@pytest.mark.parametrize("block", _our_blocks(), ids=lambda cls: cls.__name__)
class TestAllBlocksAdhereToStandards(BlockStandardTestSuite):
    """Prefect's own checks: description, documentation URL, field descriptions, code example."""

    @pytest.fixture
    def block(self, block: type[Block]) -> type[Block]:
        return block

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        try:
            urllib.request.urlopen(str(block._logo_url), timeout=5).close()
        except (urllib.error.URLError, OSError) as exc:
            pytest.skip(f"the logo check downloads {block._logo_url}; no internet here ({exc})")
        super().test_has_a_valid_image(block)


def test_save_and_load_round_trip() -> None:
    creds = QiskitRuntimeCredentials(
        url="https://runtime.example.org:8443/",
        token="s3cret-token",
        hub="local",
        group="default",
        project="main",
        ca_bundle="/etc/ssl/runtime.pem",
    )
    backend = QiskitRuntimeBackend(
        credentials=creds,
        backend_name="fake_5q_device",
        default_inputs={"iterations": 2},
        options={"image": "custom:1"},
        log_level="INFO",
        max_execution_time=120,
        job_attempts=4,
        retry_delay_seconds=1.5,
        task_timeout_seconds=60,
    )
    backend.save("roundtrip-backend", overwrite=True)

    loaded = QiskitRuntimeBackend.load("roundtrip-backend")
    assert loaded.credentials.token is not None
    assert loaded.credentials.token.get_secret_value() == "s3cret-token"
    assert loaded.credentials.url == "https://runtime.example.org:8443/"
    assert (loaded.credentials.hub, loaded.credentials.ca_bundle) == (
        "local",
        "/etc/ssl/runtime.pem",
    )
    assert loaded.backend_name == "fake_5q_device"
    assert loaded.merge_inputs({"x": 1}) == {"iterations": 2, "x": 1}
    assert loaded.run_options({"log_level": "DEBUG"}) == {
        "backend_name": "fake_5q_device",
        "log_level": "DEBUG",
        "max_execution_time": 120,
        "image": "custom:1",
    }
    assert loaded.task_options() == {
        "retries": 3,
        "retry_delay_seconds": 1.5,
        "timeout_seconds": 60,
    }
    # The token never shows in a dump, a repr or the saved document's plain fields.
    assert "s3cret-token" not in repr(loaded) and "s3cret-token" not in str(loaded.model_dump())


def test_blank_fields_from_the_ui_mean_unset() -> None:
    creds = QiskitRuntimeCredentials(url="  ", hub="", ca_bundle="")
    assert creds.url is None and creds.hub is None and creds.ca_bundle is None


def test_building_saving_and_loading_make_no_runtime_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only ``get_client()`` may talk to the service; an unreachable URL must not matter before."""
    import requests

    calls: list[Any] = []
    monkeypatch.setattr(requests.Session, "request", lambda *a, **k: calls.append(a))
    creds = QiskitRuntimeCredentials(url="http://127.0.0.1:9", token="t")
    block = QiskitRuntimeBackend(credentials=creds, backend_name="aer_simulator")
    block.save("offline-backend", overwrite=True)
    loaded = QiskitRuntimeBackend.load("offline-backend")
    assert loaded.credentials.url == "http://127.0.0.1:9"
    assert calls == []


def test_get_client_is_cached_per_block_and_thread(credentials: QiskitRuntimeCredentials) -> None:
    block = credentials.model_copy(deep=True)
    first = block.get_client()
    assert block.get_client() is first
    assert first.url == credentials.url

    other: list[Any] = []
    thread = threading.Thread(target=lambda: other.append(block.get_client()))
    thread.start()
    thread.join()
    assert other[0] is not first  # requests sessions are not shared between threads

    block.request_timeout = 12.0  # a changed field means a new client
    assert block.get_client() is not first


def test_copies_and_pickles_carry_no_client(credentials: QiskitRuntimeCredentials) -> None:
    block = credentials.model_copy(deep=True)
    client = block.get_client()
    for clone in (copy.deepcopy(block), pickle.loads(pickle.dumps(block))):
        assert clone == block  # the cache is not part of a block's identity
        assert clone.get_client() is not client


def test_prefect_block_register_module(prefect_server: str) -> None:
    """``prefect block register -m prefect_qiskit_runtime`` registers both block types."""
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    out = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "prefect_qiskit_runtime"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 new blocks" in out.stdout.replace("\n", " ") or "Qiskit Runtime" in out.stdout

    from prefect import get_client

    with get_client(sync_client=True) as client:
        slugs = {bt.slug for bt in client.read_block_types()}
    assert {"qiskit-runtime-credentials", "qiskit-runtime-backend"} <= slugs
