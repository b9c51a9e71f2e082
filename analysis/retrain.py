"""Retraining after pruning: schedules compared, and BIMP against pruning during training at an
equal budget (issue 14), as Markdown, CSV and PNG.

    python -m analysis.retrain runs/mnist-* --out figures/retrain

Every finished run given is read from its directory (config.json, round summaries):

  prune-retrain runs (--restart continue) go to the schedule table and figure: test accuracy
      after each phase (its sparsity) per retraining LR schedule (FT, LRW, SLR, CLR, LLR, ALLR),
      one panel per (dense budget T, retraining budget T_rt per phase), mean +- sample std over
      the runs that differ only in seeds (analysis.replicates: runs that differ in more are rows
      of their own, labelled with what differs, e.g. `LLR [batch_size=32]`), and the last phase's accuracy minus that of each run's
      own dense run (paired: the spread of the dense runs over seeds drops out);
  every pruned run also goes to the budget table and figure, by its total training steps
      (a continue run: its dense run's steps + all its phases; a one-round run: its steps):
      the methods (BIMP = continue with ALLR, OCP, AGP, ...) that reached the same final
      sparsity with the same total number of steps, the winner, its margin over the runner-up
      and that margin against the spread over seeds.

Wall times are the runs' own (summary wall_time_s, mean over seeds; BIMP's includes its dense
phase): they depend on the machine's load and compare runs made side by side only.

Dense runs (--schedule dense) are the reference lines. Files: retrain_schedules.{md,csv,png},
retrain_budget.{md,csv,png}; the Markdown also goes to stdout. Runs of one dataset at a time.
"""
import io
import logging
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Sequence

from analysis import cli, replicates
from analysis.figures import BAND_ALPHA, csv_bytes, new_figure, paper_style, write
from analysis.results import spread
from lth.errors import LthError, OneLineParser, cli_main
from lth.lottery import assemble
from lth.lottery.restart import RESTARTS
from lth.pruning.schedules import SCHEDULES
from lth.runs.store import RunStore

log = logging.getLogger("analysis.retrain")

ORDER = ("ft", "lrw", "slr", "clr", "llr", "allr")   # Zimmer et al.'s order: the baselines, then theirs
PANEL = (3.4, 2.8)  # inches per panel
LEGEND_WIDTH = 1.8  # inches beside the budget panels for their legend
PNG_DPI = 150       # screen resolution: the figures stay well under 200 kB for docs/


def describe(store: RunStore) -> dict:
    """One run as the tables need it; a run with unfinished rounds is an error."""
    cfg = cli.run_config(store)
    rounds = cfg.prune.rounds
    done = store.finished_rounds()
    if len(done) < rounds:
        raise LthError(f"{store.root} has {len(done)} of {rounds} rounds finished; finish it first "
                       f"(python -m lth.run --resume {store.root})")
    summaries = [store.load_summary(r) for r in range(1, rounds + 1)]
    row = {"run": cli.run_name(store), "dataset": cfg.data.dataset, "model": cfg.model.model,
           "lr_schedule": cfg.train.lr_schedule, "phases": rounds, "final_sparsity": cfg.prune.final_sparsity,
           "sparsities": [s["sparsity"] for s in summaries], "accs": [s["test_acc"] for s in summaries],
           "steps": sum(s["steps"] for s in summaries), "steps_per_epoch": summaries[0]["steps_per_epoch"],
           "wall_s": sum(s["wall_time_s"] for s in summaries), "experiment": replicates.run_experiment(cfg)}
    if not SCHEDULES.get(cfg.prune.schedule).traits["prunes"]:
        row["kind"], row["method"] = "dense", "dense"
    elif RESTARTS.get(cfg.prune.restart).traits["from_dense_run"]:
        dense = assemble.restart_policy(cfg).reference()
        dense_summary = dense.load_summary(dense.run_config().prune.rounds)
        dense_lr = dense.run_config().resolved().train.lr_schedule
        # BIMP: a budgeted dense phase with a linear LR, then ALLR (Zimmer et al.)
        bimp = cfg.train.lr_schedule == "allr" and dense_lr == "linear"
        # BIMP's split of the budget is part of the method: runs with another split are another row
        share = dense_summary["steps"] / (row["steps"] + dense_summary["steps"])
        method = f"BIMP (dense {100 * share:.0f} %)" if bimp else f"IMP-{cfg.train.lr_schedule.upper()} ({dense_lr} dense)"
        row.update(kind="retrain", method=method,
                   dense_steps=dense_summary["steps"], dense_epochs=dense_summary["steps"] / dense_summary["steps_per_epoch"],
                   dense_acc=dense_summary["test_acc"], rt_epochs=summaries[0]["steps"] / summaries[0]["steps_per_epoch"],
                   dense_lr=dense_lr)
        row["total_steps"] = row["steps"] + row["dense_steps"]
        row["total_wall_s"] = row["wall_s"] + dense_summary["wall_time_s"]
    else:
        row.update(kind="during", method=f"{cfg.prune.schedule.upper()} ({cfg.train.lr_schedule})",
                   total_steps=row["steps"], total_wall_s=row["wall_s"])
    return row


