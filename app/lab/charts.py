"""Grouped bar charts for the lab's results (matplotlib, files only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

# Groups of one kind (e.g. row-oriented formats) get their tick labels and a band in one colour.
KIND_COLORS = ("#c44e52", "#4c72b0", "#55a868", "#8172b2")


def _draw_grouped(ax: Axes, groups: Sequence[str], series: dict[str, Sequence[float]],
                  ylabel: str, log: bool, kinds: Mapping[str, str] | None = None) -> None:
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, list(groups), rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    handles, _ = ax.get_legend_handles_labels()
    if kinds:
        colors = {k: KIND_COLORS[i % len(KIND_COLORS)] for i, k in enumerate(dict.fromkeys(kinds.values()))}
        for i, (label, group) in enumerate(zip(ax.get_xticklabels(), groups, strict=True)):
            if group in kinds:
                label.set_color(colors[kinds[group]])
                ax.axvspan(i - 0.5, i + 0.5, color=colors[kinds[group]], alpha=0.08, lw=0)
        handles += [Patch(color=c, alpha=0.3, label=k) for k, c in colors.items()]
    if len(series) > 1 or kinds:
        ax.legend(handles=handles, fontsize="small")
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
                   ylabel: str | Mapping[str, str], log: bool | Mapping[str, bool] = True,
                   kinds: Mapping[str, str] | None = None) -> Figure:
    """Several grouped-bar panels side by side in one figure; ``ylabel``/``log`` per panel or for all."""
    fig = Figure(figsize=(5.5 * len(panels), 4.8))
    for k, (name, (groups, series)) in enumerate(panels.items(), start=1):
        ax = fig.add_subplot(1, len(panels), k)
        _draw_grouped(ax, groups, series, ylabel if isinstance(ylabel, str) else ylabel[name],
                      log if isinstance(log, bool) else log[name], kinds)
        ax.set_title(name)
    fig.suptitle(title)
    return fig
