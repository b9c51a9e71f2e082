"""A diverged run says so (issue 19 item 6): the loss or a weight stops being finite -> one
line naming the round and the step, exit 2, and nothing of the diverged epoch on disk."""
import math

import pytest
import torch

from lth import run
from lth.lottery import execution
from lth.training import loop as train_mod
from lth.training.divergence import Diverged
from lth.runs.store import RunStore

import runhelpers
from runhelpers import assert_one_line_error, cli

BASE = ["--preset", "quick", "--no-progress", "--device", "cpu"]


def test_a_diverging_run_exits_2_with_one_line_naming_the_step(tmp_path):
    proc = cli([*BASE, "--rounds", "1", "--steps", "30", "--lr", "1e6", "--runs-root", str(tmp_path)], tmp_path)
    line = assert_one_line_error(proc, "round 1/1", "diverged", "not finite", "step", only_line=False)
    assert "moved off zero" not in line
    assert not list(tmp_path.rglob("summary.json")) and not list(tmp_path.rglob("checkpoint.pt"))


def test_a_later_round_that_diverges_keeps_the_earlier_results(tmp_path, monkeypatch):
    """Round 2 goes NaN in its second epoch: round 1's artefacts and round 2's first-epoch
    checkpoint stay as they were, all finite; round 2 is not marked done."""
    calls = {"n": 0}
    real_step = train_mod.train_step
    cfg, run_dir = run.resolve_config([*BASE, "--rounds", "2", "--epochs", "2", "--runs-root", str(tmp_path)])
    per_round = 2 * (1438 // cfg.train.batch_size)

    def poisoned(forward, optimizer, masks, x, y, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > per_round + per_round // 2 + 1:   # round 2, epoch 2
            with torch.no_grad():
                for p in optimizer.param_groups[0]["params"]:
                    p.fill_(math.nan)
        return real_step(forward, optimizer, masks, x, y, *args, **kwargs)
    monkeypatch.setattr(train_mod, "train_step", poisoned)
    with pytest.raises(Diverged, match=r"round 2/2: training diverged: .* step \d+ \(epoch 2\)"):
        execution.execute(cfg, run_dir=run_dir, device="cpu")
    store = RunStore(run_dir)
    assert store.round_done(1) and not store.round_done(2)
    assert all(bool(torch.isfinite(t).all()) for t in store.load_final(1).values())
    saved = store.load_checkpoint(2)
    assert saved["epoch"] == 1 and all(bool(torch.isfinite(t).all()) for t in saved["model"].values())
    assert runhelpers.temp_files(run_dir) == []


def test_a_diverging_structured_run_exits_2_with_one_line(tmp_path):
    proc = cli(["--dataset", "digits", "--model", "conv2", "--epochs", "2", "--method", "dense", "--lr", "1e6",
                "--no-progress", "--device", "cpu", "--run-dir", str(tmp_path / "run")], tmp_path,
               module="lth.structured")
    assert_one_line_error(proc, "structured run", "diverged", "not finite", "epoch 1", only_line=False)
    assert not (tmp_path / "run" / "summary.json").exists()
