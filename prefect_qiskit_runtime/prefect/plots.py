"""Small PNG charts for Prefect artifacts, embedded in markdown as ``data:`` URIs.

Prefect 3.8's default UI renders markdown artifacts with react-markdown and a sanitizer whose URL
filter lets ``data:image/...`` through for an image's ``src`` (and only there), so a chart needs no
file storage and no second artifact: ``![alt](data:image/png;base64,...)`` inside the markdown is
enough. The charts are drawn with matplotlib's Agg canvas on a ``Figure`` of their own, never
through ``pyplot``, so they touch no global backend or figure state and work on any thread.

A 640x360 chart at 100 dpi is 20-30 KB of PNG (27-40 KB as base64) and takes about 50 ms to draw
and encode on one core of the 2-core machine this project is measured on; the loops redraw it at
most every few seconds (see :mod:`prefect_qiskit_runtime.prefect.loops`).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

#: Size of every chart: 640x360 pixels.
WIDTH_INCHES, HEIGHT_INCHES, DPI = 6.4, 3.6, 100
#: Colours of the series (matplotlib's default cycle, named so that the two charts agree).
_BLUE, _ORANGE, _GREY = "#1f77b4", "#ff7f0e", "#9e9e9e"


def _figure() -> Any:
    """A figure on an Agg canvas, with fixed margins.

    Fixed margins instead of ``tight_layout``: that lays the figure out by drawing it an extra
    time, which doubles the cost of a chart (about 110 ms against 50 ms measured).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_INCHES, HEIGHT_INCHES), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.15, right=0.97, top=0.9, bottom=0.15)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    # No "Software" text chunk: it would make the same chart differ between matplotlib versions.
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def convergence_png(
    values: Sequence[float], *, title: str, ylabel: str = "cost", reference: float | None = None
) -> bytes:
    """A line chart of a minimization: the value of every evaluation and the best so far.

    Args:
        values: One value per evaluation, in order; non-finite ones are left out.
        title: The chart's title.
        ylabel: What the values are (``"energy (Ha)"``).
        reference: A value to draw as a dashed line (an exact answer), if any.

    Returns:
        The PNG bytes.
    """
    points = [(k, float(v)) for k, v in enumerate(values) if math.isfinite(float(v))]
    fig = _figure()
    ax = fig.subplots()
    if points:
        ks = [k for k, _ in points]
        vs = [v for _, v in points]
        best = _running_min(vs)
        ax.plot(ks, vs, ".-", color=_BLUE, lw=0.8, ms=3, alpha=0.7, label="evaluation")
        ax.step(ks, best, where="post", color=_ORANGE, lw=1.8, label="best so far")
    else:
        ax.text(0.5, 0.5, "no evaluations yet", ha="center", va="center", transform=ax.transAxes)
    if reference is not None:
        ax.axhline(reference, color=_GREY, ls="--", lw=1, label="reference")
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("evaluation")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if points or reference is not None:
        # A fixed corner: loc="best" searches for the emptiest spot, which costs a draw.
        ax.legend(loc="upper right", fontsize=8)
    return _png(fig)


def _running_min(values: list[float]) -> list[float]:
    out: list[float] = []
    low = math.inf
    for v in values:
        low = min(low, v)
        out.append(low)
    return out


def bar_chart_png(
    labels: Sequence[str],
    heights: Sequence[float],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    highlight: Sequence[bool] | None = None,
    highlight_label: str | None = None,
    annotations: Sequence[str] | None = None,
) -> bytes:
    """A vertical bar chart, with some bars highlighted and a short note above each.

    Args:
        labels: One label per bar, left to right.
        heights: One height per bar.
        title: The chart's title.
        xlabel: What the labels are.
        ylabel: What the heights are.
        highlight: Bars drawn in the accent colour (the optimal ones); default none.
        highlight_label: Legend entry of the highlighted bars; default no legend.
        annotations: Text above each bar (its cut value); default none.

    Returns:
        The PNG bytes.
    """
    fig = _figure()
    ax = fig.subplots()
    marked = list(highlight) if highlight is not None else [False] * len(labels)
    colours = [_ORANGE if m else _BLUE for m in marked]
    bars = ax.bar(range(len(labels)), heights, color=colours)
    ax.set_xticks(range(len(labels)), labels, rotation=60 if len(labels) > 8 else 0, fontsize=8)
    if annotations is not None:
        ax.bar_label(bars, labels=list(annotations), fontsize=7, padding=1)
        ax.margins(y=0.12)  # room for the notes above the tallest bar
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    if highlight_label and any(marked):
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=_ORANGE, label=highlight_label)], loc="upper right")
    if len(labels) > 8:
        fig.subplots_adjust(bottom=0.25)  # rotated labels need more room
    return _png(fig)


def data_uri(png: bytes) -> str:
    """``png`` as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def markdown_image(png: bytes, alt: str) -> str:
    """A markdown image of ``png`` embedded as a data URI (``![alt](data:...)``).

    Args:
        png: The PNG bytes.
        alt: The alternative text; brackets are dropped so that it cannot end the markdown early.

    Returns:
        One line of markdown.
    """
    text = alt.replace("[", "").replace("]", "")
    return f"![{text}]({data_uri(png)})"
