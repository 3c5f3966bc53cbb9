"""The reliability suite: faults, races, restarts and load against real services on 127.0.0.1.

Every test is bounded in time and traffic and records one line of figures with the ``figures``
fixture; the lines are printed together at the end of the run (and with ``-s`` as they come), so
that a CI log shows what was measured, not only that it passed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

_LINES: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this directory ``reliability`` (``-m reliability`` runs the suite)."""
    for item in items:
        if "/reliability/" in str(item.fspath):
            item.add_marker(pytest.mark.reliability)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[..., str]:
    """Record the figures of this test: ``figures("R1 lossy network", runs=40, lost=0)``."""

    def record(title: str, **values: Any) -> str:
        line = f"{title}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in values.items())
        _LINES.append(line)
        print(line)
        return line

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the recorded figures after the test results."""
    if _LINES:
        terminalreporter.section("reliability figures")
        for line in _LINES:
            terminalreporter.write_line(line)