def schedule_groups(rows: List[dict]) -> List[dict]:
    """Continue runs grouped by setting and LR schedule, seed replicates only (analysis.replicates:
    runs that differ in anything else, e.g. the model or the batch size, are rows of their own,
    labelled by what differs): per-phase accuracy spreads."""
    retrain = [row for row in rows if row["kind"] == "retrain"]
    name = lambda row: (row["dense_lr"], row["dense_epochs"], row["rt_epochs"], row["phases"],  # noqa: E731
                        row["final_sparsity"], row["lr_schedule"])
    groups = replicates.split(retrain, name, lambda row: row["experiment"])
    out = []
    for key, variant, members in sorted(groups, key=lambda g: (g[0][:5], ORDER.index(g[0][5]) if g[0][5] in ORDER
                                                               else len(ORDER), g[1])):
        out.append({"dense_lr": key[0], "dense_epochs": key[1], "rt_epochs": key[2], "phases": key[3],
                    "final_sparsity": key[4], "schedule": key[5], "variant": variant,
                    "dense_acc": spread([m["dense_acc"] for m in members]),
                    "sparsity": [spread([m["sparsities"][i] for m in members])["mean"] for i in range(key[3])],
                    "acc": [spread([m["accs"][i] for m in members]) for i in range(key[3])],
                    "wall_s": spread([m["wall_s"] for m in members])["mean"],
                    # paired with each run's own dense run: the dense seed's spread drops out
                    "vs_dense": [spread([m["accs"][i] - m["dense_acc"] for m in members]) for i in range(key[3])],
                    "runs": len(members)})
    return out


def budget_groups(rows: List[dict]) -> List[dict]:
    """Pruned runs grouped by (final sparsity, total steps): the budgets that hold a pruning-during-
    training run and at least one other method (prune-retrain runs alone are the schedule table's)."""
    by_budget: Dict[tuple, Dict[str, List[dict]]] = defaultdict(lambda: defaultdict(list))
    pruned = [row for row in rows if row["kind"] != "dense"]
    # a method's cell pools seed replicates only; runs that differ in more are cells of their own
    named = replicates.labels(pruned, lambda row: row["method"], lambda row: row["experiment"])
    for row in pruned:
        by_budget[(row["final_sparsity"], row["total_steps"])][named[id(row)]].append(row)
    out = []
    for (sparsity, steps), methods in sorted(by_budget.items()):
        if len(methods) < 2 or not any(r["kind"] == "during" for rs in methods.values() for r in rs):
            continue
        cells = {m: spread([r["accs"][-1] for r in members]) for m, members in methods.items()}
        for m, members in methods.items():
            cells[m]["wall_s"] = spread([r["total_wall_s"] for r in members])["mean"]
        ranked = sorted(cells, key=lambda m: -cells[m]["mean"])
        win, second = cells[ranked[0]], cells[ranked[1]]
        per_epoch = next(iter(methods.values()))[0]["steps_per_epoch"]
        out.append({"final_sparsity": sparsity, "total_steps": steps, "epochs": steps / per_epoch, "cells": cells,
                    "winner": ranked[0], "runner_up": ranked[1], "margin": win["mean"] - second["mean"],
                    "spread": max(win["std"], second["std"]),
                    "ranges_overlap": win["min"] <= second["max"]})
    return out


def _signed(cell: dict) -> str:
    text = f"{100 * cell['mean']:+.2f}"
    return text + (f" ± {100 * cell['std']:.2f}" if cell["n"] > 1 else "")


def _pct(cell: dict) -> str:
    return f"{100 * cell['mean']:.2f} ± {100 * cell['std']:.2f}" if cell["n"] > 1 else f"{100 * cell['mean']:.2f}"


def _setting(g: dict) -> tuple:
    """What a schedule's row is compared within: the same dense run kind, budgets and target."""
    return g["dense_lr"], g["dense_epochs"], g["rt_epochs"], g["phases"], g["final_sparsity"]


