"""The stability analysis under faults: SIGKILL while a copy trains, then the same command again,
gives the result of an uninterrupted analysis; two processes on one run share the work (every
copy trained once) and both finish with the same valid results.

Real subprocesses (python -m analysis.stability) on tiny real runs (digits, lenet300_100).
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import analysis
from analysis import stability
from analysis.settings import CopySettings, ProbeSettings, copy_checkpoint_path, copy_path, find_result
from lth import run as lth_run
from lth.runs.store import RunStore
from lth.runs.files import digest, load_tensors, read_json

REPO = Path(analysis.__file__).resolve().parent.parent
CLI_ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
KILL_STEPS = 400           # copies of about 20 epochs of digits: long enough to be killed in the middle
SHARE_STEPS = 60           # copies of 3 epochs: sharing needs no long training


def make_run(path: Path, rounds: int) -> Path:
    argv = ["--preset", "quick", "--device", "cpu", "--no-progress", "--run-dir", str(path),
            "--rounds", str(rounds), "--steps", "30", "--augment", "crop_flip"]
    assert lth_run.main(argv) == 0
    return path


def twin(run: Path) -> Path:
    """A copy of the run, to be analysed without interference (the reference)."""
    target = run.with_name(run.name + "-reference")
    shutil.copytree(run, target)
    return target


def flags(steps: int):
    return ["--steps", str(steps), "--device", "cpu", "--no-progress", "--no-figures"]


def analyse(run: Path, steps: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "analysis.stability", str(run), *flags(steps)],
                            cwd=run.parent, env=CLI_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def outcome(run: Path, r: int, steps: int) -> dict:
    """The saved result without its timing fields, and the digests of the two trained copies."""
    store, copies = RunStore(run), CopySettings(steps=steps)
    result = read_json(find_result(store, r, "ticket", copies, ProbeSettings()))
    result.pop("timing")
    result.pop("run")  # the directory's name: the reference is a copy with another name
    trained = {c: digest(load_tensors(copy_path(store, r, "ticket", copies, c))["model"]) for c in "ab"}
    return {"result": result, "copies": trained}


def test_sigkill_while_a_copy_trains_then_rerun_equals_an_uninterrupted_analysis(tmp_path):
    run = make_run(tmp_path / "run", rounds=1)
    reference = twin(run)
    assert stability.main([str(reference), *flags(KILL_STEPS)]) == 0
    copies = CopySettings(steps=KILL_STEPS)
    checkpoint = copy_checkpoint_path(RunStore(run), 1, "ticket", copies, "a")
    proc = analyse(run, KILL_STEPS)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert checkpoint.exists() and not copy_path(RunStore(run), 1, "ticket", copies, "a").exists()
    assert stability.main([str(run), *flags(KILL_STEPS)]) == 0   # the same command again
    assert not checkpoint.exists()
    assert outcome(run, 1, KILL_STEPS) == outcome(reference, 1, KILL_STEPS)


def test_two_processes_on_one_run_share_the_work_and_agree(tmp_path):
    run = make_run(tmp_path / "run", rounds=2)
    reference = twin(run)
    assert stability.main([str(reference), *flags(SHARE_STEPS)]) == 0
    procs = [analyse(run, SHARE_STEPS), analyse(run, SHARE_STEPS)]
    finished = [proc.communicate(timeout=300) for proc in procs]
    for proc, (stdout, stderr) in zip(procs, finished):
        assert proc.returncode == 0, stderr
    assert finished[0][0] == finished[1][0]                 # the same table printed by both
    trained = sum(stderr.count(": training ") for _, stderr in finished)
    assert trained == 4                                      # 2 rounds x 2 copies, each trained once
    for r in (1, 2):
        assert outcome(run, r, SHARE_STEPS) == outcome(reference, r, SHARE_STEPS)
