"""The local executor: long-lived worker processes on this machine, one task at a time each.

    --executor local --jobs N      N workers on the CPU (default 1), each with cores / N torch
                                   threads, so N workers share the cores without oversubscribing
    --executor local               on a CUDA machine: one worker per GPU (cuda:0, cuda:1, ...)

Tasks that ask for several devices (a study's `gpus = G`, issue 22) are packed onto the node's
slots (GPUs, or the --jobs slots on a CPU) by lth.study.executors.packing: such a task holds G
contiguous slots and its worker launches G torchrun ranks on them (lth.study.ranks), with
CUDA_VISIBLE_DEVICES naming its GPUs.

Workers are spawned (not forked: CUDA and OpenMP state do not survive a fork), import torch
once and keep it for every task. Each talks to the driver over its own pipe, so a worker
killed mid-task (SIGKILL, OOM killer) is seen at once as a closed pipe: the worker is
replaced and the task is sent again, up to `max_retries` times; it resumes from its
checkpoints. A worker dies with the driver (it watches its parent), so a killed driver leaves
nothing training behind, and the rerun can take over the runs' locks.
"""
import logging
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import wait
from typing import Dict, List, Optional

from lth.errors import LthError
from lth.study.executors.base import Executor, Outcome
from lth.study.executors.packing import Packer

log = logging.getLogger(__name__)

WATCH_PARENT_S = 1.0   # how often a worker checks that the driver is still alive


def _die_with_parent(parent: int) -> None:
    """Exit as soon as the driver is gone: PR_SET_PDEATHSIG on Linux, and a watching thread
    everywhere (a SIGKILLed driver cannot stop its workers itself)."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(3)
            time.sleep(WATCH_PARENT_S)
    threading.Thread(target=watch, daemon=True).start()


def _worker_main(conn, device: str, threads: int, parent: int) -> None:  # device: the default (tasks name theirs)
    _die_with_parent(parent)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    import socket
    import torch  # noqa: F401 - imported before the first task arrives: seconds a worker, not a task
    import lth.lottery.execution  # noqa: F401
    from lth.study.tasks import perform
    while True:
        try:
            item = conn.recv()
        except EOFError:
            return
        if item is None:
            return
        task_id, payload, log_file, task_device = item
        conn.send(("start", task_id, os.getpid(), socket.gethostname()))
        conn.send(("done", task_id, perform(payload, task_device or device, threads, log_file)))


class _Worker:
    def __init__(self, ctx, device: str, threads: int):
        self.device, self.threads = device, threads
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, device, threads, os.getpid()), daemon=True)
        self.proc.start()
        child.close()
        self.task: Optional[tuple] = None   # (task id, payload, log file, device) while busy


def plan_workers(jobs: Optional[int], device: str) -> List[tuple]:
    """(device, threads) per worker: one per GPU on CUDA (or --jobs of them), else --jobs on the CPU."""
    import torch
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if jobs is not None and jobs < 1:
        raise LthError(f"--jobs must be at least 1, got {jobs}")
    if device in ("auto", "cuda") and torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        n = jobs or gpus
        return [(f"cuda:{i % gpus}", max(1, cores // n)) for i in range(n)]
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LthError(f"--device {device} requested but CUDA is not available here; use --device cpu")
    n = jobs or 1
    return [(device if device != "auto" else "cpu", max(1, cores // n)) for _ in range(n)]


def wanted(payload: dict) -> int:
    """The devices (slots) a task holds: a run's `gpus`; copies and interpolations one."""
    return int(payload.get("gpus", 1)) if payload.get("kind") == "run" else 1


