"""A study's cells: each point of its axes resolved to a validated RunConfig, whose hashed run
directory (RUNS_ROOT/<dataset>-<model>-<schedule>-<hash8>) is the cell's identity. Two cells
with the same config (in one study, or in two studies sharing a runs root) are one run: it
trains once, and a rerun skips it once all its rounds are done.

The two calls into lth's run machinery live here and nowhere else in lth.study:
`make_config` (flat fields -> resolved, validated config: lth.config.from_overrides) and
`execute_cell` (run a config to completion, resuming what a killed run left: lth.execute).
"""
import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from lth import config as config_mod
from lth.errors import LthError
from lth.runs.store import RunStore, run_name
from lth.study import budget as budget_mod
from lth.study.spec import Spec, seed_fields

log = logging.getLogger(__name__)


@dataclass
class Cell:
    labels: Dict[str, Any]                 # axis -> value: what tables index by (seed, budget included)
    cfg: config_mod.RunConfig              # resolved and validated
    also: List[Dict[str, Any]] = field(default_factory=list)  # labels of later cells with this config

    @property
    def name(self) -> str:
        return run_name(self.cfg)

    def run_dir(self, runs_root) -> Path:
        return Path(runs_root) / self.name

    def label_text(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.labels.items())


def make_config(flat: Dict[str, Any], preset: Optional[str], where: str) -> config_mod.RunConfig:
    """Flat field overrides over a preset -> the resolved, validated config; errors name the cell."""
    try:
        return config_mod.from_overrides(flat, preset)
    except LthError as e:
        raise LthError(f"{where}: {e}") from None


def points(spec: Spec) -> List[Dict[str, Any]]:
    """Every point of the axes as {field: value} plus the pseudo-fields `seed` and `budget`,
    in listing order (grid keys, zipped axes, budget, seeds innermost)."""
    axes: List[List[Dict[str, Any]]] = [[{key: v} for v in values] for key, values in spec.grid.items()]
    for z in spec.zips:
        n = len(next(iter(z.values())))
        axes.append([{key: values[i] for key, values in z.items()} for i in range(n)])
    if spec.budget is not None:
        axes.append([{"budget": m} for m in spec.budget["multiples"]])
    if spec.seeds is not None:
        axes.append([{"seed": s} for s in spec.seeds])
    return [{k: v for part in combo for k, v in part.items()} for combo in itertools.product(*axes)]


def expand(spec: Spec, runtime: Optional[Dict[str, Any]] = None) -> List[Cell]:
    """The study's cells, deduplicated by config hash (the first point keeps the cell, later
    ones are recorded in `also`). `runtime`: runtime fields for every cell (data_dir)."""
    if spec.budget is not None:
        budget_mod.check(spec.budget, spec.where)
    cells: Dict[str, Cell] = {}
    for point in points(spec):
        flat = {**spec.base, **{k: v for k, v in point.items() if k not in ("seed", "budget")}}
        if "seed" in point:
            flat.update(seed_fields(point["seed"]))
        flat.update(runtime or {})
        where = f"{spec.where} cell {' '.join(f'{k}={v}' for k, v in point.items())}" if point else spec.where
        if "budget" in point:  # stretch the cell's own budget (its schedule and epochs before the budget)
            before = make_config(flat, spec.preset, where)
            if before.train.steps:
                raise LthError(f"{where}: a budget axis needs a budget in epochs, not steps = {before.train.steps}")
            flat.update(budget_mod.fields(spec.budget, before.prune.schedule, point["budget"], before.train.epochs))
        cfg = make_config(flat, spec.preset, where)
        key = cfg.hash()
        if key in cells:
            cells[key].also.append(point)
        else:
            cells[key] = Cell(point, cfg)
    return list(cells.values())


def rounds_done(cfg: config_mod.RunConfig, run_dir: Path) -> int:
    """Finished rounds of the cell's run (0 when it has not started)."""
    store = RunStore(run_dir)
    if not store.is_run():
        return 0
    return sum(store.round_done(r) for r in range(1, cfg.prune.rounds + 1))


def is_done(cfg: config_mod.RunConfig, run_dir: Path) -> bool:
    return rounds_done(cfg, run_dir) == cfg.prune.rounds


def execute_cell(cfg: config_mod.RunConfig, runs_root, device: str, run_dir: Optional[Path] = None) -> dict:
    """Run (or finish) the cell's run with lth.execute (its lock, checks and resume); returns
    {"run_dir", "rounds", "test_acc"} of its last round."""
    import lth
    result = lth.execute(cfg, runs_root=str(runs_root), run_dir=None if run_dir is None else str(run_dir),
                         device=device, progress=False)
    return {"run_dir": str(result.run_dir), "rounds": len(result.summaries),
            "test_acc": result.summaries[-1]["test_acc"]}