def schedules_markdown(groups: List[dict]) -> str:
    if not groups:
        return "No prune-retrain runs (--restart continue) given.\n"
    phases = max(g["phases"] for g in groups)
    head = (["Dense LR", "Dense T (ep)", "T_rt/phase (ep)", "Schedule"] + [f"Phase {i + 1} acc. (%)" for i in range(phases)]
            + ["Last − its dense (pts)", "Sparsity after phases (%)", "Dense acc. (%)", "Retrain wall (s)", "Runs"])
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join([":---"] + ["---:"] * 2 + [":---"] + ["---:"] * (len(head) - 4)) + "|"]
    for g in groups:
        best = max(x["acc"][-1]["mean"] for x in groups if _setting(x) == _setting(g))
        accs = [_pct(c) for c in g["acc"]] + [""] * (phases - g["phases"])
        if g["acc"][-1]["mean"] == best:
            accs[g["phases"] - 1] = f"**{accs[g['phases'] - 1]}**"
        lines.append("| " + " | ".join([g["dense_lr"], f"{g['dense_epochs']:.3g}", f"{g['rt_epochs']:.3g}",
                                         g["schedule"].upper() + g["variant"], *accs, _signed(g["vs_dense"][-1]),
                                         "/".join(f"{100 * s:.1f}" for s in g["sparsity"]), _pct(g["dense_acc"]),
                                         f"{g['wall_s']:.0f}", str(g["runs"])]) + " |")
    return "\n".join(lines) + "\n"


def budget_markdown(groups: List[dict]) -> str:
    if not groups:
        return "No budget holds two methods at the same final sparsity and number of steps.\n"
    lines = ["| Sparsity (%) | Budget (steps = epochs) | Method | Final acc. (%) | Wall (s) | Runs |",
             "|---:|---:|:---|---:|---:|---:|"]
    verdicts = []
    for g in groups:
        for method, cell in sorted(g["cells"].items(), key=lambda kv: -kv[1]["mean"]):
            name = f"**{method}**" if method == g["winner"] else method
            lines.append(f"| {100 * g['final_sparsity']:.1f} | {g['total_steps']} = {g['epochs']:.2f} | {name} | "
                         f"{_pct(cell)} | {cell['wall_s']:.0f} | {cell['n']} |")
        head = (f"- {100 * g['final_sparsity']:.1f} % at {g['total_steps']} steps: {g['winner']} beats "
                f"{g['runner_up']} by {100 * g['margin']:.2f} points")
        if min(g["cells"][g["winner"]]["n"], g["cells"][g["runner_up"]]["n"]) < 2:
            verdicts.append(head + "; one run each, so no spread over seeds to compare with.")
            continue
        ratio = f"{g['margin'] / g['spread']:.1f}x" if g["spread"] > 0 else "no spread"
        line = head + (f"; the larger seed std of the two is {100 * g['spread']:.2f} points (margin {ratio} that); "
                       f"seed ranges {'overlap' if g['ranges_overlap'] else 'do not overlap'}")
        win = g["cells"][g["winner"]]
        for name, bimp in sorted(g["cells"].items()):
            if name.startswith("BIMP") and name != g["winner"]:
                line += (f"; {name} trails by {100 * (win['mean'] - bimp['mean']):.2f} points (its seed std "
                         f"{100 * bimp['std']:.2f})")
        verdicts.append(line + ".")
    return "\n".join(lines) + "\n\n" + "\n".join(verdicts) + "\n"


def schedules_csv(groups: List[dict]) -> bytes:
    rows = [[g["dense_lr"], g["dense_epochs"], g["rt_epochs"], g["schedule"] + g["variant"], i + 1, f"{g['sparsity'][i]:.6f}",
             f"{g['acc'][i]['mean']:.6f}", f"{g['acc'][i]['std']:.6f}", f"{g['vs_dense'][i]['mean']:.6f}",
             f"{g['vs_dense'][i]['std']:.6f}", g["acc"][i]["n"]]
            for g in groups for i in range(g["phases"])]
    return csv_bytes(["dense_lr", "dense_epochs", "rt_epochs_per_phase", "lr_schedule", "phase", "sparsity", "acc_mean",
                      "acc_std", "minus_dense_mean", "minus_dense_std", "runs"], rows)


def budget_csv(groups: List[dict]) -> bytes:
    rows = [[g["final_sparsity"], g["total_steps"], f"{g['epochs']:.4f}", m, f"{c['mean']:.6f}", f"{c['std']:.6f}",
             c["n"], int(m == g["winner"])] for g in groups for m, c in sorted(g["cells"].items())]
    return csv_bytes(["final_sparsity", "total_steps", "epochs", "method", "acc_mean", "acc_std", "runs", "winner"],
                     rows)


def render_png(fig, stem: Path) -> Dict[Path, bytes]:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI, bbox_inches="tight")
    return {stem.with_suffix(".png"): buffer.getvalue()}