def placement(slot_devices: List[str], slots: List[int]) -> tuple:
    """(device, CUDA_VISIBLE_DEVICES or None) of a task holding `slots`: one slot runs on its own
    device; several run ranks on 'cuda' with exactly their GPUs visible (or 'cpu' ranks)."""
    devices = [slot_devices[s] for s in slots]
    if len(slots) == 1:
        return devices[0], None
    if devices[0].startswith("cuda"):
        return "cuda", ",".join(d.split(":")[1] for d in devices)
    return devices[0], None


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, jobs: Optional[int] = None, device: str = "auto", max_retries: int = 2, **_):
        self.ctx = multiprocessing.get_context("spawn")
        self.max_retries = max_retries
        planned = plan_workers(jobs, device)
        self.slot_devices = [d for d, _ in planned]       # slot i runs on this device
        self.packer = Packer(len(planned))
        self.workers = [_Worker(self.ctx, d, t) for d, t in planned]
        self.attempts: Dict[str, int] = {}
        log.info("local executor: %d worker(s): %s", len(self.workers),
                 ", ".join(f"{w.device} x{w.threads} threads" for w in self.workers))

    def check(self, payloads) -> None:
        """Refuse, before anything runs, a task asking for more devices than this node has."""
        gpus = len({d for d in self.slot_devices if d.startswith("cuda")})
        for payload in payloads:
            self.packer.check(wanted(payload), payload["id"])
            if gpus and wanted(payload) > gpus:  # --jobs above the GPU count: slots share GPUs, ranks cannot
                raise LthError(f"{payload['id']} asks for {wanted(payload)} GPUs per task but this node has {gpus}; "
                               f"lower gpus in the study spec")

    def free_slots(self) -> int:
        return min(len(self.packer.free), sum(w.task is None for w in self.workers))

    def fits(self, payload: dict) -> bool:
        return self.packer.fits(wanted(payload))

    def submit(self, task_id: str, payload: dict, log_file: str) -> None:
        worker = next(w for w in self.workers if w.task is None)
        self.attempts[task_id] = self.attempts.get(task_id, 0) + 1
        slots = self.packer.take(task_id, wanted(payload))
        device, visible = placement(self.slot_devices, slots)
        if visible is not None:
            payload = {**payload, "visible_devices": visible}
        worker.task = (task_id, payload, log_file, device)
        worker.conn.send(worker.task)

    def poll(self, timeout: float) -> List[Outcome]:
        busy = [w for w in self.workers if w.task is not None]
        if not busy:
            time.sleep(timeout)
            return []
        ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout)
        out = []
        for w in busy:
            if w.conn not in ready and w.proc.sentinel not in ready:
                continue
            try:
                while w.conn.poll():
                    out.append(self._message(w, w.conn.recv()))
            except (EOFError, OSError):
                pass
            if w.task is not None and not w.proc.is_alive():
                out += self._lost(w)
        return out

    def _message(self, w: _Worker, message: tuple) -> Outcome:
        if message[0] == "start":
            return Outcome(message[1], ok=True, pid=message[2], host=message[3], started=True)
        _, task_id, r = message
        w.task = None
        self.attempts.pop(task_id, None)
        self.packer.release(task_id)
        return Outcome(task_id, r["ok"], r.get("result"), r.get("error"), r.get("seconds", 0.0), r.get("pid"),
                       r.get("host"))

    def _lost(self, w: _Worker) -> List[Outcome]:
        """The worker died mid-task: replace it; send the task again or give up on it."""
        task_id, payload, log_file, device = w.task
        code = w.proc.exitcode
        self.workers[self.workers.index(w)] = fresh = _Worker(self.ctx, w.device, w.threads)
        if self.attempts.get(task_id, 0) <= self.max_retries:
            log.warning("worker pid %s died (exit code %s) during %s; retrying it (attempt %d of %d)", w.proc.pid,
                        code, task_id, self.attempts[task_id] + 1, self.max_retries + 1)
            self.attempts[task_id] += 1
            fresh.task = (task_id, payload, log_file, device)
            fresh.conn.send(fresh.task)
            return []
        self.attempts.pop(task_id, None)
        self.packer.release(task_id)
        return [Outcome(task_id, False, error=f"its worker died {self.max_retries + 1} times (last exit code {code})")]

    def close(self) -> None:
        for w in self.workers:
            if w.task is None and w.proc.is_alive():
                try:
                    w.conn.send(None)
                except OSError:
                    pass
            else:
                w.proc.terminate()  # its task resumes from its last checkpoint next time
        deadline = time.time() + 10
        for w in self.workers:
            w.proc.join(max(0.1, deadline - time.time()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join()
