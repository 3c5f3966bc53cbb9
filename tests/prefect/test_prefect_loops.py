"""Hybrid loops: a task run per iteration, checkpoints, resume after an interruption, artifacts."""

# Prefect types Block.load, and flows and tasks returning Any, as possibly coroutines or states.
# mypy: disable-error-code="arg-type,attr-defined"

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest
import scipy.optimize
from prefect import flow, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.sorting import TaskRunSort

from prefect_qiskit_runtime.prefect.loops import (
    BlockCheckpointStore,
    LocalCheckpointStore,
    minimize,
    render_convergence_markdown,
)

OPTIONS = {"maxiter": 60, "rhobeg": 0.5}


def bowl(x: np.ndarray) -> float:
    """A smooth cost with its minimum at (1, -0.5)."""
    return float((x[0] - 1.0) ** 2 + 2.0 * (x[1] + 0.5) ** 2 + 0.1 * x[0] * x[1])


def _iteration_names(flow_run_id: Any) -> list[str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
        )
    return [r.name for r in runs if r.name.startswith("iteration-")]


def _current_flow_run_id() -> Any:
    from prefect.runtime import flow_run

    return flow_run.id


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path: Any, poll: Any) -> None:
    reference = scipy.optimize.minimize(bowl, [0.0, 0.0], method="COBYLA", options=OPTIONS)
    store = LocalCheckpointStore(tmp_path)

    @flow
    def loop(stop_after: int | None) -> tuple[Any, Any]:
        result = minimize(
            bowl,
            [0.0, 0.0],
            options=OPTIONS,
            name="bowl",
            loop_key="bowl-resume",
            checkpoints=store,
            stop_after=stop_after,
        )
        return result, _current_flow_run_id()

    state = loop(7, return_state=True)  # the first run "crashes" after 7 evaluations
    assert state.is_failed()
    assert len([r for r in store.load("bowl-resume") if r["type"] == "eval"]) == 7

    result, run_id = loop(None)
    assert result.replayed == 7
    assert result.evaluated == reference.nfev - 7
    assert result.nfev == reference.nfev
    np.testing.assert_allclose(result.x, reference.x, rtol=0, atol=1e-12)
    assert result.fun == pytest.approx(reference.fun, abs=1e-14)
    # One task run per evaluation of the resumed run, numbered where the first run stopped.
    # Task runs reach the API through events: the list fills in, and gets its names, shortly after.
    expected = [f"iteration-{k}" for k in range(7, reference.nfev)]
    poll(lambda: _iteration_names(run_id) == expected, what="the resumed run's task runs")
    records = store.load("bowl-resume")
    assert records[0]["type"] == "header" and records[-1]["type"] == "done"

    # A finished loop is not run again: its stored result comes back without task runs.
    again, run_id = loop(None)
    assert again.evaluated == 0 and again.fun == result.fun
    assert _iteration_names(run_id) == []  # nothing to wait for: no task run was ever created


def test_flow_retry_resumes_with_the_default_key() -> None:
    @flow(retries=1, retry_delay_seconds=0)
    def retried() -> Any:
        from prefect.runtime import flow_run

        first_attempt = flow_run.run_count == 1
        return minimize(bowl, [0.0, 0.0], options=OPTIONS, stop_after=4 if first_attempt else None)

    result = retried()
    assert result.replayed == 4 and result.evaluated == result.nfev - 4
    assert result.loop_key  # derived from the flow run, the same on its retry


def test_convergence_and_progress_artifacts(tmp_path: Any, png_sizes: Any) -> None:
    @flow
    def with_artifacts() -> Any:
        minimize(
            bowl,
            [0.0, 0.0],
            options=OPTIONS,
            name="bowl-artifacts",
            checkpoints=LocalCheckpointStore(tmp_path),
        )
        return _current_flow_run_id()

    run_id = with_artifacts()
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    by_type: dict[str, list[Any]] = {}
    for artifact in artifacts:
        by_type.setdefault(artifact.type, []).append(artifact)
    assert [a.key for a in by_type["markdown"]] == ["bowl-artifacts-convergence"]
    markdown = by_type["markdown"][0].data
    assert "## Convergence of `bowl-artifacts`" in markdown
    assert "| k | value | best so far |" in markdown and "```text" in markdown
    assert png_sizes(markdown) == [(640, 360)]
    assert [a.data for a in by_type["progress"]] == [100.0]  # one, updated, not one per iteration