def schedules_figure(groups: List[dict], stem: Path) -> Dict[Path, bytes]:
    """Accuracy against sparsity, one line per schedule, one panel per (T, T_rt)."""
    import seaborn as sns
    # one panel per setting that compares schedules (BIMP's lone ALLR phases stay in the table)
    counts = defaultdict(int)
    for g in groups:
        counts[_setting(g)] += 1
    panels = sorted(k for k, n in counts.items() if n > 1) or sorted(counts)
    colours = dict(zip(ORDER, sns.color_palette("colorblind", len(ORDER))))
    markers = dict(zip(ORDER, "osD^vP"))
    with paper_style():
        fig = new_figure((PANEL[0] * len(panels), PANEL[1]))
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        for ax, setting in zip(axes, panels):
            for g in (g for g in groups if _setting(g) == setting):
                xs = [100 * s for s in g["sparsity"]]
                ys = [100 * c["mean"] for c in g["acc"]]
                sd = [100 * c["std"] for c in g["acc"]]
                colour = colours.get(g["schedule"])
                ax.plot(xs, ys, marker=markers.get(g["schedule"], "o"), color=colour,
                        label=g["schedule"].upper() + g["variant"])
                ax.fill_between(xs, [y - s for y, s in zip(ys, sd)], [y + s for y, s in zip(ys, sd)], color=colour,
                                alpha=BAND_ALPHA)
                ax.axhline(100 * g["dense_acc"]["mean"], color="grey", linestyle="--", linewidth=0.8)
            ax.set_title(f"dense {setting[0]} T = {setting[1]:.3g} ep, T_rt = {setting[2]:.3g} ep/phase",
                         fontsize="small")
            ax.set_xlabel("Sparsity (%)")
        axes[0].set_ylabel("Test accuracy (%)")
        axes[-1].legend(loc="lower left", fontsize="small")
        return render_png(fig, stem)


def budget_figure(groups: List[dict], stem: Path) -> Dict[Path, bytes]:
    """Final accuracy against sparsity per method, one panel per budget in epochs."""
    import seaborn as sns
    budgets = sorted({round(g["epochs"], 6) for g in groups})
    methods = sorted({m for g in groups for m in g["cells"]})
    colours = dict(zip(methods, sns.color_palette("colorblind", len(methods))))
    with paper_style():
        fig = new_figure((PANEL[0] * len(budgets) + LEGEND_WIDTH, PANEL[1]))
        axes = fig.subplots(1, len(budgets), sharey=True, squeeze=False)[0]
        for ax, budget in zip(axes, budgets):
            chosen = sorted((g for g in groups if round(g["epochs"], 6) == budget), key=lambda g: g["final_sparsity"])
            for method in methods:
                points = [(100 * g["final_sparsity"], g["cells"][method]) for g in chosen if method in g["cells"]]
                if points:
                    ax.errorbar([p[0] for p in points], [100 * p[1]["mean"] for p in points],
                                yerr=[100 * p[1]["std"] for p in points], marker="o", capsize=3,
                                color=colours[method], label=method)
            ax.set_title(f"budget {budget:g} epochs")
            ax.set_xlabel("Sparsity (%)")
        axes[0].set_ylabel("Test accuracy (%)")
        # outside the panel: the methods crowd both ends of the sparsity axis
        axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="small", borderaxespad=0)
        return render_png(fig, stem)


def build(stores: Sequence[RunStore], out: Path) -> Dict[Path, bytes]:
    """Every output file, by path (nothing written yet)."""
    rows = [describe(s) for s in stores]
    sched, budget = schedule_groups(rows), budget_groups(rows)
    files = {out / "retrain_schedules.md": schedules_markdown(sched).encode(),
             out / "retrain_schedules.csv": schedules_csv(sched),
             out / "retrain_budget.md": budget_markdown(budget).encode(),
             out / "retrain_budget.csv": budget_csv(budget)}
    if sched:
        files.update(schedules_figure(sched, out / "retrain_schedules"))
    if budget:
        files.update(budget_figure(budget, out / "retrain_budget"))
    return files


def parser() -> OneLineParser:
    p = OneLineParser(prog="python -m analysis.retrain", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished runs of one dataset (dense, continue, "
                                                               "one-round pruning runs)")
    p.add_argument("--out", default="figures/retrain", help="output folder [default: figures/retrain]")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    out = cli.check_out_dir(args.out)
    files = build(cli.open_runs(args.runs), out)
    print(files[out / "retrain_schedules.md"].decode())
    print(files[out / "retrain_budget.md"].decode(), end="")
    for path in write(files):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
