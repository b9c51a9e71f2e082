"""Figures and the results table of structured runs (`python -m lth.structured`), PNG+PDF+CSV.

    python -m analysis.structured runs/structured/* --out figures/structured
    python -m analysis.structured runs/structured/* --out docs --docs   # + one small combined PNG

stability         psi (the 3-epoch mean), the raw Jaccard score J and lambda (log axis) over
                  epochs for every stability-triggered OCSPruner run; the dashed line marks
                  the pruning point (after the stable epoch).
accuracy_vs_flops final test accuracy against the measured FLOPs reduction, one marker per
                  method (mean and standard deviation over its runs, which differ only in seeds:
                  analysis.replicates labels runs that differ in more, e.g. `OCP [flops_rr=0.3]`).
results.csv/.md   one row per run, and the per-method means (printed as Markdown).

Runs whose summary.json is missing (unfinished) are skipped with a log line.
"""
import io
import logging
import statistics
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List

import numpy as np
import seaborn as sns
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import offset_copy

from analysis import replicates
from analysis.cli import check_out_dir
from analysis.figures import DOUBLE_PANEL, SINGLE_COLUMN, csv_bytes, new_figure, paper_style, render, write
from lth.errors import LthError, OneLineParser, cli_main
from lth.structured.config import StructuredRun
from lth.structured.store import StructuredStore

log = logging.getLogger("analysis.structured")

DOCS_DPI = 150   # the combined PNG for the README: small (< 200 kB)
DODGE_PT = 5     # horizontal spacing, in points, between methods drawn at the same FLOPs reduction


def label(cfg: dict) -> str:
    """The method's name in the figures: the ablations and lambda settings told apart."""
    s = cfg["structured"]
    if s["method"] != "ocspruner":
        return {"dense": "dense", "ocp": "OCP"}.get(s["method"], s["method"].replace("_", "-"))
    reg = f"λ0={s['reg']:g}"
    if s["prune_at"] == "stable":
        return f"OCSPruner ({reg})"
    if s["prune_at"] == "end":
        return f"prune at end ({reg})"
    return f"prune at epoch {s['prune_at']}"


def collect(paths) -> List[dict]:
    rows = []
    for path in paths:
        store = StructuredStore(path)
        meta = store.meta()
        if not store.done():
            log.info("%s is not finished: skipped", path)
            continue
        cfg, summary = meta["config"], store.summary()
        experiment = StructuredRun.from_dict(cfg, str(store.meta_path)).experiment_dict()
        rows.append({"run": Path(path).name, "label": label(cfg), "seed": cfg["seeds"]["init_seed"],
                     "summary": summary, "epochs": store.epochs(), "config": cfg, "experiment": experiment})
    if not rows:
        raise LthError("no finished structured run among the given directories")
    # a method's runs are pooled only if they differ in nothing but seeds (e.g. not --flops-rr)
    named = replicates.labels(rows, lambda r: r["label"], lambda r: r["experiment"])
    for r in rows:
        r["label"] = named[id(r)]
    return rows


def _ocs_runs(rows: List[dict]) -> List[dict]:
    return [r for r in rows if r["config"]["structured"]["method"] == "ocspruner"
            and r["config"]["structured"]["prune_at"] == "stable"]


