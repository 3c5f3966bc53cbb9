"""Hybrid loops as observable, resumable Prefect runs.

:func:`minimize` runs a SciPy optimizer whose every cost evaluation is one Prefect task run named
``iteration-{k}``. After each evaluation the parameters and the value are appended to a checkpoint,
so a retried or restarted flow run resumes where the last one stopped. Progress (a progress artifact
and a ``prefect-qiskit-runtime.loop.progress`` event) is throttled to about once a second. The
convergence artifact (one markdown artifact per loop, keyed ``<name>-convergence``) holds a PNG
chart of the value of every evaluation and the best so far; it appears ``plot_interval`` seconds (5
by default) into the loop, is redrawn in place at most that often, and ends as the full report:
chart, summary, a plain-text chart and the history table.

How resuming works: SciPy optimizers cannot be paused, but the deterministic ones (COBYLA,
Nelder-Mead, Powell, BFGS, L-BFGS-B, SLSQP...) ask for the same points when fed the same values. On
resume the loop answers the first ``n`` requests from the checkpoint, without task runs or jobs, as
long as each requested point matches the recorded one; from there on it evaluates for real. If a
point differs (a stochastic optimizer), the checkpoint is cut at that point and the loop continues
live from there.

Where checkpoints live: by default a JSON-lines file per loop key under
``$PREFECT_HOME/qiskit-runtime/checkpoints``. One appended line per iteration costs well under a
millisecond, survives a crash of the process (a torn last line is ignored), and needs no API call,
whereas a Prefect Variable costs an API round trip per iteration and limits the value's size. For a
loop whose retries may land on another machine, pass a :class:`BlockCheckpointStore` over any
Prefect ``WritableFileSystem`` block (S3, GCS, SMB, a shared ``LocalFileSystem``).

:func:`estimator_cost` builds the usual cost function: one ``estimator`` job per evaluation, with an
idempotency key derived from the iteration's task run, so a retried iteration never runs twice.

The modules: ``driver`` (:func:`minimize`, :class:`LoopResult`), ``evaluation`` (the objective:
replay, then one task run per evaluation), ``checkpoints`` (the stores and the record format),
``reporting`` (progress, events, the convergence artifact) and ``estimator`` (the cost function).
"""

from __future__ import annotations

from prefect_qiskit_runtime.prefect.loops.checkpoints import (
    BlockCheckpointStore,
    CheckpointStore,
    LocalCheckpointStore,
)
from prefect_qiskit_runtime.prefect.loops.checkpoints import (
    default_checkpoint_dir as default_checkpoint_dir,
)
from prefect_qiskit_runtime.prefect.loops.driver import LoopResult, minimize
from prefect_qiskit_runtime.prefect.loops.estimator import EstimatorCost, estimator_cost
from prefect_qiskit_runtime.prefect.loops.estimator import expectation_value as expectation_value
from prefect_qiskit_runtime.prefect.loops.reporting import ascii_chart as ascii_chart
from prefect_qiskit_runtime.prefect.loops.reporting import render_convergence_markdown
from prefect_qiskit_runtime.prefect.loops.session import SessionEstimatorCost

__all__ = [
    "BlockCheckpointStore",
    "CheckpointStore",
    "EstimatorCost",
    "LocalCheckpointStore",
    "LoopResult",
    "SessionEstimatorCost",
    "estimator_cost",
    "minimize",
    "render_convergence_markdown",
]
