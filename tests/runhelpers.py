"""Helpers for the tests that run `python -m lth.run` and compare run directories.

Used by test_imp.py, test_rewinding.py and test_faults.py (import as `runhelpers`: pytest puts tests/ on sys.path).

    proc = cli(["--schedule", "ocp", *TINY, "--runs-root", str(root)], cwd=tmp_path)
    assert_same_run(reference_dir, the_dir_after_a_kill_and_a_resume)

`record_fault(kind, outcome)` counts the faults the tests inflicted; conftest.py prints the
table at the end of the session and writes it to $LTH_FAULT_LOG when that is set.
"""
import collections
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from lth import config, run
from lth.config import RunConfig
from lth.runs.store import RunStore

PY = sys.executable
# Keys whose values are measurements of time, not results: ignored when runs are compared.
TIMING_KEYS = frozenset({"images_per_s", "wall_time_s"})

# A tiny run with several epochs a round (so that epoch checkpoints exist) that takes about
# 1.5 s of training on one core: digits (offline), LeNet-300-100, 3 rounds of 3 epochs of 45 steps.
TINY = ["--preset", "quick", "--rounds", "3", "--epochs", "3", "--batch-size", "32", "--no-progress"]

FAULTS: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def resolved_config(*argv: str) -> RunConfig:
    """The resolved, validated config that `python -m lth.run ARGV` would run."""
    cfg = config.from_args(list(argv), run.parser())[0].resolved()
    config.validate(cfg)
    return cfg


def record_fault(kind: str, outcome: str = "ok") -> None:
    FAULTS[kind][outcome] += 1


def env() -> dict:
    e = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e.pop("PYTHONWARNINGS", None)
    return e


def cli(args: List[str], cwd, module: str = "lth.run", timeout: float = 300,
        preexec_fn: Optional[Callable] = None) -> subprocess.CompletedProcess:
    """Run `python -m module args` to completion (text output captured)."""
    return subprocess.run([PY, "-m", module, *args], cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=timeout, preexec_fn=preexec_fn)


def default_sigint() -> None:
    """In the child: SIGINT back to its default, so Python installs its Ctrl-C handler as in a
    terminal. A shell starts background jobs with SIGINT ignored, and the children of a pytest
    started that way would otherwise inherit the ignore and never see a Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: List[str], cwd, module: str = "lth.run", code: Optional[str] = None) -> subprocess.Popen:
    """Start `python -m module args` (or `python -c code args`) in the background."""
    head = [PY, "-c", code] if code is not None else [PY, "-m", module]
    return subprocess.Popen([*head, *args], cwd=cwd, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)


def wait_until(condition: Callable[[], bool], proc: Optional[subprocess.Popen] = None,
               timeout: float = 120, poll: float = 0.002) -> bool:
    """Poll `condition` until it holds (True) or `proc` has exited first (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc is not None and proc.poll() is not None:
            return condition()
        time.sleep(poll)
    raise TimeoutError("condition not met in time")


def only_run_dir(root: Path) -> Path:
    dirs = [d for d in Path(root).iterdir() if d.is_dir()]
    assert len(dirs) == 1, f"expected one run directory under {root}, found {dirs}"
    return dirs[0]


def strip_timing(obj):
    if isinstance(obj, dict):
        return {k: strip_timing(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [strip_timing(v) for v in obj]
    return obj


def error_lines(stderr: str) -> List[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str, only_line: bool = True) -> str:
    """Exit code 2, no traceback, one `error:` line naming every needle; returns that line.
    only_line: stderr holds nothing else (bad input fails before the run logs anything)."""
    err = proc.stderr
    assert "Traceback" not in err, err
    assert proc.returncode == 2, (proc.returncode, err)
    lines = error_lines(err)
    assert len(lines) == 1, err
    if only_line:
        assert err.strip().splitlines() == lines, err
    else:
        assert err.strip().splitlines()[-1] == lines[0], err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def tensors_equal(a, b) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and sorted(a) == sorted(b) and all(tensors_equal(a[k], b[k]) for k in a)
    return a == b


def temp_files(root: Path) -> List[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.name.endswith(".tmp"))


def assert_same_run(ref: Path, other: Path, rounds: Optional[int] = None) -> None:
    """The artefacts of two runs are equal: masks bit-identical, initial/rewind/final weights
    identical, metrics and summaries equal ignoring timing, the same resolved config; and the
    second run is complete and clean (no checkpoint or temporary file left)."""
    a, b = RunStore(ref), RunStore(other)
    ca, cb = a.config(), b.config()
    assert (ca["hash"], ca["name"], ca["versions"]) == (cb["hash"], cb["name"], cb["versions"])
    assert RunConfig.from_dict(ca["config"]).experiment_dict() == RunConfig.from_dict(cb["config"]).experiment_dict()
    rounds = rounds or ca["config"]["prune"]["rounds"]
    assert a.finished_rounds() == b.finished_rounds() == list(range(1, rounds + 1))
    assert tensors_equal(a.load_init(), b.load_init())
    assert a.rewind_path.exists() == b.rewind_path.exists()
    if a.rewind_path.exists():
        assert tensors_equal(a.load_rewind(), b.load_rewind())
    for r in range(1, rounds + 1):
        assert tensors_equal(a.load_mask(r), b.load_mask(r)), f"round {r}: masks differ"
        assert tensors_equal(a.load_final(r), b.load_final(r)), f"round {r}: final weights differ"
        assert strip_timing(a.load_metrics(r)) == strip_timing(b.load_metrics(r)), f"round {r}: metrics differ"
        assert strip_timing(a.load_summary(r)) == strip_timing(b.load_summary(r)), f"round {r}: summaries differ"
        assert not b.checkpoint_path(r).exists()
    assert temp_files(other) == []


def snapshot(root: Path) -> Dict[str, tuple]:
    """{relative path: (sha256, size, mtime_ns)} of every file under root (to prove nothing changed)."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(), st.st_size, st.st_mtime_ns)
    return out


def flip_bytes(path: Path, count: int = 16, where: float = 0.5) -> None:
    """Invert `count` bytes at fraction `where` of the file (in a tensor file: inside the data)."""
    data = bytearray(Path(path).read_bytes())
    at = int(len(data) * where)
    for i in range(at, min(at + count, len(data))):
        data[i] ^= 0xFF
    Path(path).write_bytes(bytes(data))


def fit_model(model, masks, dataset, cfg, *, device="cpu", image_size: int, augment: str, order_seed: int,
              augment_seed: int, pruning=None, after_step: Optional[Callable] = None, forward=None, resume=None,
              save_checkpoint=None, start_step: int = 0, start_loader=None, lr_context=None,
              progress: bool = False, callbacks=()) -> dict:
    """One lth.training.loop.fit run of `model` on `dataset` with its loaders built from the
    arguments (the tests' shorthand for Loop(...) + fit(...))."""
    from lth.training.callbacks import StepProbe
    from lth.training.loop import Loop, fit, make_loaders
    loaders = make_loaders(dataset, cfg, torch.device(device), image_size, augment, order_seed, augment_seed)
    loop = Loop(model, cfg, *loaders, masks=masks, forward=forward, lr_context=lr_context, start_step=start_step,
                start_loader=start_loader)
    return fit(loop, pruning=pruning, resume=resume, save_checkpoint=save_checkpoint,
               callbacks=[*callbacks, *([StepProbe(after_step)] if after_step is not None else [])],
               progress=progress)
