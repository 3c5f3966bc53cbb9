"""Fixtures of the client tests: ``RuntimeService`` clients of the session's real service, and the
small programs the tests upload."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from client_support import DOUBLER, STREAMER, WAITER, Uploader, unique
from service_helpers import RunningService

from prefect_qiskit_runtime.client import RuntimeService


@pytest.fixture(scope="session")
def alice(service: RunningService) -> Iterator[RuntimeService]:
    """A client of the session service, authenticated as ``alice`` (may upload)."""
    with RuntimeService(service.url, service.add_user("alice")) as client:
        yield client


@pytest.fixture(scope="session")
def bob(service: RunningService) -> Iterator[RuntimeService]:
    """A client authenticated as ``bob`` (may not upload)."""
    with RuntimeService(service.url, service.add_user("bob", can_upload=False)) as client:
        yield client


@pytest.fixture(scope="session")
def upload(alice: RuntimeService) -> Uploader:
    """Upload a program as alice under a unique name and return its id."""

    def _upload(source: str, prefix: str = "client-test", **meta: object) -> str:
        meta.setdefault("max_execution_time", 120)
        meta.setdefault("description", "client test program")
        return alice.upload_program(data=source, name=unique(prefix), **meta)  # type: ignore[arg-type]

    return _upload


@pytest.fixture(scope="session")
def doubler(upload: Uploader) -> str:
    """Id of a program whose result is twice its input ``x``."""
    return upload(DOUBLER, "doubler")


@pytest.fixture(scope="session")
def streamer(upload: Uploader) -> str:
    """Id of a program that publishes ``n`` interim results."""
    return upload(STREAMER, "streamer")


@pytest.fixture(scope="session")
def waiter(upload: Uploader) -> str:
    """Id of a program that runs until a gate file exists."""
    return upload(WAITER, "waiter")
