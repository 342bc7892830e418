"""Grouped bar charts for the lab's results (matplotlib, files only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def _draw_grouped(ax: Axes, groups: Sequence[str], series: dict[str, Sequence[float]],
                  ylabel: str, log: bool) -> None:
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, list(groups), rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)


def grouped_bars(title: str, groups: Sequence[str], series: dict[str, Sequence[float]],
                 ylabel: str, log: bool = False, ax_title: str | None = None) -> Figure:
    """One cluster per group, one bar per series (e.g. groups = formats, series = operations)."""
    fig = Figure(figsize=(max(7.0, 0.9 * len(groups) * max(1, len(series)) / 2), 4.8))
    ax = fig.add_subplot()
    _draw_grouped(ax, groups, series, ylabel, log)
    ax.set_title(ax_title or title)
    return fig


def grouped_panels(title: str, panels: dict[str, tuple[Sequence[str], dict[str, Sequence[float]]]],
                   ylabel: str, log: bool = True) -> Figure:
    """Several grouped-bar panels side by side in one figure."""
    fig = Figure(figsize=(6.0 * len(panels), 4.8))
    for k, (name, (groups, series)) in enumerate(panels.items(), start=1):
        ax = fig.add_subplot(1, len(panels), k)
        _draw_grouped(ax, groups, series, ylabel, log)
        ax.set_title(name)
    fig.suptitle(title)
    return fig