def _convergence_artifacts(key: str) -> list[Any]:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )


def test_the_convergence_chart_is_redrawn_in_place_while_the_loop_runs(
    tmp_path: Any, png_sizes: Any
) -> None:
    seen: list[str] = []

    def watched(x: np.ndarray) -> float:
        # Runs in the iteration's task run: what the UI would show at that moment.
        if len(seen) < 3:
            seen.extend(a.data for a in _convergence_artifacts("watched-convergence"))
        return bowl(x)

    @flow
    def live() -> Any:
        return minimize(
            watched,
            [0.0, 0.0],
            options={"maxiter": 12, "rhobeg": 0.5},
            name="watched",
            checkpoints=LocalCheckpointStore(tmp_path),
            plot_interval=0.0,
        )

    live()
    # Before the first evaluation there is nothing; after it, one artifact, redrawn each time.
    assert [re.findall(r"evaluations so far: (\d+),", text) for text in seen] == [
        ["1"],
        ["2"],
        ["3"],
    ]
    assert "(running)" in seen[-1] and png_sizes(seen[-1]) == [(640, 360)]
    (final,) = _convergence_artifacts("watched-convergence")  # updated in place: one version
    assert "(running)" not in final.data and "| k | value |" in final.data


def test_a_diverging_replay_continues_live(tmp_path: Any) -> None:
    store = LocalCheckpointStore(tmp_path)

    @flow
    def loop(stop_after: int | None) -> Any:
        return minimize(
            bowl,
            [0.0, 0.0],
            options=OPTIONS,
            loop_key="diverge",
            checkpoints=store,
            stop_after=stop_after,
        )

    assert loop(6, return_state=True).is_failed()
    records = store.load("diverge")
    records[3]["params"] = [9.0, 9.0]  # as if a stochastic optimizer had asked elsewhere
    store.replace("diverge", records)
    result = loop(None)
    assert result.replayed == 2  # evaluations 0 and 1 match; 2 is the changed one
    evals = [r for r in store.load("diverge") if r["type"] == "eval"]
    assert [r["k"] for r in evals] == list(range(len(evals)))
    assert result.nfev == len(evals)


def test_render_convergence_markdown_keeps_long_histories_short() -> None:
    from prefect_qiskit_runtime.prefect.loops import LoopResult

    history = [
        {
            "k": k,
            "value": 1.0 / (k + 1),
            "best": 1.0 / (k + 1),
            "params": [0.1, 0.2],
            "seconds": 0.01,
        }
        for k in range(1000)
    ]
    result = LoopResult(
        x=np.array([0.1, 0.2]),
        fun=0.001,
        nfev=1000,
        evaluated=1000,
        replayed=0,
        history=history,
        success=True,
        message="ok",
        loop_key="long",
    )
    text = render_convergence_markdown(result, name="long", method="COBYLA", max_rows=100)
    table_rows = [line for line in text.splitlines() if line.startswith("| ") and "k |" not in line]
    assert len(table_rows) == 101  # 100 rows and the "omitted" marker
    assert "900 rows omitted" in text


def test_block_checkpoint_store_round_trip(tmp_path: Any) -> None:
    from prefect.filesystems import LocalFileSystem

    store = BlockCheckpointStore(LocalFileSystem(basepath=str(tmp_path)))
    assert store.load("k") == []
    store.append("k", {"type": "header"})
    store.append("k", {"type": "eval", "k": 0, "params": [1.0], "value": 2.0})
    fresh = BlockCheckpointStore(LocalFileSystem(basepath=str(tmp_path)))
    assert [r["type"] for r in fresh.load("k")] == ["header", "eval"]
    stored = json.loads((tmp_path / "qiskit-runtime-checkpoints" / "k.json").read_text())
    assert stored[1]["value"] == 2.0
