"""What `python -m lth.study SPEC status` and `--dry-run` print: one line per cell, then totals.

Status of a cell's run: done, running (pid@host, while the driver's heartbeat is fresh),
failed (its one-line error), or pending (with the rounds already done). Stability tasks are
summed per cell ("analysis 12/48": copies and interpolations done of those planned).
"""
from pathlib import Path
from typing import Dict, List, Optional

from lth.study import cells as cells_mod
from lth.study.plan import Plan
from lth.study.state import StudyState
from lth.study.tasks import run_task_id


def task_status(plan: Plan, state: StudyState, tid: str) -> str:
    if plan.is_done(plan.tasks[tid]):
        return "done"
    entry = state.status_of(tid)
    if entry:
        return entry["status"]
    return "pending"


def cell_lines(plan: Plan, state: Optional[StudyState], hours: Optional[Dict[str, float]] = None) -> List[str]:
    lines, by_run = [], {}
    for tid, task in plan.tasks.items():
        if task.kind != "run":
            by_run.setdefault(task.run_dir, []).append(tid)
    width = max((len(c.label_text()) for c in plan.cells), default=10)
    for i, cell in enumerate(plan.cells, start=1):
        run_dir = cell.run_dir(plan.runs_root)
        tid = run_task_id(cell.name)
        status = task_status(plan, state, tid) if state else ("done" if plan.is_done(plan.tasks[tid]) else "pending")
        if status == "pending":
            done = cells_mod.rounds_done(cell.cfg, run_dir)
            status = f"pending ({done}/{cell.cfg.prune.rounds} rounds)" if done else "pending"
        elif status == "running" and state:
            entry = state.tasks.get(tid, {})
            done = cells_mod.rounds_done(cell.cfg, run_dir)
            status = f"running ({done}/{cell.cfg.prune.rounds} rounds, pid {entry.get('pid')}@{entry.get('host')})"
        elif status == "failed" and state:
            status = f"failed: {state.tasks[tid].get('error')}"
        extra = ""
        analysis = by_run.get(str(run_dir), [])
        if analysis:
            done = sum(plan.is_done(plan.tasks[a]) for a in analysis)
            failed = sum(1 for a in analysis if state and (state.status_of(a) or {}).get("status") == "failed")
            extra = f"  analysis {done}/{len(analysis)}" + (f" ({failed} failed)" if failed else "")
        cost = "" if hours is None else (f"  ~{hours[cell.name]:.2f} h" if hours[cell.name] >= 0.1
                                         else f"  ~{60 * hours[cell.name]:.1f} min")
        shared = f"  (also: {'; '.join(' '.join(f'{k}={v}' for k, v in a.items()) for a in cell.also)})" if cell.also else ""
        lines.append(f"{i:>4}  {cell.label_text():<{width}}  {cell.name}  {status}{extra}{cost}{shared}")
    return lines


def totals(plan: Plan, state: Optional[StudyState]) -> Dict[str, Dict[str, int]]:
    """{task kind: {status: count}}."""
    out: Dict[str, Dict[str, int]] = {}
    for tid, task in plan.tasks.items():
        status = task_status(plan, state, tid) if state else ("done" if plan.is_done(task) else "pending")
        out.setdefault(task.kind, {}).setdefault(status, 0)
        out[task.kind][status] += 1
    return out


def totals_line(counts: Dict[str, Dict[str, int]]) -> str:
    return "; ".join(f"{kind}: " + ", ".join(f"{n} {status}" for status, n in sorted(c.items()))
                     for kind, c in counts.items())


def print_status(plan: Plan, state: StudyState, spec, study_dir: Path) -> None:
    driver = "a driver is running (pid {pid} on {host})".format(**state.driver) if state.driver_alive() \
        else "no driver running"
    print(f"study {spec.name} at scale {spec.scale}: {len(plan.cells)} cells, runs under {plan.runs_root}; {driver}")
    for line in cell_lines(plan, state):
        print(line)
    print(totals_line(totals(plan, state)))
    for tid, entry in state.tasks.items():   # failed analysis tasks (a failed run shows on its cell's line)
        task = plan.tasks.get(tid)
        if entry.get("status") == "failed" and task is not None and task.kind != "run" and not plan.is_done(task):
            print(f"failed: {tid}: {entry.get('error')}")
    print(f"state and logs: {study_dir}")
