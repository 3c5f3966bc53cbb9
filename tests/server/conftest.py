"""Fixtures of the service-core tests: raw HTTP clients for users and an extra service.

Everything talks to a real service over HTTP and websockets. The session ``service`` (workers 2,
users alice and bob) comes from ``tests/conftest.py``; ``capacity_service`` (workers 3) is this
area's own, for tests that need to know exactly how many jobs can run at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from server_helpers import Api, make_api, unique
from service_helpers import RunningService, start_service, stop_service


@pytest.fixture(scope="session")
def alice(service: RunningService) -> Api:
    """alice on the shared service: may upload."""
    return make_api(service, "alice", True)


@pytest.fixture(scope="session")
def bob(service: RunningService) -> Api:
    """bob on the shared service: may not upload."""
    return make_api(service, "bob", False)


@pytest.fixture
def fresh(service: RunningService) -> Iterator[Api]:
    """A brand-new uploader on the shared service (its job and program lists start empty)."""
    api = make_api(service, unique("user"), True)
    yield api
    api.cancel_pending()


@pytest.fixture(scope="session")
def capacity_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """A service of this area: exactly 3 workers, no plain-stream replay of ended jobs, and a memory
    limit of 256 MB per job."""
    svc = start_service(
        tmp_path_factory.mktemp("capacity-home"),
        "--workers",
        "3",
        "--stream-replay-grace",
        "0",
        "--memory-limit-mb",
        "256",
    )
    yield svc
    stop_service(svc)


@pytest.fixture
def cap_user(capacity_service: RunningService) -> Iterator[Api]:
    """A new uploader on ``capacity_service``; its pending jobs are cancelled afterwards."""
    api = make_api(capacity_service, unique("cap"), True)
    yield api
    api.cancel_pending()
