"""A headless Chromium driven over the DevTools protocol: just enough to look at the Prefect UI.

No Playwright or Selenium: they download their own browsers, and this machine reaches nothing but
package registries. Chromium (the Debian package, installed by ``.ci/run``) is started with
``--remote-debugging-port=0``; it picks a free port and writes it to ``DevToolsActivePort`` in its
profile directory. The first tab's websocket then takes JSON commands (``Page.navigate``,
``Runtime.evaluate``, ``Page.captureScreenshot``), each answered by a message with the same id;
the events it sends in between are skipped.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from prefect_helpers import wait_for
from websockets.sync.client import ClientConnection, connect

#: Names the Debian, Ubuntu and Google packages install the browser under.
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The browser's path: ``$CHROMIUM`` if set, else the first of :data:`CANDIDATES` on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


class Chromium:
    """One headless browser with one tab, for a ``with`` block.

    Args:
        executable: The browser (:func:`find_chromium`).
        profile: An empty directory for its profile; its stderr goes to ``profile/chromium.log``.
        size: The window's width and height in CSS pixels.
        timeout: Seconds to wait for the browser to start and for each command.
    """

    def __init__(
        self,
        executable: str,
        profile: Path,
        *,
        size: tuple[int, int] = (1280, 1000),
        timeout: float = 60.0,
    ) -> None:
        self.executable = executable
        self.profile = profile
        self.size = size
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._process: subprocess.Popen[bytes] | None = None
        self._ws: ClientConnection | None = None

    def __enter__(self) -> Chromium:
        log = (self.profile / "chromium.log").open("wb")
        flags = [
            "--headless=new",
            "--no-sandbox",  # its setuid sandbox refuses to run as root, as CI containers do
            "--disable-gpu",
            "--disable-dev-shm-usage",  # a container's /dev/shm is often 64 MB
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-port=0",
            f"--user-data-dir={self.profile}",
            f"--window-size={self.size[0]},{self.size[1]}",
        ]
        self._process = subprocess.Popen(
            [self.executable, *flags, "about:blank"], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()  # the child keeps its own descriptor
        try:
            port = wait_for(self._port, self.timeout, "Chromium to write DevToolsActivePort")
            tabs = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout).json()
            tab = next(t for t in tabs if t.get("type") == "page")
            self._ws = connect(
                tab["webSocketDebuggerUrl"], max_size=None, open_timeout=self.timeout
            )
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _port(self) -> int | None:
        assert self._process is not None
        if self._process.poll() is not None:
            log = (self.profile / "chromium.log").read_text(errors="replace")
            raise AssertionError(f"Chromium exited with {self._process.returncode}: {log}")
        active = self.profile / "DevToolsActivePort"
        lines = active.read_text().split() if active.exists() else []
        return int(lines[0]) if lines else None

    def close(self) -> None:
        """Close the connection and end the browser."""
        if self._ws is not None:
            self._ws.close()
            self._ws = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=30)
            self._process = None

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result.

        Raises:
            RuntimeError: The browser answered with an error.
        """
        assert self._ws is not None, "use Chromium in a with block"
        call_id = next(self._ids)
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=self.timeout))
            if message.get("id") != call_id:
                continue  # an event, or the answer to a command abandoned by a timeout
            if "error" in message:
                raise RuntimeError(f"{method}: {message['error']}")
            result: dict[str, Any] = message.get("result", {})
            return result

    def navigate(self, url: str) -> None:
        """Open ``url`` in the tab (returns once the navigation started, not when it loaded)."""
        answer = self.call("Page.navigate", url=url)
        if answer.get("errorText"):
            raise RuntimeError(f"navigating to {url}: {answer['errorText']}")

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the tab (promises are awaited).

        Raises:
            RuntimeError: The expression threw.
        """
        answer = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression[:80]}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the tab's viewport at ``path``."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path
