"""The figures and Table 4 of One-Cycle Pruning (Hubens et al.), as PDF, PNG and CSV.

    python -m analysis.figures                                # Fig. 1 and 2 only (the schedules)
    python -m analysis.figures runs/*-digits-* --out figs     # + Fig. 3 and Table 4 from saved results

Fig. 1  One-cycle schedule (eq. 1) for several alpha (beta = 5) and beta (alpha = 14).
Fig. 2  Sparsity against training progress for the four schedules with the paper's defaults.
Fig. 3  Instability error (alpha = 0.5) against sparsity, one line per schedule, mean and a
        +- 1 std band over the schedule's runs; the error-barrier version beside it. When the
        runs were measured in both BatchNorm modes, both are drawn: solid lines interpolate the
        running statistics (the default), dashed lines recompute them (--bn reset).
Table 4 Accuracy at the last round: the IMP run's own at the end of the round, and the ticket
        re-trained (analysis.tables).

Fig. 3 and Table 4 read the results of `python -m analysis.stability` with the same settings
flags (--seed, --bn, --alphas, --bn-batches, --epochs/--steps: the defaults match), which also
draws them after measuring (--bn names the mode Table 4 and the CSV's first rows come from;
Fig. 3 adds the other mode when its results exist). Drawn with matplotlib's Agg canvas (no pyplot, no global state);
every file is written atomically, and nothing is written when an input is wrong.
"""
import contextlib
import csv
import dataclasses
import io
import logging
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis import cli, results, tables
from analysis.settings import BN_MODES, CopySettings, ProbeSettings
from lth.pruning import schedules
from lth.errors import OneLineParser, cli_main
from lth.runs.store import RunStore
from lth.runs.files import atomic_write_bytes

log = logging.getLogger("analysis.figures")

SINGLE_COLUMN = (3.5, 2.6)      # inches: one column of a two-column paper
DOUBLE_PANEL = (7.0, 2.6)       # inches: two panels side by side, the full text width
PNG_DPI = 300                   # print resolution
FINAL_SPARSITY = 0.9            # Fig. 1 and 2: the schedules from 0 to 90 % (the paper's Table 1 setting)
FIG1_ALPHAS = (8, 11, 14, 17, 20)   # steepness values around the paper's 14 (beta = 5)
FIG1_BETAS = (3, 4, 5, 6, 7)        # offsets of the paper's grid search (alpha = 14)
PROGRESS = np.linspace(0.0, 1.0, 501)  # training progress samples; fine enough to show the steps
BAND_ALPHA = 0.2                # opacity of the std bands
MODE_STYLES = {"interpolate": "-", "none": "-", "reset": "--"}   # Fig. 3: line style per BatchNorm mode
MODE_LABELS = {"interpolate": "BN stats interpolated", "none": "no BatchNorm", "reset": "BN stats recomputed"}


@contextlib.contextmanager
def paper_style():
    """seaborn's paper look, only while a figure is drawn (rcParams restored afterwards)."""
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.0):
        yield


def new_figure(size) -> Figure:
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def render(fig: Figure, stem: Path) -> Dict[Path, bytes]:
    """The figure as PDF and PNG bytes, by path (written later, all at once)."""
    fig.tight_layout()
    files = {}
    for fmt, extra in (("pdf", {"metadata": {"CreationDate": None}}), ("png", {"dpi": PNG_DPI})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, bbox_inches="tight", **extra)
        files[stem.with_suffix(f".{fmt}")] = buffer.getvalue()
    return files


