"""The scripts under examples/ run at tiny scale and do what they say (subprocesses, as a user runs them).

    python -m pytest tests/test_examples.py -q -m ""      (the Lightning, HF and comparison scripts are slow)
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(script, *args, home):
    # HOME in a temporary folder: the libraries' caches (matplotlib, Lightning) land there, not in the checkout
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(home),
           "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], env=env, capture_output=True,
                          text=True, timeout=300, cwd=home)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout + proc.stderr


def test_plain_loop(tmp_path):
    out = run("plain_loop.py", "--rounds", "2", "--epochs", "1", home=tmp_path)
    rounds = re.findall(r"round (\d): sparsity ([\d.]+) \(target ([\d.]+)\), test acc ([\d.]+)", out)
    assert [(r, s, t) for r, s, t, _ in rounds] == [("1", "0.5000", "0.5000"), ("2", "0.7500", "0.7500")]
    assert float(rounds[0][3]) > 0.5   # learned something (chance: 0.1)


@pytest.mark.slow
def test_lightning_example(tmp_path):
    out = run("lightning_example.py", "--epochs", "1", "--final-sparsity", "0.8", home=tmp_path)
    assert re.search(r"total\s+sparsity 0\.8000", out) and re.search(r"28 steps, test acc", out)


@pytest.mark.slow
def test_hf_trainer_example(tmp_path):
    out = run("hf_trainer_example.py", "--steps", "20", "--final-sparsity", "0.5", home=tmp_path)
    assert re.search(r"13 pruned matrices", out) and re.search(r"20 steps, overall sparsity 0\.5", out)


@pytest.mark.slow
def test_trajectory_against_lth_run(tmp_path):
    out = run("trajectory_vs_lth_run.py", "--steps", "40", home=tmp_path)
    assert re.search(r"final sparsity: lth run 0\.900000, plain loop 0\.900000", out)
    assert re.search(r"largest gap over 41 steps x 3 layers: \S+ in sparsity \(float32 in the event file\), 0 weights", out)
