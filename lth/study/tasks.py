"""A study's units of work and the one function that performs any of them, in whichever process
an executor chose (a local worker, a Ray worker).

    run     train (or finish) one cell's IMP run                       lth.study.cells.execute_cell
    copy    train one copy of round r's ticket or control               lth.study.analyses.train_copy
    interp  interpolate between the two copies, save the result         lth.study.analyses.interpolate

A task is described by a JSON-able payload, so it crosses process and machine boundaries as
it is. Every task resumes what an earlier, killed attempt left (runs and copies from their
epoch checkpoints), which makes retrying a lost task safe. `perform` never raises: an error
comes back as one line, and the task's log file (STUDY_DIR/logs/<task>.log) keeps the details.
"""
import logging
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from lth.errors import LthError

log = logging.getLogger(__name__)


@dataclass
class Task:
    id: str
    kind: str                       # run, copy, interp
    run_dir: str
    payload: dict
    deps: tuple = ()                # task ids that must finish first
    needs_round: int = 0            # copy tasks: this round of the run must be done on disk
    labels: dict = field(default_factory=dict)  # for listings

    def log_name(self) -> str:
        return self.id.replace("/", "_").replace(":", "_") + ".log"


def run_task_id(run_name: str) -> str:
    return f"run:{run_name}"


def copy_task_id(run_name: str, r: int, kind: str, copy: str) -> str:
    return f"copy:{run_name}:r{r:02d}:{kind}:{copy}"


def interp_task_id(run_name: str, r: int, kind: str) -> str:
    return f"interp:{run_name}:r{r:02d}:{kind}"


def one_line(e: BaseException) -> str:
    """An exception as one line: an LthError's own message, else its type and first line."""
    if isinstance(e, LthError):
        return " ".join(str(e).split())
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}"[:300] if text else type(e).__name__


def perform(payload: dict, device: str, threads: int, log_file: Optional[str] = None) -> dict:
    """Do one task; returns {"ok": True, "result": ...} or {"ok": False, "error": one line}, with
    the pid, host and seconds taken. Logging goes to `log_file` (appended) while it runs."""
    import torch
    torch.set_num_threads(max(1, threads))
    handler = _attach_log(log_file)
    began = time.perf_counter()
    where = {"pid": os.getpid(), "host": socket.gethostname()}
    log.info("task %s started on %s pid %d (device %s, %d threads)", payload["id"], where["host"], where["pid"],
             device, threads)
    try:
        result = _dispatch(payload, device, threads, log_file)
        out = {"ok": True, "result": result}
        log.info("task %s finished in %.1f s", payload["id"], time.perf_counter() - began)
    except BaseException as e:  # noqa: BLE001 - any failure of one task must not stop the others
        if isinstance(e, KeyboardInterrupt):
            raise
        log.error("task %s failed: %s\n%s", payload["id"], one_line(e),
                  "" if isinstance(e, LthError) else traceback.format_exc())
        out = {"ok": False, "error": one_line(e)}
    finally:
        _detach_log(handler)
    return {**out, **where, "seconds": time.perf_counter() - began}


def _dispatch(payload: dict, device: str, threads: int = 1, log_file: Optional[str] = None) -> dict:
    from lth.config import RunConfig
    from lth.study import analyses, analysis_spec, cells
    kind = payload["kind"]
    if kind == "run" and payload.get("gpus", 1) > 1:  # issue 22: data-parallel ranks (lth.study.ranks)
        from lth.study.ranks import run_with_ranks
        return run_with_ranks(payload, payload["gpus"], device, log_file, threads, payload.get("visible_devices"))
    if kind == "run":
        cfg = RunConfig.from_dict(payload["config"], where=payload["id"])
        return cells.execute_cell(cfg, payload["runs_root"], device, Path(payload["run_dir"]))
    stability = analysis_spec.Stability.from_dict(payload["stability"])
    if kind == "copy":
        return analyses.train_copy(Path(payload["run_dir"]), payload["round"], payload["what"], payload["copy"],
                                   stability, device, payload.get("data_dir"))
    if kind == "interp":
        return analyses.interpolate(Path(payload["run_dir"]), payload["round"], payload["what"], stability, device,
                                    payload.get("data_dir"))
    raise LthError(f"unknown task kind {kind!r}")


def _attach_log(log_file: Optional[str]):
    if not log_file:
        return None
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    root = logging.getLogger()
    handler.previous_level = root.level  # restored on detach
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def _detach_log(handler) -> None:
    if handler is None:
        return
    root = logging.getLogger()
    root.removeHandler(handler)
    root.setLevel(handler.previous_level)
    handler.close()
