"""The task graph of a study, and what is already done, read from the files (the only truth).

Per cell: one `run` task. With [analysis.stability], per measured (round, kind) of the run:
two `copy` tasks that need that round finished on disk (not the whole run: a round's copies
start while later rounds still train, whenever a worker is free), and one `interp` task after
both copies. Controls need the last round. The run itself is one task: lth's IMP driver trains
all rounds in one call, so rounds are not separate tasks (the copies' per-round dependency is
checked on the run's files as it goes).
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from lth.study import analyses, analysis_spec, cells as cells_mod
from lth.study.tasks import Task, copy_task_id, interp_task_id, run_task_id


@dataclass
class Plan:
    tasks: Dict[str, Task]          # in listing order
    cells: List[cells_mod.Cell]
    runs_root: Path
    cells_by_dir: Dict[str, cells_mod.Cell] = field(init=False)

    def __post_init__(self):
        self.cells_by_dir = {str(c.run_dir(self.runs_root)): c for c in self.cells}

    def is_done(self, task: Task) -> bool:
        p = task.payload
        if task.kind == "run":
            return cells_mod.is_done(self.cells_by_dir[task.run_dir].cfg, Path(task.run_dir))
        stability = analysis_spec.Stability.from_dict(p["stability"])
        if task.kind == "copy":
            return analyses.copy_done(Path(task.run_dir), p["round"], p["what"], p["copy"], stability)
        return analyses.measured(Path(task.run_dir), p["round"], p["what"], stability)

    def round_ready(self, task: Task) -> bool:
        """A copy's round is finished on disk (its summary.json exists)."""
        from lth.runs.store import RunStore
        return task.needs_round == 0 or RunStore(task.run_dir).round_done(task.needs_round)


def build(cells: List[cells_mod.Cell], runs_root: Path, stability: Optional[analysis_spec.Stability],
          data_dir: Optional[str] = None, gpus: int = 1) -> Plan:
    """gpus: devices of each run task (data-parallel ranks, issue 22); copies and
    interpolations take one."""
    tasks: Dict[str, Task] = {}
    for cell in cells:
        run_dir = str(cell.run_dir(runs_root))
        run_id = run_task_id(cell.name)
        tasks[run_id] = Task(run_id, "run", run_dir, {"id": run_id, "kind": "run", "config": cell.cfg.to_dict(),
                                                      "runs_root": str(runs_root), "run_dir": run_dir,
                                                      "gpus": gpus},
                             labels=cell.labels)
        if stability is None:
            continue
        for r, kind in stability.jobs(cell.cfg.prune.rounds):
            common = {"run_dir": run_dir, "round": r, "what": kind, "stability": stability.to_dict(),
                      "data_dir": data_dir}
            copy_ids = []
            for copy in analysis_spec.COPIES:
                tid = copy_task_id(cell.name, r, kind, copy)
                tasks[tid] = Task(tid, "copy", run_dir, {"id": tid, "kind": "copy", "copy": copy, **common},
                                  needs_round=r, labels={**cell.labels, "round": r, "what": kind, "copy": copy})
                copy_ids.append(tid)
            tid = interp_task_id(cell.name, r, kind)
            tasks[tid] = Task(tid, "interp", run_dir, {"id": tid, "kind": "interp", **common}, deps=tuple(copy_ids),
                              needs_round=r, labels={**cell.labels, "round": r, "what": kind})
    return Plan(tasks, cells, Path(runs_root))
