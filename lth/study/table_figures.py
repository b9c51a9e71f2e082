"""One figure per study table (lth.study.tables), drawn like the paper's figures
(analysis.figures: Agg canvas, seaborn's paper style, PDF + PNG, its data as CSV):

  table1  heatmaps of accuracy over alpha x beta: measured, and the paper's beside it
  table2  accuracy against sparsity, one line per schedule (mean ± std over seeds), one panel
          per dataset and model; the paper's values as dashed lines where it has them
  table3  accuracy against the budget multiple, one line per schedule, one panel per dataset,
          the target accuracy as a horizontal line
"""
from pathlib import Path
from typing import Dict, List

import numpy as np
import seaborn as sns

from analysis.figures import csv_bytes, new_figure, paper_style, render
from analysis.results import SCHEDULE_ORDER, schedule_label
from analysis.table_render import DISPLAY_NAMES, Grid, mean_std, ordered

PANEL_IN = 2.6   # inches per panel side


def draw(analysis, records: List[dict], grid: Grid, stem: Path) -> Dict[Path, bytes]:
    done = [r for r in records if r["acc"] is not None]
    return {"table1": _table1, "table2": _table2, "table3": _table3}[analysis.table](analysis, done, grid, stem)


def _table1(analysis, records, grid: Grid, stem: Path) -> Dict[Path, bytes]:
    alphas = [float(a) for (a,) in grid.rows]
    betas = [float(b) for b in grid.columns]
    measured = np.array([[np.nan if e.mean is None else 100 * e.mean for e in row] for row in grid.entries])
    paper = np.array([[np.nan if e.paper_mean is None else e.paper_mean for e in row] for row in grid.entries])
    with paper_style():
        fig = new_figure((2 * PANEL_IN + 0.8, PANEL_IN))
        axes = fig.subplots(1, 2)
        for ax, values, name in ((axes[0], measured, "measured"), (axes[1], paper, "paper")):
            sns.heatmap(values, ax=ax, annot=True, fmt=".2f", cmap="viridis", cbar=False,
                        xticklabels=[f"{b:g}" for b in betas], yticklabels=[f"{a:g}" for a in alphas],
                        annot_kws={"size": 6})
            ax.set(xlabel="beta", ylabel="alpha", title=f"OCP accuracy (%), {name}")
        files = render(fig, stem)
    rows = [[f"{a:g}", f"{b:g}", f"{measured[i, j]:.4f}", f"{paper[i, j]:.2f}"]
            for i, a in enumerate(alphas) for j, b in enumerate(betas)]
    files[stem.with_name(stem.name + "_figure.csv")] = csv_bytes(["alpha", "beta", "measured_pct", "paper_pct"], rows)
    return files


def _lines(ax, records, x_key: str, colours, paper=None) -> List[list]:
    """One line per schedule of mean ± std accuracy against x_key; returns the CSV rows."""
    rows = []
    for colour, s in zip(colours, ordered((r["schedule"] for r in records), SCHEDULE_ORDER)):
        mine = [r for r in records if r["schedule"] == s]
        xs = sorted({r[x_key] for r in mine})
        stats = [mean_std([100 * r["acc"] for r in mine if r[x_key] == x]) for x in xs]
        means, stds = np.array([m for m, _ in stats]), np.array([d for _, d in stats])
        ax.errorbar(xs, means, yerr=stds, marker="o", markersize=3, capsize=2, color=colour,
                    label=schedule_label(s))
        if paper and paper.get(s):
            px, py = zip(*sorted(paper[s]))
            ax.plot(px, py, linestyle="--", linewidth=0.8, color=colour)
        rows += [[s, f"{x:g}", f"{m:.4f}", f"{d:.4f}"] for x, m, d in zip(xs, means, stds)]
    return rows


def _table2(analysis, records, grid: Grid, stem: Path) -> Dict[Path, bytes]:
    panels = list(dict.fromkeys((r["dataset"], r["model"]) for r in records)) or [("none", "none")]
    schedules = ordered((r["schedule"] for r in records), SCHEDULE_ORDER)
    colours = sns.color_palette("colorblind", len(schedules))
    paper = {}
    for key, row in zip(grid.rows, grid.entries):
        for s, e in zip(schedules, row):
            if e.paper_mean is not None:
                sp = float(key[2].rstrip(" %")) / 100
                paper.setdefault((key[0], key[1]), {}).setdefault(s, []).append((100 * sp, e.paper_mean))
    rows = []
    with paper_style():
        cols = min(3, len(panels))
        lines = -(-len(panels) // cols)
        fig = new_figure((PANEL_IN * cols, PANEL_IN * lines))
        axes = np.atleast_1d(fig.subplots(lines, cols, squeeze=False)).ravel()
        for ax, (ds, model) in zip(axes, panels):
            mine = [dict(r, sparsity_pct=100 * r["sparsity"]) for r in records if (r["dataset"], r["model"]) == (ds, model)]
            got = _lines(ax, mine, "sparsity_pct", colours, paper.get((DISPLAY_NAMES.get(ds, ds), DISPLAY_NAMES.get(model, model))))
            rows += [[ds, model] + line for line in got]
            ax.set(title=f"{DISPLAY_NAMES.get(ds, ds)}, {DISPLAY_NAMES.get(model, model)}", xlabel="Sparsity (%)", ylabel="Accuracy (%)")
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        if paper:
            axes[0].plot([], [], linestyle="--", linewidth=0.8, color="grey", label="paper (dashed)")
        if records:
            axes[0].legend(loc="best", fontsize=6)
        files = render(fig, stem)
    files[stem.with_name(stem.name + "_figure.csv")] = csv_bytes(
        ["dataset", "model", "schedule", "sparsity_pct", "mean_pct", "std_pct"], rows)
    return files


def _table3(analysis, records, grid: Grid, stem: Path) -> Dict[Path, bytes]:
    datasets = list(dict.fromkeys(r["dataset"] for r in records)) or ["none"]
    schedules = ordered((r["schedule"] for r in records), SCHEDULE_ORDER)
    colours = sns.color_palette("colorblind", len(schedules))
    rows = []
    with paper_style():
        fig = new_figure((PANEL_IN * len(datasets), PANEL_IN))
        axes = np.atleast_1d(fig.subplots(1, len(datasets), squeeze=False)).ravel()
        for ax, ds in zip(axes, datasets):
            got = _lines(ax, [r for r in records if r["dataset"] == ds], "budget", colours)
            rows += [[ds] + line for line in got]
            if ds in analysis.targets:
                ax.axhline(100 * analysis.targets[ds], color="grey", linestyle=":", linewidth=1, label="target")
            ax.set_xscale("log")
            budgets = sorted({r["budget"] for r in records if r["dataset"] == ds})
            ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
            ax.minorticks_off()
            ax.set(title=DISPLAY_NAMES.get(ds, ds), xlabel="Budget (x base)", ylabel="Accuracy (%)")
        if records:
            axes[0].legend(loc="best", fontsize=6)
        files = render(fig, stem)
    files[stem.with_name(stem.name + "_figure.csv")] = csv_bytes(
        ["dataset", "schedule", "budget_multiple", "mean_pct", "std_pct"], rows)
    return files