def draw_stability(ax, runs: List[dict]) -> List[list]:
    """psi, J and lambda of `runs` on `ax` (lambda on a log twin axis); returns the CSV lines."""
    lines = []
    twin = ax.twinx()
    colours = sns.color_palette("colorblind", max(len(runs), 1))
    for colour, r in zip(colours, runs):
        recs = [e for e in r["epochs"] if "psi" in e]
        ep = [e["epoch"] for e in recs]
        ax.plot(ep, [e["psi"] for e in recs], color=colour, marker="o", markersize=3,
                label=f"{r['label']}, seed {r['seed']}")
        ax.plot(ep, [e["J"] for e in recs], color=colour, linestyle=":", linewidth=1)
        lam = [(e["epoch"], e["lambda"]) for e in recs if e["lambda"] > 0]
        if lam:
            twin.plot(*zip(*lam), color=colour, linestyle="--", linewidth=1, alpha=0.7)
        stable = r["summary"].get("stable_epoch")
        if stable is not None:   # channels are removed after the stable epoch's training
            ax.axvline(stable + 0.5, color=colour, linestyle="--", linewidth=0.8)
        lines += [[r["run"], r["seed"], e["epoch"], f"{e['J']:.6f}", f"{e['psi']:.6f}", f"{e['lambda']:.6g}",
                   stable, " ".join(map(str, e.get("kept", [])))] for e in recs]
    tau = runs[0]["config"]["structured"]["tau"] if runs else 0.999
    ax.axhline(tau, color="grey", linewidth=0.6)
    ax.set(xlabel="Epoch", ylabel=r"Stability $\psi$ (dotted: raw $J$)", ylim=(0, 1.05))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # epochs are whole numbers
    twin.set_yscale("log")
    twin.set_ylabel(r"$\lambda$ (dashed)")
    twin.grid(False)
    ax.legend(loc="lower right", fontsize=6)
    return lines


def stability_figure(rows: List[dict], stem: Path) -> Dict[Path, bytes]:
    with paper_style():
        fig = new_figure(SINGLE_COLUMN)
        lines = draw_stability(fig.subplots(), _ocs_runs(rows))
        files = render(fig, stem)
    header = ["run", "seed", "epoch", "J", "psi", "lambda", "stable_epoch", "kept_per_group"]
    files[stem.with_suffix(".csv")] = csv_bytes(header, lines)
    return files


def by_label(rows: List[dict]) -> "OrderedDict[str, List[dict]]":
    order = OrderedDict()
    for r in sorted(rows, key=lambda r: (r["summary"]["flops_rr"] > 0, r["label"])):
        order.setdefault(r["label"], []).append(r)
    return order


