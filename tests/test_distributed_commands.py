"""lth.bimp and lth.structured under torchrun (issue 22), 2 gloo ranks on the CPU: BIMP and its
baselines train data-parallel (each run is lth.run's execute) with rank 0 alone printing and
writing; structured runs are refused on every rank with one line before anything is written.

    python -m pytest tests/test_distributed_commands.py -q              # the refusal (about 8 s)
    python -m pytest tests/test_distributed_commands.py -m slow -q      # BIMP on 2 ranks and on 1
"""
import json
import subprocess
import sys

import pytest

from lth.runs.store import RunStore
from tests.test_distributed_ranks import ROOT, env
from tests.test_distributed_stability import torchrun

BIMP = ["--preset", "quick", "--device", "cpu", "--no-progress", "--budget-steps", "90", "--final-sparsity", "0.9",
        "--baselines", "ocp"]


def test_structured_run_is_refused_on_every_rank_before_anything_is_written(tmp_path):
    code, out = torchrun("lth.structured", "--dataset", "digits", "--model", "conv2", "--epochs", "8", "--device", "cpu",
                         "--runs-root", tmp_path / "runs")
    assert code != 0
    line = "error: python -m lth.structured does not run under torchrun: it removes channels while training"
    assert out.count(line) == out.count("error:") == 2, out
    assert out.count("Traceback (most recent call last)") == out.count("ChildFailedError(") <= 1, out
    assert not (tmp_path / "runs").exists()


def runs_by_schedule(root) -> dict:
    return {RunStore(d).run_config().prune.schedule: RunStore(d) for d in root.iterdir()}


@pytest.mark.slow
def test_bimp_trains_data_parallel_and_rank0_alone_reports(tmp_path):
    code, out = torchrun("lth.bimp", *BIMP, "--runs-root", tmp_path / "two")
    assert code == 0, out
    assert out.count("budget B = 90 steps") == 1 and out.count("method  sparsity") == 1, out
    assert out.count("masks identical on all 2 ranks") == 1 + 3 + 1           # dense, 3 phases, ocp
    two = runs_by_schedule(tmp_path / "two")
    assert sorted(two) == ["dense", "ocp", "one_shot"]
    assert all(json.loads(s.config_path.read_text())["world_size"] == 2 for s in two.values())
    # one process, the same flags: the same budget split and sparsities; accuracy agrees to a
    # few images (float summation order, docs/distributed.md)
    r = subprocess.run([sys.executable, "-m", "lth.bimp", *BIMP, "--runs-root", str(tmp_path / "one")], cwd=ROOT,
                       env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    one = runs_by_schedule(tmp_path / "one")
    for schedule, store in two.items():
        for rnd in store.finished_rounds():
            a, b = store.load_summary(rnd), one[schedule].load_summary(rnd)
            assert a["steps"] == b["steps"] and a["sparsity"] == b["sparsity"]
            assert abs(a["test_acc"] - b["test_acc"]) <= 5 / 360
