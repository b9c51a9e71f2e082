"""The interface between the study driver and an executor.

The driver alone decides what runs: it submits a task only when its dependencies are done and
the executor has a free slot, and never submits a task that is already in flight. So no two
workers ever work on the same run or copy, on any filesystem, without file locks. An executor
only runs what it is given, retries a task whose worker was lost (the task resumes from its
checkpoints), and reports each task's outcome once.
"""
from dataclasses import dataclass
from typing import List, Optional


@dataclass
class Outcome:
    task_id: str
    ok: bool
    result: Optional[dict] = None
    error: Optional[str] = None       # one line
    seconds: float = 0.0
    pid: Optional[int] = None
    host: Optional[str] = None
    started: bool = False             # True: not an outcome, the task started on pid/host


class Executor:
    name = "executor"

    def free_slots(self) -> int:
        """How many more tasks may be submitted now."""
        raise NotImplementedError

    def fits(self, payload: dict) -> bool:
        """Whether this task fits the free resources now (a task asking for G GPUs, issue 22)."""
        return True

    def check(self, payloads) -> None:
        """Refuse, before anything runs, tasks this executor can never run (one line)."""

    def submit(self, task_id: str, payload: dict, log_file: str) -> None:
        raise NotImplementedError

    def poll(self, timeout: float) -> List[Outcome]:
        """Outcomes (and start notices) that arrived, waiting up to `timeout` s for the first."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop the workers (what they were doing resumes on the next run)."""
