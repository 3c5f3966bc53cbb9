"""The example flows, run in-process against the test service (the main job first)."""

# Prefect types Block.load, and flows and tasks returning Any, as possibly coroutines or states.
# mypy: disable-error-code="attr-defined,operator"

from __future__ import annotations

import re
import statistics
import time
from typing import Any

import numpy as np
import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.sorting import FlowRunSort

CHEMICAL_ACCURACY = 1.6e-3


def test_h2_hamiltonian_matches_the_literature(flows_on_path: Any) -> None:
    import h2_molecule

    computed = dict(h2_molecule.h2_hamiltonian(0.735))
    literature = dict(h2_molecule.equilibrium_hamiltonian())
    assert computed.keys() == literature.keys()
    for label, value in literature.items():
        assert computed[label] == pytest.approx(value, abs=1e-7), label
    exact = h2_molecule.exact_ground_energy(h2_molecule.equilibrium_hamiltonian())
    assert exact == pytest.approx(-1.137306, abs=1e-6)
    # The stretched molecule tends to two hydrogen atoms (2 x -0.4666 Ha in STO-3G).
    far = h2_molecule.exact_ground_energy(h2_molecule.h2_hamiltonian(6.0))
    assert far == pytest.approx(-0.9332, abs=2e-3)


def test_vqe_main_job(flows_on_path: Any, saved_backend: str, poll: Any) -> None:
    """``flows/vqe.py``: both solutions within chemical accuracy, everything visible in Prefect."""
    import vqe

    @flow
    def main() -> tuple[dict[str, Any], Any]:
        from prefect.runtime import flow_run

        return vqe.vqe(backend_block=saved_backend), flow_run.id

    summary, parent_id = main()
    assert abs(summary["error"]) <= CHEMICAL_ACCURACY
    assert abs(summary["server_error"]) <= CHEMICAL_ACCURACY
    line = vqe.result_line(summary)
    assert re.fullmatch(
        r"VQE energy: -?\d+\.\d+ Ha, exact: -?\d+\.\d+ Ha, error: -?\d\.\d+e[-+]\d+ Ha", line
    ), line

    with get_client(sync_client=True) as client:
        loop_run = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["h2-vqe-client-side"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )[0]

        def iteration_runs() -> int:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[loop_run.id])), limit=200
            )
            return len([t for t in runs if t.name.startswith("iteration-")])

        # Task runs reach the API through events, a moment after they ran.
        poll(lambda: iteration_runs() >= summary["evaluations"], what="one task run per iteration")
        wanted = ["qiskit-runtime-job-metrics", "h2-vqe-0-735-convergence", "h2-vqe-summary"]
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=wanted))
        )
        assert {a.key for a in artifacts} == set(wanted)
        slugs = {bt.slug for bt in client.read_block_types()}
        assert {"qiskit-runtime-credentials", "qiskit-runtime-backend"} <= slugs
        parent = client.read_flow_run(parent_id)
        assert parent.state is not None and parent.state.is_completed()
        for name in ("h2-vqe", "h2-vqe-client-side", "h2-vqe-server-side"):
            latest = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[name])),
                sort=FlowRunSort.START_TIME_DESC,
                limit=1,
            )[0]
            assert latest.state is not None and latest.state.is_completed(), name


def test_prefect_overhead_per_iteration(flows_on_path: Any, backend: Any) -> None:
    """Measured, not asserted: one task run per iteration against the bare estimator call."""
    import vqe
    from qiskit.quantum_info import SparsePauliOp

    from prefect_qiskit_runtime.prefect.loops import estimator_cost, minimize

    cost = estimator_cost(
        backend, vqe.ansatz(), SparsePauliOp.from_list(vqe.equilibrium_hamiltonian())
    )
    points = [np.full(4, 0.1 * k) for k in range(15)]
    cost(points[0])  # warm the client's connection
    bare = []
    for p in points:
        t0 = time.perf_counter()
        cost(p)
        bare.append(time.perf_counter() - t0)

    @flow
    def loop() -> Any:
        return minimize(cost, [0.1] * 4, options={"maxiter": 15}, name="overhead")

    result = loop()
    looped = [r["seconds"] for r in result.history]
    overhead_ms = 1000 * (statistics.median(looped) - statistics.median(bare))
    print(
        f"\nper iteration: bare estimator {1000 * statistics.median(bare):.1f} ms, "
        f"as a Prefect task run {1000 * statistics.median(looped):.1f} ms, "
        f"overhead {overhead_ms:.1f} ms (medians of {len(bare)} and {len(looped)})"
    )
    assert result.evaluated == len(looped) > 0


def test_pipeline_dissociation_curve(flows_on_path: Any, saved_backend: str) -> None:
    import pipeline

    @flow
    def main() -> tuple[list[dict[str, Any]], Any]:
        from prefect.runtime import flow_run

        return pipeline.dissociation_curve([0.5, 0.735, 2.0], backend_block=saved_backend), (
            flow_run.id
        )

    points, run_id = main()
    assert [p["bond_length"] for p in points] == [0.5, 0.735, 2.0]
    assert all(abs(p["error"]) <= CHEMICAL_ACCURACY for p in points)
    assert min(points, key=lambda p: p["vqe"])["bond_length"] == 0.735
    with get_client(sync_client=True) as client:
        curve = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["h2-dissociation-curve"]))
        )
        assert curve and "| 0.735 |" in curve[-1].data
        subflows = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
        assert subflows[0].state is not None and subflows[0].state.is_completed()


def test_qaoa_maxcut(flows_on_path: Any, saved_backend: str, png_sizes: Any) -> None:
    import qaoa_maxcut

    state = qaoa_maxcut.qaoa_maxcut(backend_block=saved_backend, maxiter=60, return_state=True)
    out = state.result()
    assert out["exact_cut"] == 5.0
    assert out["ratio"] >= 0.8  # QAOA's sampled best cut on this small graph
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["qaoa-maxcut"])),
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            ),
        )
    # The sampled bitstrings and the energy per step, as two 640x360 charts.
    assert png_sizes(artifact.data) == [(640, 360), (640, 360)]
    probabilities = re.findall(r"^\| (\d+) \| ([\d.]+) \|$", artifact.data, re.M)
    assert probabilities[0][0] == "5" and sum(float(p) for _, p in probabilities) == pytest.approx(
        1.0, abs=0.01
    )


def test_circuit_runner_with_mitigation(flows_on_path: Any, saved_backend: str) -> None:
    import circuit_runner

    rows = circuit_runner.circuit_batch(sizes=[2, 3], shots=2000, backend_block=saved_backend)
    assert [r["circuit"] for r in rows] == ["ghz-2", "ghz-3"]
    for row in rows:
        assert 0.5 < row["raw"] <= 1.0 and 0.5 < row["mitigated"] <= 1.01


def test_custom_program_lifecycle(flows_on_path: Any, saved_backend: str, runtime: Any) -> None:
    import custom_program

    curve = custom_program.custom_program(points=4, shots=500, backend_block=saved_backend)
    assert len(curve) == 4
    assert curve[0][1] == pytest.approx(0.0, abs=0.05) and curve[-1][1] == pytest.approx(
        1.0, abs=0.05
    )
    assert "rabi-sweep" not in {p.name for p in runtime.programs(refresh=True, limit=None)}
