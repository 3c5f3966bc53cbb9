"""What a loop shows in Prefect: throttled progress and events, and a live convergence chart.

The convergence artifact is one markdown artifact per loop with a PNG chart embedded as a data URI
(:mod:`prefect_qiskit_runtime.prefect.plots`). It is made ``plot_interval`` seconds into the loop
and then redrawn in place, at most once per ``plot_interval`` seconds, so the UI shows the loop as
it runs; at the end it becomes the full report: chart, summary, a plain-text chart for readers
without images, and the history table.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from prefect_qiskit_runtime.prefect import _utils as pu
from prefect_qiskit_runtime.prefect import plots

if TYPE_CHECKING:
    from prefect_qiskit_runtime.prefect.loops.driver import LoopResult


class _ConvergenceChart:
    """The convergence artifact of one loop: made once, then updated in place.

    Args:
        name: The loop's name.
        method: The optimizer.
        key: The artifact's key.
        history: The loop's evaluation records (the checkpoint's list, which grows as it runs).
        interval: Seconds between two redraws while the loop runs.
    """

    def __init__(
        self, name: str, method: str, key: str, history: list[dict[str, Any]], interval: float
    ) -> None:
        self.name = name
        self.method = method
        self.key = pu.artifact_key(key)
        self.history = history
        self.redraws = 0
        self.render_seconds = 0.0
        self.api_seconds = 0.0
        # The first redraw waits one interval too: a loop shorter than that pays for one chart,
        # the final one.
        self._throttle = pu.Throttle(interval, wait_first=True)
        self._id: UUID | None = None
        self._enabled = pu.in_run()

    def update(self) -> None:
        """Redraw the chart of the evaluations so far, unless the last redraw is too recent."""
        if not (self._enabled and self.history and self._throttle.ready()):
            return
        png = self._render()
        best = min(r["value"] for r in self.history)
        markdown = "\n".join(
            [
                f"## Convergence of `{self.name}` (running)",
                "",
                plots.markdown_image(png, f"Convergence of {self.name}"),
                "",
                f"- evaluations so far: {len(self.history)}, best value: **{best:.10f}**, "
                f"last value: {self.history[-1]['value']:.10f}",
                f"- optimizer: {self.method}; this chart is redrawn while the loop runs",
            ]
        )
        self._publish(markdown, f"Hybrid loop `{self.name}` running: {best:.8f} so far.")

    def finish(self, result: LoopResult) -> None:
        """Replace the chart with the full report of the finished loop."""
        if not self._enabled:
            return
        markdown = render_convergence_markdown(
            result, name=self.name, method=self.method, chart=self._render()
        )
        description = (
            f"Convergence of hybrid loop `{self.name}`: {result.fun:.8f} after {result.nfev} "
            "evaluations."
        )
        self._publish(markdown, description, final=True)

    def stats(self) -> dict[str, Any]:
        """Redraws and their mean cost in milliseconds (drawing and encoding; the API call)."""
        n = max(1, self.redraws)
        return {
            "chart_redraws": self.redraws,
            "chart_render_ms": round(1000 * self.render_seconds / n, 1),
            "chart_api_ms": round(1000 * self.api_seconds / n, 1),
        }

    def _render(self) -> bytes:
        t0 = time.perf_counter()
        png = plots.convergence_png(
            [r["value"] for r in self.history], title=f"{self.name} ({self.method})"
        )
        self.render_seconds += time.perf_counter() - t0
        self.redraws += 1
        return png

    def _publish(self, markdown: str, description: str, *, final: bool = False) -> None:
        t0 = time.perf_counter()
        updated = pu.update_artifact(self._id, markdown, description)
        # A failed redraw waits for the next one; only the final report is worth a new version.
        if self._id is None or (final and not updated):
            self._id = pu.create_markdown(markdown, key=self.key, description=description)
        self.api_seconds += time.perf_counter() - t0


class _LoopProgress:
    """The progress artifact, convergence chart and ``prefect-qiskit-runtime.loop.*`` events.

    Args:
        name: The loop's name.
        method: The optimizer.
        key: The loop's checkpoint key (it names the event resource).
        budget: Evaluations expected in all, when the options tell; else the artifact stays at 0 %.
        interval: Seconds between two progress updates.
        history: The loop's evaluation records; a resumed loop starts with the recorded ones.
        artifact_key: Key of the convergence artifact.
        plot_interval: Seconds between two redraws of the convergence chart.
    """

    def __init__(
        self,
        name: str,
        method: str,
        key: str,
        *,
        budget: int | None,
        interval: float,
        history: list[dict[str, Any]],
        artifact_key: str,
        plot_interval: float,
    ) -> None:
        self.name = name
        self.key = key
        self.budget = budget
        self.resource_id = f"{pu.EVENT_PREFIX}.loop.{key}"
        self.chart = _ConvergenceChart(name, method, artifact_key, history, plot_interval)
        self._throttle = pu.Throttle(interval)
        done = len(history)
        self._id = pu.create_progress(
            100.0 * done / budget if budget else 0.0, f"Hybrid loop `{name}` ({method})"
        )

    def update(self, k: int, value: float, best: float) -> None:
        """Report evaluation ``k``, unless the last report is too recent."""
        self.chart.update()
        if not self._throttle.ready():
            return
        # 99 at most: the loop may stop before its budget, and 100 % means it has ended.
        pct = 100.0 * (k + 1) / self.budget if self.budget else 0.0
        pu.update_progress(self._id, min(99.0, pct))
        self._emit("loop.progress", {"k": k, "value": value, "best": best, "loop_key": self.key})

    def finish(self, result: LoopResult, seconds: float) -> None:
        """Complete the artifact and the chart, and emit ``loop.completed``."""
        pu.update_progress(self._id, 100.0, f"Hybrid loop `{self.name}` finished: {result.fun:.8f}")
        self.chart.finish(result)
        self._emit(
            "loop.completed",
            {
                "loop_key": self.key,
                "fun": result.fun,
                "nfev": result.nfev,
                "evaluated": result.evaluated,
                "replayed": result.replayed,
                "seconds": round(seconds, 3),
                **self.chart.stats(),
            },
        )

    def _emit(self, event: str, payload: dict[str, Any]) -> None:
        pu.emit(
            event, self.resource_id, resource={"prefect.resource.name": self.name}, payload=payload
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
    result: LoopResult,
    *,
    name: str,
    method: str,
    max_rows: int = 200,
    chart: bytes | None = None,
) -> str:
    """Render a loop's convergence as markdown: chart, summary, plain-text chart, history table.

    Args:
        result: The loop result.
        name: The loop's name.
        method: The optimizer.
        max_rows: Longest table; a longer history keeps its first and last rows.
        chart: A PNG chart (:func:`~prefect_qiskit_runtime.prefect.plots.convergence_png`) to
            embed first, where the UI shows it without scrolling.

    Returns:
        Markdown text.
    """
    hist = result.history
    lines = [
        f"## Convergence of `{name}`",
        "",
        *([plots.markdown_image(chart, f"Convergence of {name}"), ""] if chart else []),
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