def csv_bytes(header: Sequence[str], rows: Sequence[Sequence]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def fig1(out: Path) -> Dict[Path, bytes]:
    curves = {}
    with paper_style():
        fig = new_figure(DOUBLE_PANEL)
        panels = fig.subplots(1, 2, sharey=True)
        for ax, name, values in ((panels[0], "alpha", FIG1_ALPHAS), (panels[1], "beta", FIG1_BETAS)):
            colours = sns.color_palette("viridis", len(values))
            for colour, value in zip(colours, values):
                params = {"alpha": value, "beta": 5.0} if name == "alpha" else {"alpha": 14.0, "beta": value}
                ys = [100 * schedules.ocp(t, 0.0, FINAL_SPARSITY, **params) for t in PROGRESS]
                curves[f"alpha={params['alpha']:g} beta={params['beta']:g}"] = ys
                ax.plot(100 * PROGRESS, ys, color=colour, label=f"$\\{name}$ = {value}")
            fixed = "$\\beta$ = 5" if name == "alpha" else "$\\alpha$ = 14"
            ax.set_title(f"({'a' if name == 'alpha' else 'b'}) varying $\\{name}$, {fixed}")
            ax.set_xlabel("Training progress (%)")
            ax.set_ylabel("Sparsity (%)" if name == "alpha" else "")
            ax.legend(loc="lower right")
        files = render(fig, out / "fig1_ocp_shapes")
    files[out / "fig1_ocp_shapes.csv"] = progress_csv(curves)
    return files


def progress_csv(curves: Dict[str, Sequence[float]]) -> bytes:
    """Sparsity curves over PROGRESS as CSV: one column per curve."""
    return csv_bytes(["progress_pct", *curves], [[f"{100 * t:.1f}", *(f"{c[i]:.4f}" for c in curves.values())]
                                                  for i, t in enumerate(PROGRESS)])


def fig2(out: Path) -> Dict[Path, bytes]:
    curves = {}
    with paper_style():
        fig = new_figure(SINGLE_COLUMN)
        ax = fig.subplots()
        colours = sns.color_palette("colorblind", len(results.PAPER_SCHEDULES))
        for colour, name in zip(colours, results.PAPER_SCHEDULES):
            schedule = schedules.get(name)  # the paper's defaults are the keyword defaults
            curves[name] = [100 * schedule(t, 0.0, FINAL_SPARSITY) for t in PROGRESS]
            ax.plot(100 * PROGRESS, curves[name], color=colour, label=results.schedule_label(name))
        ax.set(xlabel="Training progress (%)", ylabel="Sparsity (%)")
        ax.legend(loc="lower right")
        files = render(fig, out / "fig2_schedules")
    files[out / "fig2_schedules.csv"] = progress_csv(curves)
    return files


def fig3_panel(points: Dict[str, List[dict]], groups: List[str], ylabel: str, stem: Path) -> Dict[Path, bytes]:
    """One line per (group, BatchNorm mode): colour names the schedule, line style the mode."""
    with paper_style():
        fig = new_figure(SINGLE_COLUMN)
        ax = fig.subplots()
        colours = sns.color_palette("colorblind", len(groups))
        for mode, mode_points in points.items():
            for colour, group in zip(colours, groups):
                line = [p for p in mode_points if p["group"] == group]
                if not line:
                    continue
                x = np.array([100 * p["sparsity"] for p in line])
                mean = np.array([100 * p["mean"] for p in line])
                std = np.array([100 * p["std"] for p in line])
                label = group if len(points) == 1 else f"{group}, {MODE_LABELS[mode]}"
                ax.plot(x, mean, MODE_STYLES[mode], marker="o", markersize=3, color=colour, label=label)
                ax.fill_between(x, mean - std, mean + std, color=colour, alpha=BAND_ALPHA, linewidth=0)
        ax.set(xlabel="Sparsity (%)", ylabel=ylabel)
        ax.set_ylim(bottom=0)  # both errors are >= 0; a zero baseline keeps schedules comparable by eye
        ax.legend(loc="best", fontsize="x-small" if len(points) > 1 else None)
        return render(fig, stem)


def fig3(modes: Dict[str, List[dict]], out: Path) -> Dict[Path, bytes]:
    """Fig. 3 from the rows of each BatchNorm mode measured (the first mode's rows first in the CSV)."""
    groups = results.group_order([row for rows in modes.values() for row in rows])
    instability = {mode: results.by_round(rows, "instability_error") for mode, rows in modes.items()}
    barrier = {mode: results.by_round(rows, "error_barrier") for mode, rows in modes.items()}
    files = {**fig3_panel(instability, groups, "Instability error (%)", out / "fig3_instability"),
             **fig3_panel(barrier, groups, "Error barrier (%)", out / "fig3_barrier")}
    stats = ("mean", "std", "min", "max")
    header = ["schedule", "bn_mode", "round", "sparsity_pct", "runs"] + [f"{m}_{s}_pct" for m in ("instability", "barrier")
                                                                       for s in stats]
    lines = [[i["group"], mode, i["round"], f"{100 * i['sparsity']:.4f}", i["n"]] +
             [f"{100 * p[s]:.4f}" for p in (i, b) for s in stats]
             for mode in modes for i, b in zip(instability[mode], barrier[mode])]
    files[out / "fig3.csv"] = csv_bytes(header, lines)
    return files


def collect_modes(stores: Sequence[RunStore], copies: CopySettings, probe: ProbeSettings) -> Dict[str, List[dict]]:
    """The rows of `probe`'s BatchNorm mode, then those of the other mode where that was measured
    too (models with BatchNorm only: without it both modes are one result). Keyed by the mode
    the results record ('interpolate', 'reset' or 'none')."""
    rows = results.collect(stores, copies, probe)
    without_bn = all(row.get("bn_mode") == "none" for row in rows)
    modes = {"none" if without_bn else probe.bn: rows}
    other = dataclasses.replace(probe, bn=next(m for m in BN_MODES if m != probe.bn))
    extra = [row for row in results.collect(stores, copies, other, required=False)
             if row.get("bn_mode", other.bn) == other.bn]
    if extra:
        modes[other.bn] = extra
    return modes


def table4(rows: List[dict], out: Path) -> Dict[Path, bytes]:
    table = results.last_round(rows)
    return {out / "table4.md": tables.markdown(table).encode(), out / "table4.tex": tables.latex(table).encode(),
            out / "table4.csv": tables.csv_text(table).encode()}


def write(files: Dict[Path, bytes]) -> List[Path]:
    for path, content in files.items():
        atomic_write_bytes(path, content)
    return list(files)


def draw_measured(stores: Sequence[RunStore], copies: CopySettings, probe: ProbeSettings, out) -> List[Path]:
    """Fig. 3 and Table 4 from the runs' saved results with these settings."""
    out = cli.check_out_dir(out)
    modes = collect_modes(stores, copies, probe)
    return write({**fig3(modes, out), **table4(next(iter(modes.values())), out)})


def parser() -> OneLineParser:
    p = OneLineParser(prog="python -m analysis.figures", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="*", metavar="RUN_DIR",
                   help="runs whose stability results to draw (none: only Fig. 1 and 2)")
    p.add_argument("--out", default="figures", help="output folder [default: figures]")
    cli.add_settings_arguments(p)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    copies, probe = cli.settings_from_args(args)
    out = cli.check_out_dir(args.out)
    files = {**fig1(out), **fig2(out)}
    if args.runs:
        modes = collect_modes(cli.open_runs(args.runs), copies, probe)
        files.update({**fig3(modes, out), **table4(next(iter(modes.values())), out)})
        print(files[out / "table4.md"].decode(), end="")
    for path in write(files):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
