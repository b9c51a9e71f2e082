"""The study driver: hands ready tasks to an executor until nothing is left that can run.

A task is ready when its dependencies finished and, for a copy, when its round is done on
disk. The driver submits it once (no file locks decide who runs what), records its start and
its outcome in state.json, and draws a progress bar (one log line per task off a terminal).
A failed task keeps its one-line error and blocks only what depends on it; everything else
goes on. Tasks done on disk are never submitted, so a rerun after a kill, a failure or a
Ctrl-C does only what is left, and retries what failed.
"""
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

from tqdm import tqdm

from lth.study.executors.base import Executor
from lth.study.plan import Plan
from lth.study.state import StudyState
from lth.study.tasks import Task

log = logging.getLogger("lth.study")

POLL_S = 1.0      # how long the driver waits for an outcome before looking at the files again


@dataclass
class Result:
    done: List[str] = field(default_factory=list)       # finished by this driver
    skipped: List[str] = field(default_factory=list)    # already done when it started
    failed: Dict[str, str] = field(default_factory=dict)
    blocked: Dict[str, str] = field(default_factory=dict)


def drive(plan: Plan, executor: Executor, state: StudyState, study_dir: Path, progress: bool = True) -> Result:
    result = Result()
    pending: Dict[str, Task] = {}
    for tid, task in plan.tasks.items():
        if plan.is_done(task):
            result.skipped.append(tid)
        else:
            pending[tid] = task
    finished = set(result.skipped)
    running: Dict[str, float] = {}
    count, total = 0, len(pending)
    failed_before = sum(1 for t in pending if state.tasks.get(t, {}).get("status") == "failed")
    cut_short = sum(1 for t in pending if state.tasks.get(t, {}).get("status") == "running")
    log.info("%d tasks: %d already done, %d to do (%d failed before: retried; %d were running when the last "
             "driver stopped: resumed)", len(plan.tasks), len(result.skipped), len(pending), failed_before, cut_short)
    state.start_driver(executor.name)
    bar = tqdm(total=len(pending), desc="study", unit="task", disable=not (progress and sys.stderr.isatty()))
    try:
        while pending or running:
            _block(plan, pending, running, result, finished)
            for task in _ready(plan, pending, running, finished):
                if executor.free_slots() < 1:
                    break
                if not executor.fits(task.payload):  # issue 22: first fit of multi-GPU tasks
                    continue
                executor.submit(task.id, task.payload, str(study_dir / "logs" / task.log_name()))
                running[task.id] = time.time()
                state.submitted(task.id)
            if not running:
                break  # what is left is blocked by failures
            for o in executor.poll(POLL_S):
                if o.started:
                    state.started(o.task_id, o.pid, o.host)
                    continue
                running.pop(o.task_id, None)
                task = pending.pop(o.task_id)
                if o.ok:
                    finished.add(o.task_id)
                    result.done.append(o.task_id)
                    state.finished(o.task_id)
                else:
                    result.failed[o.task_id] = o.error
                    state.failed(o.task_id, o.error, o.seconds)
                    log.error("failed: %s: %s", _describe(task), o.error)
                count += 1
                bar.update(1)
                bar.set_postfix(running=len(running), failed=len(result.failed))
                if bar.disable and progress:
                    log.info("[%d/%d] %s %s (%.1f s)", count, total, "done" if o.ok else "FAILED",
                             _describe(task), o.seconds)
            state.beat()
    finally:
        bar.close()
        state.stop_driver()
    for tid in pending:
        result.blocked.setdefault(tid, "blocked")
    return result


def _ready(plan: Plan, pending: Dict[str, Task], running: Dict[str, float], finished: set) -> List[Task]:
    """Ready tasks in plan order: the runs first (the critical path), then the analyses."""
    ready = [t for t in pending.values() if t.id not in running and all(d in finished for d in t.deps)
             and (t.kind == "run" or plan.round_ready(t))]
    return sorted(ready, key=lambda t: t.kind != "run")


def _block(plan: Plan, pending: Dict[str, Task], running: Dict[str, float], result: Result, finished: set) -> None:
    """Tasks that can no longer run: a dependency failed, or their run failed before their round."""
    from lth.study.tasks import run_task_id
    changed = True
    while changed:
        changed = False
        for tid, task in list(pending.items()):
            if tid in running or tid in result.blocked:
                continue
            bad = [d for d in task.deps if d in result.failed or d in result.blocked]
            run_id = run_task_id(Path(task.run_dir).name)
            if not bad and task.kind != "run" and run_id in result.failed and not plan.round_ready(task):
                bad = [run_id]
            if bad:
                result.blocked[tid] = f"blocked by {bad[0]}"
                del pending[tid]
                changed = True


def _describe(task: Task) -> str:
    return f"{task.id} ({' '.join(f'{k}={v}' for k, v in task.labels.items())})"
