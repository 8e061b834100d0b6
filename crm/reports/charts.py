"""Chart geometry for server-rendered SVG: bars laid out here, drawn by ``reports/_charts.html``.

No script and no inline style (the CSP stays ``default-src 'self'``): the template writes
plain SVG shapes with classes the stylesheet colours. Each chart carries a text alternative
that reads out every bar, and the page shows the same figures as a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 640
LABEL_WIDTH = 230
VALUE_WIDTH = 110
ROW_HEIGHT = 26
BAR_GAP = 6
PLOT_HEIGHT = 180
AXIS_HEIGHT = 34


@dataclass(frozen=True)
class Bar:
    """One bar: its label, the value shown beside it, and its rectangle."""

    label: str
    text: str
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Chart:
    """A bar chart: ``horizontal`` (one row per bar, labels left) or ``columns`` (a series over time)."""

    key: str
    title: str
    summary: str
    kind: str
    width: int
    height: int
    bars: tuple[Bar, ...]
    ticks: tuple[tuple[float, str], ...] = ()  # x position and label under a column chart


def _scale(values: Sequence[float | None], span: float) -> list[float]:
    top = max((value or 0 for value in values), default=0)
    return [(value or 0) / top * span if top else 0 for value in values]


def _summary(title: str, labels: Sequence[str], texts: Sequence[str]) -> str:
    return f"{title}. " + "; ".join(f"{label}: {text}" for label, text in zip(labels, texts, strict=True)) + "."


def horizontal(key: str, title: str, labels: Sequence[str], values: Sequence[float | None],
               texts: Sequence[str]) -> Chart:
    """Bars from a common left edge, one per label (a funnel, a distribution)."""
    span = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    lengths = _scale(values, span)
    bars = tuple(Bar(label, text, LABEL_WIDTH, index * ROW_HEIGHT + BAR_GAP / 2, max(length, 1 if value else 0),
                     ROW_HEIGHT - BAR_GAP)
                 for index, (label, value, text, length) in enumerate(zip(labels, values, texts, lengths, strict=True)))
    return Chart(key, title, _summary(title, labels, texts), "horizontal", WIDTH, ROW_HEIGHT * len(bars), bars)


def columns(key: str, title: str, labels: Sequence[str], values: Sequence[float | None], texts: Sequence[str],
            tick_every: int = 4) -> Chart:
    """Columns left to right over time, with a date under every ``tick_every``-th column."""
    step = WIDTH / max(len(values), 1)
    heights = _scale(values, PLOT_HEIGHT)
    bars = tuple(Bar(label, text, index * step + 1, PLOT_HEIGHT - height, max(step - 2, 1), height)
                 for index, (label, text, height) in enumerate(zip(labels, texts, heights, strict=True)))
    ticks = tuple((index * step + step / 2, labels[index]) for index in range(0, len(labels), tick_every))
    return Chart(key, title, _summary(title, labels, texts), "columns", WIDTH, PLOT_HEIGHT + AXIS_HEIGHT, bars,
                 ticks)
