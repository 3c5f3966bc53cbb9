"""The chart of ``docs/benchmarks.md``: milliseconds per hybrid-loop iteration, per setting.

Usage: ``python benchmarks/chart.py REPORT.json OUT.png`` (``run.py --chart`` calls it too).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

#: (key in ``hybrid_loop``, label), from the limit to the comparison.
SERIES = (
    ("bare_ms", "bare Aer EstimatorV2\n(in process)"),
    ("server_loop_ms", "whole loop in one job\n(server loop)"),
    ("client_ms", "one job per iteration\n(RuntimeService)"),
    ("prefect_ms", "one task run + job\nper iteration (Prefect)"),
    ("prefect_qiskit_ms", "prefect-qiskit 0.2.1\nQuantumRuntime.estimator"),
)


def render_chart(report: dict[str, Any], path: Path) -> None:
    """Draw a horizontal bar chart (log scale) of the per-iteration costs and save it as PNG.

    Args:
        report: A report written by ``run.py``.
        path: The PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loop = report["hybrid_loop"]
    rows = [(label, loop.get(key)) for key, label in SERIES if loop.get(key) is not None]
    labels = [label for label, _ in rows]
    values = [float(value) for _, value in rows]
    bare = loop.get("bare_ms")
    colors = ["#7f7f7f", "#2ca02c", "#1f77b4", "#6a3d9a", "#d62728"][: len(rows)]
    fig, ax = plt.subplots(figsize=(8.0, 3.8), dpi=120)
    bars = ax.barh(labels, values, color=colors)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds per iteration (log scale)")
    machine = report.get("machine", {})
    ax.set_title(
        f"4-qubit estimator loop, {loop.get('iterations')} fixed points "
        f"({machine.get('cores')} cores, Python {machine.get('python')})",
        fontsize=10,
    )
    for bar, value in zip(bars, values, strict=True):
        ratio = f"  ({value / bare:.1f}x bare)" if bare else ""
        ax.text(
            value * 1.08,
            bar.get_y() + bar.get_height() / 2,
            f"{value:.1f} ms{ratio}",
            va="center",
            fontsize=8,
        )
    ax.set_xlim(right=max(values) * 12)
    ax.grid(axis="x", which="both", alpha=0.25)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    render_chart(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
