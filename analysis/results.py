"""Saved stability results, read back from run directories and summarised over runs.

One result per (run, round, kind) for the chosen settings (analysis.settings). Runs are grouped
by their schedule (and model, when the runs mix models), and only seed replicates share a group
(analysis.replicates: runs that differ in more get a group of their own, labelled with what
differs); the spread over a group's runs is what Fig. 3's bands and Table 4's +- show.
"""
import logging
from typing import Dict, List, Sequence

import numpy as np

from analysis import cli, replicates
from analysis.settings import CopySettings, ProbeSettings, find_result
from analysis.tickets import KINDS
from lth.errors import LthError
from lth.pruning.schedules import SCHEDULES
from lth.runs.store import RunStore
from lth.runs.files import read_json

log = logging.getLogger(__name__)

# The paper's order; others follow by name. "imp" is one-shot pruning at the end of each round
# (original IMP), "one_shot" prunes at 40 % of the round (the paper's One-Shot inside a round).
SCHEDULE_ORDER = ("one_shot", "imp", "iterative", "agp", "ocp")
PAPER_SCHEDULES = ("one_shot", "iterative", "agp", "ocp")   # the paper's Fig. 2


def schedule_label(name: str) -> str:
    """A schedule's label in figures and tables: its entry's trait `label` (lth.pruning.schedules),
    else its name (also for a run made with a plugin's schedule that is not installed here)."""
    entry = SCHEDULES.entries.get(name)
    return (entry.traits["label"] if entry is not None else None) or name


KIND_LABELS = {"ticket": "Ticket", "reinit": "Random reinit", "random": "Random pruning"}


def collect(stores: Sequence[RunStore], copies: CopySettings, probe: ProbeSettings,
            required: bool = True) -> List[dict]:
    """Every saved result of these settings in these runs, labelled with its group (the schedule,
    and the model when the runs mix models) as the run's config says, and with `round_acc`: the
    IMP run's own test accuracy at the end of that round (its round summary). `required`: an
    LthError when there is none, else an empty list."""
    rows = []
    for store in stores:
        cfg = cli.run_config(store)
        found = [read_json(path) for r in store.finished_rounds() for kind in KINDS
                 if (path := find_result(store, r, kind, copies, probe)) is not None]
        if not found and required:
            log.warning("%s has no stability results for these settings (copies %s, %s); skipped",
                        store.root, copies.folder_name(), probe.file_name(True)[:-5])
        for row in found:
            summary = store.load_summary(row["round"])
            row.update(run_dir=str(store.root.resolve()), schedule=cfg.prune.schedule, model=cfg.model.model,
                       round_acc=summary.get("test_acc"), experiment=replicates.run_experiment(cfg))
        rows += found
    if not rows:
        if not required:
            return []
        raise LthError(f"no stability results with these settings (copies {copies.folder_name()}, "
                       f"{probe.file_name(True)[:-5]}) in the given runs; run python -m analysis.stability first")
    models_mixed = len({row["model"] for row in rows}) > 1
    for row in rows:
        label = schedule_label(row["schedule"])
        row["group"] = f"{row['model']} {label}" if models_mixed else label
    named = replicates.labels(rows, lambda row: row["group"], lambda row: row["experiment"])
    for row in rows:
        row["group"] = named[id(row)]
        del row["experiment"]
    return rows


def group_order(rows: List[dict]) -> List[str]:
    """Group labels in the paper's schedule order."""
    def key(row):
        rank = SCHEDULE_ORDER.index(row["schedule"]) if row["schedule"] in SCHEDULE_ORDER else len(SCHEDULE_ORDER)
        return (row["model"], rank, row["schedule"])
    ordered = []
    for row in sorted(rows, key=key):
        if row["group"] not in ordered:
            ordered.append(row["group"])
    return ordered


def spread(values: Sequence[float]) -> Dict[str, float]:
    """Mean, sample standard deviation (0 for one value), min, max and count."""
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": len(v)}


def by_round(rows: List[dict], metric: str, kind: str = "ticket") -> List[dict]:
    """Fig. 3's points: `metric` per (group, round) over the group's runs."""
    points = []
    for group in group_order(rows):
        selected = [row for row in rows if row["group"] == group and row["kind"] == kind]
        for r in sorted({row["round"] for row in selected}):
            at = [row for row in selected if row["round"] == r]
            points.append({"group": group, "round": r, "sparsity": float(np.mean([row["sparsity"] for row in at])),
                           **spread([row[metric] for row in at])})
    return points


def last_round(rows: List[dict]) -> List[dict]:
    """Table 4's cells: per group, at each run's last measured round, the IMP run's own accuracy
    at the end of that round (`round`) and the re-trained accuracy of each kind (the mean of its
    two copies)."""
    last = {}
    for row in rows:
        last[row["run_dir"]] = max(last.get(row["run_dir"], 0), row["round"])
    at_last = [row for row in rows if row["round"] == last[row["run_dir"]]]
    table = []
    for group in group_order(rows):
        members = [row for row in at_last if row["group"] == group]
        cells = {kind: spread([row["ticket_acc"] for row in members if row["kind"] == kind])
                 for kind in KINDS if any(row["kind"] == kind for row in members)}
        ends = {row["run_dir"]: row["round_acc"] for row in members if row.get("round_acc") is not None}
        if ends:   # once per run, whichever kinds were measured
            cells["round"] = spread(list(ends.values()))
        rounds = sorted({row["round"] for row in members})
        if len(rounds) > 1:
            log.warning("%s: the runs' last measured rounds differ (%s); Table 4 mixes them", group, rounds)
        table.append({"group": group, "rounds": rounds, "runs": len({row["run_dir"] for row in members}),
                      "sparsity": float(np.mean([row["sparsity"] for row in members])), "cells": cells})
    return table
