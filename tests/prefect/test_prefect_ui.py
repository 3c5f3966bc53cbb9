"""The Prefect UI really shows a loop's convergence chart: a headless Chromium on a full server.

The session's ``prefect_test_harness`` serves no UI, so this module starts ``prefect server start``
with the UI (its own home, analytics off), runs a short client-side VQE against it, opens the
loop's convergence artifact in both of Prefect 3.8's UIs (v1 under ``/``, where the "View at" links
of Prefect's logs lead, and v2 under ``/v2``, where ``/`` redirects) and checks that the chart's
``<img>`` loaded and is laid out. Screenshots go to the test's temporary directory.

Chromium is the Debian package ``chromium`` (``.ci/run`` installs it). Without it the test fails,
unless ``PQR_SKIP_BROWSER=1`` says to skip it.
"""

# Prefect types flows returning Any as possibly coroutines or states.
# mypy: disable-error-code="misc,attr-defined"

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chromium_devtools import Chromium, find_chromium
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_helpers import embedded_png_sizes, full_prefect_server, wait_for

#: The charts (data-URI PNGs) on the page: whether each loaded, its pixel size and laid-out size.
CHARTS_JS = """
[...document.querySelectorAll('img')]
  .filter((img) => img.src.startsWith('data:image/png;base64,'))
  .map((img) => {
    const box = img.getBoundingClientRect();
    return {loaded: img.complete && img.naturalWidth > 0, alt: img.alt,
            natural: [img.naturalWidth, img.naturalHeight], shown: [box.width, box.height]};
  })
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser's path; a clear failure (or a skip with ``PQR_SKIP_BROWSER=1``) without it."""
    path = find_chromium()
    if path is None:
        if os.environ.get("PQR_SKIP_BROWSER") == "1":
            pytest.skip("Chromium is not on PATH and PQR_SKIP_BROWSER=1")
        pytest.fail(
            "Chromium is not on PATH: install the Debian package `chromium` (.ci/run does), set "
            "CHROMIUM to the browser's path, or set PQR_SKIP_BROWSER=1 to skip this test",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def ui_server(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A full Prefect server with its UI; yields its API URL (after checking for the browser)."""
    with full_prefect_server(tmp_path_factory.mktemp("prefect-ui-server"), ui=True) as url:
        yield url


def _vqe_convergence_artifact(ui_server: str, credentials: Any) -> Any:
    """Run a short client-side VQE against ``ui_server``; its convergence artifact."""
    import vqe

    from prefect_qiskit_runtime.prefect.blocks import QiskitRuntimeBackend

    with temporary_settings({PREFECT_API_URL: ui_server}):
        # A fresh block: saving the session's would tie its document ids to this server.
        QiskitRuntimeBackend(
            credentials=credentials.model_copy(), backend_name="aer_simulator"
        ).save("ui-test-backend", overwrite=True)
        state = vqe.vqe_client_side(maxiter=25, backend_block="ui-test-backend", return_state=True)
        assert state.is_completed(), state
        with get_client(sync_client=True) as client:
            (artifact,) = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["h2-vqe-0-735-convergence"])
                ),
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
                ),
            )
    return artifact


def test_the_ui_shows_the_convergence_chart(
    chromium: str, ui_server: str, credentials: Any, flows_on_path: Path, tmp_path: Path
) -> None:
    artifact = _vqe_convergence_artifact(ui_server, credentials)
    assert embedded_png_sizes(artifact.data) == [(640, 360)]
    root = ui_server.removesuffix("/api")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    with Chromium(chromium, profile) as browser:
        for ui, base in (("v1", ""), ("v2", "/v2")):
            browser.navigate(f"{root}{base}/artifacts/artifact/{artifact.id}")

            def charts() -> list[dict[str, Any]] | None:
                found = browser.evaluate(CHARTS_JS)
                return found if found and all(c["loaded"] for c in found) else None

            shown = wait_for(charts, 60, f"the chart to load in the {ui} UI")
            shot = browser.screenshot(tmp_path / f"convergence-{ui}.png")
            assert len(shown) == 1, shown
            chart = shown[0]
            assert chart["natural"] == [640, 360], chart
            assert chart["shown"][0] > 100 and chart["shown"][1] > 50, chart  # laid out, visible
            assert chart["alt"].startswith("Convergence of h2-vqe-0.735"), chart
            assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
