"""Helpers of the Prefect-layer tests: polling, a full Prefect server, charts inside artifacts."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy (there is no event to wait on)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def embedded_png_sizes(markdown: str) -> list[tuple[int, int]]:
    """The pixel sizes of the PNGs embedded in ``markdown`` as ``data:`` URI images."""
    from PIL import Image

    sizes = []
    for data in re.findall(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown):
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            sizes.append(image.size)
    return sizes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def full_prefect_server(
    home: Path, *, ui: bool = False, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Run ``prefect server start`` with every service on, in its own home; yields its API URL.

    It takes about 20 s to answer on two cores (more with the UI, whose files it copies into the
    home first). Its log is ``home/server.log``; ``CI_SHOW_PREFECT_LOG=1`` prints it at the end.

    Args:
        home: Its ``PREFECT_HOME`` (and SQLite database).
        ui: Serve the UI too (both of Prefect 3.8's: v1 under ``/``, v2 under ``/v2``).
        env: More environment variables for the server.
    """
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    server_env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true" if ui else "false",
        # The UI's settings default to port 4200 whatever --port says.
        "PREFECT_UI_API_URL": url,
        **(env or {}),
    }
    server_env.pop("PREFECT_API_URL", None)
    log_path = home / "server.log"
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)], env=server_env, stdout=log, stderr=subprocess.STDOUT
        )

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"prefect server exited: {log_path.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{url}/health", timeout=2).status_code == 200
            return False

        try:
            wait_for(healthy, 180, "the Prefect server to answer /health")
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            if os.environ.get("CI_SHOW_PREFECT_LOG"):
                print(log_path.read_text())
