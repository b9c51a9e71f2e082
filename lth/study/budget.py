"""Experiment B's budget axis: the config fields of a cell trained for `multiple` times the
base budget (paper section 4, Table 3).

    [budget]
    multiples = [1, 1.25, 2, 4]         # the axis (a grid of multiples: see below)
    base_epochs = 50                    # optional: the base budget (default: each cell's own epochs)
    pretrain = { one_shot = 0.4, iterative = 0.2 }   # fraction of the base budget before pruning
    extend = "after_pruning"            # or "whole": stretch every schedule's whole run

One-Shot and Iterative keep their pretraining (p * base epochs, p = 0.4 / 0.2) and extend only
the training after pruning starts: epochs = base * (p + (1 - p) * m), base being the
cell's own epochs (or budget.base_epochs). AGP and One-Cycle
stretch the whole run: epochs = base * m, their schedules being fractions of it. So the paper's
"3.33x" for One-Shot on CIFAR-100 is 20 + 100 epochs, not 166.

The pruning start must stay at p * base epochs while the budget changes. lth's schedules take
it as a fraction of the run (`start`), so the cell's `start` is p * base / epochs: the budget is
expressed through the cell's config, and lth's config and schedules are unchanged. The step where pruning happens is then within one step of
p * base * steps_per_epoch (exact when epochs * steps_per_epoch is a whole number; tests check
the bound). At m = 1 `start` is left to the schedule's default when that default equals p, and
the normalised hash makes an explicit default equal anyway: the 1x cells are Table 2's cells
and train once for both tables.

Search: a grid of multiples, all trained (no early stop), and Table 3 reports the smallest
multiple whose mean accuracy over seeds reaches the target. A grid rather than double-then-
bisect: its cells are known before anything runs, so they dedupe, run in parallel, show in
--dry-run and cost estimates, and a rerun never depends on earlier results; the paper's
reported multiples (1.25, 1.4, 2, 2.5, 3.2, 3.33, 4, 7.5) are the paper-scale grid.
"""
import dataclasses
from typing import Any, Dict

from lth.pruning import schedules
from lth.errors import LthError

EXTEND_MODES = ("after_pruning", "whole")
KEYS = ("multiples", "base_epochs", "pretrain", "extend")


def check(budget: Dict[str, Any], where: str) -> None:
    for key in budget:
        if key not in KEYS:
            raise LthError(f"{where}: unknown key budget.{key!r}; allowed: {', '.join(KEYS)}")
    multiples = budget.get("multiples")
    if (not isinstance(multiples, list) or not multiples
            or not all(isinstance(m, (int, float)) and not isinstance(m, bool) and m >= 1 for m in multiples)):
        raise LthError(f"{where}: budget.multiples must be a non-empty list of numbers >= 1, got {multiples!r}")
    base = budget.get("base_epochs", 1.0)
    if not isinstance(base, (int, float)) or isinstance(base, bool) or base <= 0:
        raise LthError(f"{where}: budget.base_epochs must be a positive number, got {base!r}")
    pretrain = budget.get("pretrain", {})
    if not isinstance(pretrain, dict) or not all(isinstance(v, (int, float)) and 0 < v < 1 for v in pretrain.values()):
        raise LthError(f"{where}: budget.pretrain must map schedules to fractions in (0, 1), got {pretrain!r}")
    for name in pretrain:
        if default_start(name) is None:
            raise LthError(f"{where}: budget.pretrain names {name!r}, a schedule without a pruning start "
                           f"(schedules with one: {', '.join(n for n in schedules.SCHEDULES.names() if default_start(n) is not None)})")
    if budget.get("extend", "after_pruning") not in EXTEND_MODES:
        raise LthError(f"{where}: budget.extend must be one of {', '.join(EXTEND_MODES)}, got {budget['extend']!r}")


def default_start(schedule: str):
    """The schedule's own default pruning start (its `start` keyword), or None without one."""
    fields = {f.name: f for f in dataclasses.fields(schedules.SCHEDULES.get(schedule).params)}
    return fields["start"].default if "start" in fields else None


def fields(budget: Dict[str, Any], schedule: str, multiple: float, epochs: float) -> Dict[str, Any]:
    """The config fields of a cell of `schedule` at `multiple` times the base budget (the
    cell's own `epochs`, or budget.base_epochs)."""
    base = float(budget.get("base_epochs", epochs))
    pretrain = budget.get("pretrain", {})
    if budget.get("extend", "after_pruning") == "whole" or schedule not in pretrain:
        return {"epochs": base * multiple}
    p = float(pretrain[schedule])
    epochs = base * (p + (1.0 - p) * multiple)
    out = {"epochs": epochs}
    if multiple != 1 or default_start(schedule) != p:
        out["start"] = p * base / epochs
    return out
