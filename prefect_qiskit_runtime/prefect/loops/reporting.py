"""What a loop shows in Prefect: throttled progress and events, then a convergence artifact."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from prefect_qiskit_runtime.prefect import _utils as pu

if TYPE_CHECKING:
    from prefect_qiskit_runtime.prefect.loops.driver import LoopResult


class _LoopProgress:
    """The progress artifact and the ``prefect-qiskit-runtime.loop.*`` events of one loop.

    Args:
        name: The loop's name.
        method: The optimizer.
        key: The loop's checkpoint key (it names the event resource).
        budget: Evaluations expected in all, when the options tell; else the artifact stays at 0 %.
        interval: Seconds between two progress updates.
        done: Evaluations already recorded (a resumed loop starts its artifact there).
    """

    def __init__(
        self,
        name: str,
        method: str,
        key: str,
        *,
        budget: int | None,
        interval: float,
        done: int,
    ) -> None:
        self.name = name
        self.key = key
        self.budget = budget
        self.resource_id = f"{pu.EVENT_PREFIX}.loop.{key}"
        self._throttle = pu.Throttle(interval)
        self._id = pu.create_progress(
            100.0 * done / budget if budget else 0.0, f"Hybrid loop `{name}` ({method})"
        )

    def update(self, k: int, value: float, best: float) -> None:
        """Report evaluation ``k``, unless the last report is too recent."""
        if not self._throttle.ready():
            return
        # 99 at most: the loop may stop before its budget, and 100 % means it has ended.
        pct = 100.0 * (k + 1) / self.budget if self.budget else 0.0
        pu.update_progress(self._id, min(99.0, pct))
        self._emit("loop.progress", {"k": k, "value": value, "best": best, "loop_key": self.key})

    def finish(self, result: LoopResult, seconds: float) -> None:
        """Complete the artifact and emit ``loop.completed``."""
        pu.update_progress(self._id, 100.0, f"Hybrid loop `{self.name}` finished: {result.fun:.8f}")
        self._emit(
            "loop.completed",
            {
                "loop_key": self.key,
                "fun": result.fun,
                "nfev": result.nfev,
                "evaluated": result.evaluated,
                "replayed": result.replayed,
                "seconds": round(seconds, 3),
            },
        )

    def _emit(self, event: str, payload: dict[str, Any]) -> None:
        pu.emit(
            event, self.resource_id, resource={"prefect.resource.name": self.name}, payload=payload
        )


def publish_convergence(
    result: LoopResult, *, name: str, method: str, artifact_key: str | None
) -> None:
    """Leave the loop's convergence artifact: summary, chart and history table in markdown.

    Args:
        result: The finished loop.
        name: The loop's name.
        method: The optimizer.
        artifact_key: The artifact's key; default derived from ``name``.
    """
    pu.create_markdown(
        render_convergence_markdown(result, name=name, method=method),
        key=pu.artifact_key(artifact_key or f"{name}-convergence"),
        description=(
            f"Convergence of hybrid loop `{name}`: {result.fun:.8f} after {result.nfev} "
            "evaluations."
        ),
    )


def ascii_chart(values: Sequence[float], width: int = 64, height: int = 14) -> str:
    """A plain-text line chart of ``values`` (evaluation on x, value on y).

    Args:
        values: The series.
        width: Columns of the plot area.
        height: Rows of the plot area.

    Returns:
        Lines joined by newlines, with a y-axis scale on the left.
    """
    vals = [float(v) for v in values if math.isfinite(float(v))]
    if not vals:
        return "(no data)"
    lo, hi = min(vals), max(vals)
    span = hi - lo or 1.0
    cols = min(width, len(vals))
    grid = [[" "] * cols for _ in range(height)]
    for c in range(cols):
        # Each column shows the lowest value of its bucket: the chart tracks progress to the
        # minimum.
        a = c * len(vals) // cols
        b = max(a + 1, (c + 1) * len(vals) // cols)
        v = min(vals[a:b])
        r = round((hi - v) / span * (height - 1))
        grid[r][c] = "*"
    labels = [f"{hi - span * r / (height - 1):>13.6f}" for r in range(height)]
    lines = [f"{labels[r]} |{''.join(grid[r])}" for r in range(height)]
    lines.append(" " * 14 + "+" + "-" * cols)
    lines.append(
        " " * 15 + f"0{'evaluation':^{max(cols - 2 * len(str(len(vals))), 10)}}{len(vals)}"
    )
    return "\n".join(lines)


def render_convergence_markdown(
    result: LoopResult, *, name: str, method: str, max_rows: int = 200
) -> str:
    """Render a loop's convergence as markdown: summary, chart and history table.

    Args:
        result: The loop result.
        name: The loop's name.
        method: The optimizer.
        max_rows: Longest table; a longer history keeps its first and last rows.

    Returns:
        Markdown text.
    """
    hist = result.history
    lines = [
        f"## Convergence of `{name}`",
        "",
        f"- best value: **{result.fun:.10f}**",
        f"- evaluations: {result.nfev} ({result.evaluated} run, {result.replayed} replayed from "
        f"the checkpoint)",
        f"- optimizer: {method}, success: {result.success} ({result.message})",
        f"- best parameters: `{[round(float(v), 6) for v in result.x]}`",
        f"- checkpoint key: `{result.loop_key}`",
        "",
        "```text",
        ascii_chart([r["value"] for r in hist]),
        "```",
        "",
        "| k | value | best so far | seconds | parameters |",
        "|---:|---:|---:|---:|---|",
    ]
    rows = hist
    skipped = 0
    if len(hist) > max_rows:
        head = max_rows // 4
        rows = hist[:head] + hist[-(max_rows - head) :]
        skipped = len(hist) - max_rows
    for i, r in enumerate(rows):
        if skipped and i == max_rows // 4:
            lines.append(f"| … | {skipped} rows omitted | | | |")
        params = ", ".join(f"{p:.5f}" for p in r["params"])
        lines.append(
            f"| {r['k']} | {r['value']:.10f} | {r['best']:.10f} | {r.get('seconds', 0):.3f} | "
            f"{params} |"
        )
    return "\n".join(lines)
