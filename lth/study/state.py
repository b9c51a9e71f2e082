"""What a study driver knows beyond the files: which tasks it has running, which failed and why.

STUDY_DIR/state.json, written atomically by the driver alone (one writer: no lock needed):

    {"driver": {"pid", "host", "started", "heartbeat", "executor"},
     "tasks": {task id: {"status": "running" | "failed", "error", "attempts", "seconds", "pid", "host"}}}

Done-ness is never read from here: the run and stability files are the truth, so a task that
finished after the driver was killed counts as done. A failed task keeps its one-line error
until a rerun retries it; "running" is believed only while the driver's heartbeat is fresh.
"""
import os
import socket
import time
from pathlib import Path
from typing import Dict, Optional

from lth.errors import LthError
from lth.runs.files import read_json, write_json

HEARTBEAT_S = 5.0        # the driver rewrites state.json at least this often while it runs
STALE_AFTER_S = 60.0     # a heartbeat older than this: the driver is gone, nothing is running


class StudyState:
    def __init__(self, study_dir: Path):
        self.path = Path(study_dir) / "state.json"
        self.tasks: Dict[str, dict] = {}
        self.driver: Dict[str, object] = {}
        self._written = 0.0

    @classmethod
    def load(cls, study_dir: Path) -> "StudyState":
        state = cls(study_dir)
        if state.path.exists():
            try:
                saved = read_json(state.path)
            except LthError:
                saved = {}  # a corrupted state only loses failure messages: the files say what is done
            state.tasks = dict(saved.get("tasks", {}))
            state.driver = dict(saved.get("driver", {}))
        return state

    def start_driver(self, executor: str) -> None:
        now = time.time()
        self.driver = {"pid": os.getpid(), "host": socket.gethostname(), "started": now, "heartbeat": now,
                       "executor": executor}
        # What a killed driver had running is not running any more; failures stay until retried.
        self.tasks = {k: v for k, v in self.tasks.items() if v.get("status") == "failed"}
        self.save()

    def stop_driver(self) -> None:
        self.driver["heartbeat"] = 0.0
        self.driver["stopped"] = time.time()
        self.tasks = {k: v for k, v in self.tasks.items() if v.get("status") == "failed"}
        self.save()

    def driver_alive(self) -> bool:
        beat = float(self.driver.get("heartbeat", 0.0) or 0.0)
        if time.time() - beat > STALE_AFTER_S:
            return False
        if self.driver.get("host") == socket.gethostname():
            try:
                os.kill(int(self.driver.get("pid", 0)), 0)
            except (ProcessLookupError, ValueError):
                return False
            except PermissionError:
                return True
        return True

    def submitted(self, task_id: str) -> None:
        entry = self.tasks.get(task_id, {})
        self.tasks[task_id] = {"status": "running", "attempts": entry.get("attempts", 0) + 1, "since": time.time(),
                               "pid": None, "host": None}
        self.save(throttle=True)

    def started(self, task_id: str, pid: Optional[int], host: Optional[str]) -> None:
        """A worker began the task (again, after a lost worker: one more attempt)."""
        entry = self.tasks.setdefault(task_id, {"status": "running", "attempts": 1, "since": time.time()})
        if entry.get("pid") is not None and entry.get("pid") != pid:
            entry["attempts"] = entry.get("attempts", 1) + 1
        entry.update(pid=pid, host=host)
        self.save()  # at once: status and operators look for the pid of what is running

    def finished(self, task_id: str) -> None:
        self.tasks.pop(task_id, None)
        self.save(throttle=True)

    def failed(self, task_id: str, error: str, seconds: float = 0.0) -> None:
        entry = self.tasks.get(task_id, {})
        self.tasks[task_id] = {"status": "failed", "error": error, "attempts": entry.get("attempts", 1),
                               "seconds": seconds, "at": time.time()}
        self.save()

    def status_of(self, task_id: str) -> Optional[dict]:
        entry = self.tasks.get(task_id)
        if entry and entry.get("status") == "running" and not self.driver_alive():
            return None
        return entry

    def save(self, throttle: bool = False) -> None:
        now = time.time()
        if throttle and now - self._written < 1.0:
            return
        self.driver["heartbeat"] = now if self.driver.get("pid") == os.getpid() else self.driver.get("heartbeat", 0)
        write_json(self.path, {"driver": self.driver, "tasks": self.tasks})
        self._written = now

    def beat(self) -> None:
        if time.time() - self._written >= HEARTBEAT_S:
            self.save()
