"""A study's run task with several data-parallel ranks (issue 22): torchrun, one rank per device.

    run_with_ranks(payload, n=2, device="cpu", log_file="studies/x/logs/run_....log")

The task runs `python -m torch.distributed.run --standalone --nproc_per_node N -m lth.run
--config CONFIG --run-dir RUN_DIR` on this node: the same command a user types (docs/distributed.md),
so it resumes what a killed attempt left exactly as a rerun does. On GPUs the ranks use the
devices CUDA_VISIBLE_DEVICES names (the local executor sets it from its packing; Ray and Slurm
set it for the GPUs they granted); on a CPU they are gloo ranks. The ranks' output is appended
to the task's log; a failure comes back as the ranks' one-line error.
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

from lth.errors import LthError


def command(config_file: str, run_dir: str, runs_root: str, n: int, device: str) -> list:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
            "-m", "lth.run", "--config", config_file, "--run-dir", run_dir, "--runs-root", runs_root,
            "--device", device, "--no-progress"]


def run_with_ranks(payload: dict, n: int, device: str, log_file: Optional[str], threads: int = 1,
                   visible: Optional[str] = None) -> dict:
    """Train the run of `payload` (a study's run task) with n ranks; returns what execute_cell does."""
    from lth.runs.store import RunStore
    import lth
    kind = "cuda" if device.startswith("cuda") else "cpu"
    code_root = str(Path(lth.__file__).resolve().parent.parent)
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads)),
           "PYTHONPATH": os.pathsep.join(p for p in (code_root, os.environ.get("PYTHONPATH")) if p)}
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    with tempfile.TemporaryDirectory(prefix="lth-ranks-") as tmp:
        config_file = str(Path(tmp) / "config.json")
        Path(config_file).write_text(json.dumps(payload["config"]))
        cmd = command(config_file, payload["run_dir"], payload["runs_root"], n, kind)
        done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if log_file:
        with open(log_file, "a") as f:
            f.write(done.stdout)
    if done.returncode != 0:
        errors = [line[len("error: "):] for line in done.stdout.splitlines() if line.startswith("error: ")]
        if errors:
            raise LthError(errors[-1])
        raise LthError(f"{n} data-parallel ranks exited with code {done.returncode} (see {log_file or 'the log'})")
    store = RunStore(payload["run_dir"])
    rounds = store.finished_rounds()
    return {"run_dir": payload["run_dir"], "rounds": len(rounds), "ranks": n,
            "test_acc": store.load_summary(rounds[-1])["test_acc"]}