def _mean_std(values):
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def draw_accuracy(ax, rows: List[dict]) -> None:
    """Mean +- std per pruned method against its FLOPs reduction; the dense runs (no reduction)
    are a horizontal band (mean +- std) rather than a point at 0 %, so the x axis spans only the
    pruned methods and their real differences in FLOPs reduction stay readable. Methods within
    1 % of each other are dodged sideways by a few points on the page (a drawing offset only:
    the CSV holds the exact values)."""
    groups = by_label(rows)
    colours = dict(zip(groups, sns.color_palette("colorblind", len(groups))))
    dense = {n: rs for n, rs in groups.items() if all(r["summary"]["flops_rr"] == 0 for r in rs)}
    pruned = {n: rs for n, rs in groups.items() if n not in dense}
    for name, rs in dense.items():
        y, ys = _mean_std([100 * r["summary"]["test_acc"] for r in rs])
        ax.axhline(y, color=colours[name], lw=1, label=f"{name} (band: ± std)")
        ax.axhspan(y - ys, y + ys, color=colours[name], alpha=0.15, lw=0)
    cluster = {name: round(statistics.fmean(100 * r["summary"]["flops_rr"] for r in rs))
               for name, rs in pruned.items()}
    for name, rs in pruned.items():
        mates = [n for n in pruned if cluster[n] == cluster[name]]
        shift = DODGE_PT * (mates.index(name) - (len(mates) - 1) / 2)
        dodge = offset_copy(ax.transData, fig=ax.figure, x=shift, units="points")
        x, xs = _mean_std([100 * r["summary"]["flops_rr"] for r in rs])
        y, ys = _mean_std([100 * r["summary"]["test_acc"] for r in rs])
        ax.errorbar(x, y, xerr=xs, yerr=ys, fmt="o", color=colours[name], capsize=2, markersize=4, label=name,
                    transform=dodge)
        ax.scatter([100 * r["summary"]["flops_rr"] for r in rs], [100 * r["summary"]["test_acc"] for r in rs],
                   color=colours[name], s=6, alpha=0.5, transform=dodge)
    points = [(100 * r["summary"]["flops_rr"], 100 * r["summary"]["test_acc"])
              for rs in pruned.values() for r in rs]
    if points:
        ax.update_datalim(points)      # a dodged artist does not extend the axes' limits by itself
        xs_all = [p[0] for p in points]
        if max(xs_all) - min(xs_all) < 1:     # all at one reduction: leave room for the dodge
            mid = (max(xs_all) + min(xs_all)) / 2
            ax.set_xlim(mid - 0.5, mid + 0.5)
        ax.margins(y=0.15)
        ax.autoscale_view(scalex=max(xs_all) - min(xs_all) >= 1)
    ax.set(xlabel="FLOPs reduction (%)", ylabel="Test accuracy (%)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=6, borderaxespad=0)   # outside: points stay visible


def accuracy_figure(rows: List[dict], stem: Path) -> Dict[Path, bytes]:
    with paper_style():
        fig = new_figure(SINGLE_COLUMN)
        draw_accuracy(fig.subplots(), rows)
        files = render(fig, stem)
    files[stem.with_suffix(".csv")] = results_csv(rows)
    return files


def results_csv(rows: List[dict]) -> bytes:
    header = ["run", "label", "seed", "test_acc", "best_test_acc", "flops", "dense_flops", "flops_rr", "params",
              "params_rr", "pruned_epoch", "stable_epoch", "trigger", "acc_before_prune", "acc_after_prune"]
    out = []
    for r in rows:
        s = r["summary"]
        out.append([r["run"], r["label"], r["seed"], s["test_acc"], s["best_test_acc"], s["flops"], s["dense_flops"],
                    f"{s['flops_rr']:.6f}", s["params"], f"{s['params_rr']:.6f}", s["pruned_epoch"],
                    s.get("stable_epoch"), s.get("trigger"), s.get("acc_before_prune"), s.get("acc_after_prune")])
    return csv_bytes(header, out)


def markdown(rows: List[dict]) -> str:
    lines = ["| method | runs | test acc (%) | FLOPs red. (%) | params red. (%) | pruned at epoch | "
             "ms @1 dense / pruned | ms @64 dense / pruned |", "|---|---|---|---|---|---|---|---|"]
    for name, rs in by_label(rows).items():
        acc = _mean_std([100 * r["summary"]["test_acc"] for r in rs])
        rr = statistics.fmean(100 * r["summary"]["flops_rr"] for r in rs)
        pr = statistics.fmean(100 * r["summary"]["params_rr"] for r in rs)
        when = ", ".join(str(r["summary"]["pruned_epoch"]) for r in rs)
        lat = {b: [(r["summary"]["latency_ms"]["dense"].get(b), r["summary"]["latency_ms"]["pruned"].get(b))
                   for r in rs] for b in ("1", "64")}
        cells = []
        for b in ("1", "64"):
            pairs = [p for p in lat[b] if p[0] is not None]
            cells.append(f"{np.median([p[0] for p in pairs]):.2f} / {np.median([p[1] for p in pairs]):.2f}"
                         if pairs else "-")
        lines.append(f"| {name} | {len(rs)} | {acc[0]:.2f} ± {acc[1]:.2f} | {rr:.2f} | {pr:.2f} | {when} | "
                     f"{cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def docs_png(rows: List[dict], path: Path) -> Dict[Path, bytes]:
    """Both panels side by side as one small PNG for the README."""
    with paper_style():
        fig = new_figure(DOUBLE_PANEL)
        left, right = fig.subplots(1, 2)
        draw_stability(left, _ocs_runs(rows))
        draw_accuracy(right, rows)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DOCS_DPI, bbox_inches="tight")
    return {path: buffer.getvalue()}


def parser() -> OneLineParser:
    p = OneLineParser(prog="python -m analysis.structured", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="structured run directories")
    p.add_argument("--out", default="figures/structured", help="output folder [default: figures/structured]")
    p.add_argument("--docs", action="store_true", help="also write structured_cpu.png, both panels, small")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    out = check_out_dir(args.out)
    rows = collect(args.runs)
    files = {**stability_figure(rows, out / "stability"), **accuracy_figure(rows, out / "accuracy_vs_flops")}
    table = markdown(rows)
    files[out / "results.md"] = table.encode()
    if args.docs:
        files.update(docs_png(rows, out / "structured_cpu.png"))
    for path in write(files):
        print(f"wrote {path}")
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
