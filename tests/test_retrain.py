"""Retraining after pruning (issue 14): the retraining LR schedules curve by curve, ALLR's eta_0
from a model's known d and s, the continue restart, per-phase sparsity, dense runs, BIMP's
budget, the one-line errors, and analysis.retrain.

Tiny: digits (offline), LeNet-300-100, a few dozen steps a phase."""
import math
import os
import shutil

import pytest
import torch
from torch import nn

from lth import config, run
from lth.data import datasets
from lth.lottery import imp
from lth.lottery import execution
from lth.lottery import bimp
from lth.errors import LthError
from lth.lottery.execution import run_metadata
from lth.pruning.masks import Masks
from lth.pruning import MaskUpdater
from lth.training.retrain_lr import DenseHistory, LrContext, allr_eta0
from lth.runs.store import RunStore, run_name
from lth.training.loop import lr_at

import runhelpers
from runhelpers import assert_one_line_error, cli, tensors_equal

BASE = ["--preset", "quick", "--recipe", "openlth", "--lr", "0.05", "--no-progress", "--device", "cpu"]
# Zimmer et al.'s pruning: one global threshold over every layer (the quick preset's half rate
# for the output layer is a local-scope rule: --layer-rate with no value drops it)
RETRAIN = ["--restart", "continue", "--schedule", "one_shot", "--start", "0", "--scope", "global", "--layer-rate",
           "--final-sparsity", "0.9", "--rounds", "3"]
PHASE_RATE = 1 - 0.1 ** (1 / 3)   # s of each of 3 phases that reach 90 %


# ---- the curves, on a dense history whose numbers are known -----------------------------------

def train_cfg(schedule: str, **params):
    """A resolved TrainConfig with this LR schedule (openlth recipe: SGD, peak 0.1)."""
    flat = {"recipe": "openlth", "lr": 0.1, "lr_schedule": schedule, **params}
    if schedule in ("ft", "lrw", "slr", "clr", "llr", "allr"):
        flat.update(restart="continue", from_run="/nonexistent", schedule="one_shot", start=0.0)
    return config.from_overrides(flat, preset="quick").train


DENSE_CFG = train_cfg("step")      # 0.1, x0.1 at 50 % and 75 %: eta_max 0.1, eta_min 0.001
DENSE_STEPS, DENSE_PER_EPOCH = 200, 10   # T = 20 epochs


def history(steps=DENSE_STEPS, per_epoch=DENSE_PER_EPOCH) -> DenseHistory:
    lrs = [lr_at(k, steps, DENSE_CFG) for k in range(steps)]
    fn = lambda p: 0.1 * 0.1 ** sum(p >= m for m in (0.5, 0.75))  # noqa: E731 (the step schedule by hand)
    return DenseHistory(lr=fn, steps=steps, steps_per_epoch=per_epoch, eta_max=max(lrs), eta_min=lrs[-1])


def context(steps=50, per_epoch=10, **kwargs) -> LrContext:
    """A phase of `steps` steps (5 epochs) after the dense run above."""
    return LrContext(history(**kwargs), steps, per_epoch)


def curve(schedule, ctx, **params):
    cfg = train_cfg(schedule, **params)
    return [lr_at(k, ctx.steps, cfg, ctx) for k in range(ctx.steps + 1)]   # k = steps: the end point


def test_dense_history_reads_eta_max_eta_min_and_T():
    h = history()
    assert h.eta_max == pytest.approx(0.1) and h.eta_min == pytest.approx(0.001) and h.epochs == 20


def test_ft_is_the_last_lr_of_training_throughout():
    assert curve("ft", context()) == [pytest.approx(0.001)] * 51


def test_lrw_replays_the_last_epochs_step_for_step():
    ctx = context(steps=120, per_epoch=10)   # 12 of the 20 dense epochs: steps 80..199
    values = curve("lrw", ctx)[:-1]
    assert values == [lr_at(DENSE_STEPS - 120 + k, DENSE_STEPS, DENSE_CFG) for k in range(120)]
    assert values[:20] == [pytest.approx(0.1)] * 20 and values[20] == pytest.approx(0.01)   # dense step 100
    assert values[70] == pytest.approx(0.001)                                               # dense step 150


def test_lrw_maps_epochs_not_steps_when_batches_differ():
    ctx = context(steps=100, per_epoch=20)   # 5 epochs of 20 steps: the last 5 dense epochs (150..199)
    values = curve("lrw", ctx)[:-1]
    assert values == [pytest.approx(0.001)] * 100


def test_lrw_longer_than_the_dense_run_starts_at_its_first_lr():
    values = curve("lrw", context(steps=300))[:-1]   # 30 epochs after 20
    assert values[:100] == [pytest.approx(0.1)] * 100 and values[-1] == pytest.approx(0.001)


@pytest.mark.parametrize("name", ["slr", "clr", "llr"])
def test_linear_warmup_is_ten_percent_from_zero_to_eta_max(name):
    values = curve(name, context(steps=50), warmup_shape="linear")
    assert values[0] == 0.0
    assert values[:6] == [pytest.approx(0.1 * k / 5) for k in range(6)]   # 10 % of 50 steps = 5
    assert values[5] == pytest.approx(0.1) and max(values) == pytest.approx(0.1)


def test_cosine_warmup_shape():
    values = curve("llr", context(steps=100), warmup_shape="cosine")
    assert values == curve("llr", context(steps=100))   # the default: Zimmer et al.'s half-cosine ramp
    assert values[0] == 0.0 and values[10] == pytest.approx(0.1)
    assert values[5] == pytest.approx(0.05)                                  # the half-cosine's midpoint
    assert values[2] == pytest.approx(0.1 * (1 - math.cos(math.pi * 0.2)) / 2) and values[2] < 0.1 * 2 / 10


def test_warmup_length_is_a_knob():
    values = curve("llr", context(steps=100), retrain_warmup=0.25)
    assert values[25] == pytest.approx(0.1) and values[24] < 0.1 and values[26] < 0.1


def test_llr_decays_linearly_to_zero():
    values = curve("llr", context(steps=50))
    after = values[5:]
    steps = [a - b for a, b in zip(after, after[1:])]
    assert steps == [pytest.approx(0.1 / 45)] * 45 and values[-1] == pytest.approx(0.0, abs=1e-15)


def test_clr_is_a_cosine_from_eta_max_to_eta_min():
    values = curve("clr", context(steps=50))
    assert values[5] == pytest.approx(0.1) and values[-1] == pytest.approx(0.001)
    assert values[5 + 45 // 2] == pytest.approx(0.001 + 0.099 * (1 + math.cos(math.pi * 22 / 45)) / 2)
    assert all(a >= b for a, b in zip(values[5:], values[6:]))


def test_slr_reads_the_dense_warmup_as_eta_max():
    """Zimmer et al.'s SLR compresses the dense schedule after its own warm-up with the dense
    warm-up replaced by eta_max: no second ramp from 0 after the first."""
    lrs = [0.1 * min(1.0, k / 40) for k in range(DENSE_STEPS)]          # dense: 20 % linear warm-up, then 0.1
    warm = DenseHistory(lr=lambda p: 0.1 * min(1.0, p / 0.2), steps=DENSE_STEPS, steps_per_epoch=DENSE_PER_EPOCH,
                        eta_max=max(lrs), eta_min=lrs[-1], peak_at=lrs.index(max(lrs)) / DENSE_STEPS)
    values = curve("slr", LrContext(warm, 50, 10))
    assert values[5:] == [pytest.approx(0.1)] * 46                       # never back down to 0 after step 5


def test_slr_is_the_dense_schedule_compressed_after_the_warmup():
    values = curve("slr", context(steps=50))
    # after 5 warm-up steps the 45 left replay 0.1 / 0.01 / 0.001 over 50 / 25 / 25 % of them:
    # v = (k / 50 - 0.1) / 0.9 passes 0.5 at k = 27.5 and 0.75 at k = 38.75
    assert values[5:28] == [pytest.approx(0.1)] * 23
    assert values[28:39] == [pytest.approx(0.01)] * 11
    assert values[39:] == [pytest.approx(0.001)] * 12


def test_allr_is_llr_with_peak_eta0():
    ctx = context(steps=50)
    ctx.record_pruning(0.5, removed_sq=0.04, kept_sq=0.96)   # d = 0.2, s = 0.5: ratio 0.283
    eta0 = 0.1 * 0.2 / math.sqrt(0.5)
    assert allr_eta0(ctx) == pytest.approx(eta0)
    values = curve("allr", ctx)
    assert values[0] == 0.0 and values[5] == pytest.approx(eta0) and max(values) == pytest.approx(eta0)
    assert values[-1] == pytest.approx(0.0, abs=1e-15)
    assert values[27] == pytest.approx(eta0 * (1 - 22 / 45))


def test_allr_clips_at_both_ends():
    ctx = context(steps=50)                                    # T_rt / T = 5 / 20: floor 0.025
    ctx.record_pruning(0.5, removed_sq=0.0001, kept_sq=0.9999)  # d = 0.01: ratio 0.014 -> floor
    assert allr_eta0(ctx) == pytest.approx(0.025)
    ctx.record_pruning(0.25, removed_sq=0.49, kept_sq=0.51)     # d = 0.7, s = 0.25: ratio 1.4 -> eta_max
    assert allr_eta0(ctx) == pytest.approx(0.1)
    long = context(steps=300)                                   # T_rt / T = 1.5: the floor caps at eta_max
    long.record_pruning(0.5, removed_sq=0.0001, kept_sq=0.9999)
    assert allr_eta0(long) == pytest.approx(0.1)
    ctx.record_pruning(0.0, removed_sq=0.0, kept_sq=1.0)        # nothing pruned: no damage, the floor
    assert allr_eta0(ctx) == pytest.approx(0.025)


def test_retraining_schedules_need_the_context():
    with pytest.raises(LthError, match="--restart continue --from-run"):
        lr_at(0, 10, train_cfg("llr"))
    ctx = context()
    with pytest.raises(LthError, match="before its first step"):
        lr_at(0, 50, train_cfg("allr"), ctx)   # no pruning recorded yet


def test_linear_schedule():
    cfg = train_cfg("linear", warmup=0.0)
    assert [lr_at(k, 4, cfg) for k in range(5)] == pytest.approx([0.1, 0.075, 0.05, 0.025, 0.0])
    warm = train_cfg("linear", warmup=0.5)
    assert [lr_at(k, 4, warm) for k in range(5)] == pytest.approx([0.0, 0.05, 0.1, 0.05, 0.0])


# ---- d and s from a model whose numbers are known ---------------------------------------------

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, -2.0, 3.0, -4.0], [0.5, 6.0, -0.25, 7.0]]))
            self.fc.bias.copy_(torch.tensor([2.0, -1.0]))


def prune_tiny(target: float, ctx: LrContext):
    model = Tiny()
    masks = Masks.for_model(model)
    updater = MaskUpdater(masks, lambda t: target, scope="global", on_prune=imp.context_recorder(ctx, model))
    assert updater.update(0.0)
    return model, masks


def test_d_and_s_of_a_known_pruning_and_eta0():
    # weights |.|: 0.25 0.5 1 2 3 4 6 7; bias 2, -1. Pruning 3 of 8 removes 0.25, 0.5, 1.
    ctx = context(steps=10)          # T_rt / T = 1 / 20: floor 0.005
    model, masks = prune_tiny(3 / 8, ctx)
    total = sum(w * w for w in (1, 2, 3, 4, 0.5, 6, 0.25, 7, 2, 1))   # every parameter, bias included
    removed = 0.25 ** 2 + 0.5 ** 2 + 1.0
    d = math.sqrt(removed / total)
    assert ctx.pruned_fraction == 3 / 8 and ctx.norm_drop == pytest.approx(d)
    assert d == pytest.approx(torch.dist(torch.cat([p.flatten() for p in Tiny().parameters()]),
                                         torch.cat([p.flatten() for p in model.parameters()])).item()
                              / math.sqrt(total))
    assert d / math.sqrt(3 / 8) == pytest.approx(0.17056, abs=1e-5)          # inside [0.05, 1]: unclipped
    assert allr_eta0(ctx) == pytest.approx(0.1 * d / math.sqrt(3 / 8))
    # the same pruning with a long phase: the floor T_rt / T = 0.75 wins
    long = context(steps=150)
    prune_tiny(3 / 8, long)
    assert allr_eta0(long) == pytest.approx(0.075)
    # a second pruning counts s of what remained: 3 -> 6 of 8 is 3 of the 5 left
    ctx2 = context(steps=50)
    model, masks = prune_tiny(3 / 8, ctx2)
    MaskUpdater(masks, lambda t: 6 / 8, scope="global", on_prune=imp.context_recorder(ctx2, model)).update(0.0)
    assert ctx2.pruned_fraction == pytest.approx(3 / 5)
    removed2, total2 = 2.0 ** 2 + 3 ** 2 + 4 ** 2, total - removed
    assert ctx2.norm_drop == pytest.approx(math.sqrt(removed2 / total2))


# ---- runs: dense, continue, per-phase sparsity ------------------------------------------------

@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("retrain")


@pytest.fixture(scope="module")
def dense_run(runs_root):
    assert run.main([*BASE, "--schedule", "dense", "--steps", "45", "--runs-root", str(runs_root)]) == 0
    (found,) = runs_root.glob("*-dense-*")
    return found


def retrain_args(dense, runs_root, *more):
    return [*BASE, *RETRAIN, "--from-run", str(dense), "--steps", "20", "--runs-root", str(runs_root), *more]


def test_dense_run_is_the_reference(dense_run):
    store = RunStore(dense_run)
    assert dense_run.name.startswith("digits-lenet300_100-dense-")
    assert all(bool(m.all()) for m in store.load_mask(1).values()) and store.load_summary(1)["sparsity"] == 0.0


@pytest.fixture(scope="module")
def allr_run(dense_run, runs_root):
    """An ALLR continue run through the Python API, recording the weights each phase starts from."""
    starts = {}

    def on_round_start(r, model, masks):
        starts[r] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    cfg, run_dir = run.resolve_config(retrain_args(dense_run, runs_root, "--lr-schedule", "allr"))
    store = RunStore(run_dir)
    store.create(run_metadata(cfg, torch.device("cpu")))
    with store.lock():
        imp.run(cfg, store, datasets.load("digits"), "cpu", progress=False, on_round_start=on_round_start)
    return store, starts


def test_continue_starts_each_phase_from_the_previous_final_weights(dense_run, allr_run):
    store, starts = allr_run
    dense = RunStore(dense_run)
    assert tensors_equal(starts[1], dense.load_final(1))            # m_0 = ones: the dense weights exactly
    for r in (2, 3):
        assert tensors_equal(starts[r], store.load_final(r - 1))    # already zero where m_{r-1} prunes
    assert store.config()["config"]["prune"]["restart_params"] == {"from_run": os.path.abspath(dense_run)}


def test_each_phase_prunes_s_of_the_remaining_weights(allr_run):
    store, _ = allr_run
    total = sum(m.numel() for m in store.load_mask(1).values())
    previous = None
    for r in (1, 2, 3):
        summary = store.load_summary(r)
        pruned = sum(int((~m).sum()) for m in store.load_mask(r).values())
        assert abs(pruned - (1 - (1 - PHASE_RATE) ** r) * total) <= 1                      # global: one weight
        kept_before = total if previous is None else total - previous
        assert summary["lr_context"]["pruned_fraction"] == pytest.approx(PHASE_RATE, abs=1 / kept_before)
        assert summary["lr_context"]["pruned_fraction"] == (pruned - (previous or 0)) / kept_before
        previous = pruned
    assert store.load_summary(3)["sparsity"] == pytest.approx(0.9, abs=1 / total)


def test_allr_run_records_its_lr_per_epoch(allr_run, dense_run):
    store, _ = allr_run
    for r in (1, 2, 3):
        summary = store.load_summary(r)
        ctx = summary["lr_context"]
        assert ctx["eta_max"] == pytest.approx(0.05) and ctx["eta_min"] == pytest.approx(0.0005)
        assert ctx["dense_epochs"] == 45 / 22 and ctx["retrain_epochs"] == 20 / 22   # 1,438 images, batch 64
        eta0 = min(max(ctx["norm_drop"] / math.sqrt(ctx["pruned_fraction"]), 20 / 45) * 0.05, 0.05)
        assert ctx["allr_eta0"] == pytest.approx(eta0)
        lines = [m for m in store.load_metrics(r) if "lr_max" in m]
        # one data stream across phases: phase 1 trains batches 0-19 of a 22-batch epoch, phase 2
        # the last 2 and then 18 of the next epoch, phase 3 its last 4 and 16 more
        assert [m["step"] for m in lines] == {1: [20], 2: [2, 20], 3: [4, 20]}[r]
        expected = ([eta0 * (1 - math.cos(math.pi * k / 2)) / 2 for k in range(2)]        # the half-cosine warm-up
                    + [eta0 * (1 - (k / 20 - 0.1) / 0.9) for k in range(2, 20)])
        for line, start in zip(lines, [0] + [m["step"] for m in lines[:-1]]):
            used = expected[start:line["step"]]
            assert line["lr_max"] == pytest.approx(max(used)) and line["lr_mean"] == pytest.approx(sum(used) / len(used))
            assert line["lr"] == pytest.approx(used[-1])
        assert max(m["lr_max"] for m in lines) == pytest.approx(eta0)


def test_ft_and_lrw_runs_follow_the_dense_history(dense_run, tmp_path):
    dense_cfg = RunStore(dense_run).run_config().resolved().train
    replay = [lr_at(25 + k, 45, dense_cfg) for k in range(20)]   # the dense run's last 20 of 45 steps
    assert max(replay) == pytest.approx(0.005) and replay[-1] == pytest.approx(0.0005)
    for name, lrs in (("ft", [0.0005] * 20), ("lrw", replay)):
        cfg, run_dir = run.resolve_config(retrain_args(dense_run, tmp_path, "--lr-schedule", name))
        execution.execute(cfg, run_dir=run_dir, device="cpu")
        line = [m for m in RunStore(run_dir).load_metrics(1) if "lr_max" in m][0]
        assert line["lr_max"] == pytest.approx(max(lrs)) and line["lr_mean"] == pytest.approx(sum(lrs) / 20)
        assert line["lr"] == pytest.approx(lrs[-1])


def test_kill_and_resume_keeps_allr_eta0(dense_run, tmp_path):
    """An ALLR phase stopped after its first epoch resumes with the eta_0 of its pruning."""
    args = [*BASE, *RETRAIN, "--from-run", str(dense_run), "--epochs", "2", "--lr-schedule", "allr"]
    ref_cfg, _ = run.resolve_config(args)
    ref = execution.execute(ref_cfg, run_dir=tmp_path / "ref", device="cpu").run_dir
    stopped = tmp_path / "stopped"
    real_save = RunStore.save_checkpoint

    def stop_after_checkpoint(self, r, state):
        real_save(self, r, state)
        if r == 2:
            raise KeyboardInterrupt
    RunStore.save_checkpoint = stop_after_checkpoint
    try:
        with pytest.raises(KeyboardInterrupt):
            execution.execute(ref_cfg, run_dir=stopped, device="cpu")
    finally:
        RunStore.save_checkpoint = real_save
    assert RunStore(stopped).checkpoint_path(2).exists() and not RunStore(stopped).round_done(2)
    execution.execute(ref_cfg, run_dir=stopped, device="cpu")
    runhelpers.assert_same_run(ref, stopped)


# ---- bad input: one line, nothing written -----------------------------------------------------

def expect_error(argv, *needles, root=None):
    with pytest.raises(LthError) as e:
        cfg, run_dir = run.resolve_config(argv)
        execution.execute(cfg, run_dir=run_dir, device="cpu")
    text = str(e.value)
    assert "\n" not in text
    for needle in needles:
        assert needle in text, (needle, text)
    if root is not None:
        assert not any(root.iterdir()), list(root.iterdir())


def test_continue_needs_from_run(tmp_path):
    expect_error([*BASE, *RETRAIN, "--runs-root", str(tmp_path)], "--restart continue needs --from-run", root=tmp_path)


def test_from_run_not_a_run(tmp_path):
    (tmp_path / "empty").mkdir()
    root = tmp_path / "runs"
    root.mkdir()
    expect_error([*BASE, *RETRAIN, "--from-run", str(tmp_path / "empty"), "--runs-root", str(root)],
                 "--from-run", "not an lth run directory", root=root)
    expect_error([*BASE, *RETRAIN, "--from-run", str(tmp_path / "missing"), "--runs-root", str(root)],
                 "is not a directory", root=root)


def test_from_run_of_another_model_or_size(dense_run, tmp_path):
    expect_error([*BASE, *RETRAIN, "--from-run", str(dense_run), "--model", "conv2", "--runs-root", str(tmp_path)],
                 "--model lenet300_100", "this run has conv2", root=tmp_path)
    expect_error([*BASE, *RETRAIN, "--from-run", str(dense_run), "--image-size", "16", "--runs-root", str(tmp_path)],
                 "--image-size 0", root=tmp_path)


def test_from_run_unfinished_or_sparse(dense_run, allr_run, tmp_path):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(dense_run, unfinished)
    (unfinished / "round_01" / "summary.json").unlink()
    root = tmp_path / "runs"
    root.mkdir()
    expect_error([*BASE, *RETRAIN, "--from-run", str(unfinished), "--runs-root", str(root)],
                 "0 of 1 rounds finished", root=root)
    expect_error([*BASE, *RETRAIN, "--from-run", str(allr_run[0].root), "--runs-root", str(root)],
                 "not dense", root=root)


def test_retraining_schedule_without_continue_or_with_late_pruning(dense_run, tmp_path):
    expect_error([*BASE, "--lr-schedule", "llr", "--runs-root", str(tmp_path)],
                 "--lr-schedule llr", "--restart continue", root=tmp_path)
    expect_error([*BASE, *RETRAIN, "--from-run", str(dense_run), "--lr-schedule", "allr", "--start", "0.5",
                  "--runs-root", str(tmp_path)], "--schedule one_shot --start 0", root=tmp_path)


def test_from_run_error_on_the_command_line(tmp_path):
    proc = cli([*BASE, *RETRAIN, "--from-run", str(tmp_path), "--runs-root", str(tmp_path / "runs")], cwd=tmp_path)
    assert_one_line_error(proc, "--from-run", "not an lth run directory")
    assert not (tmp_path / "runs").exists()


# ---- BIMP: the budget, and one command ---------------------------------------------------------

@pytest.mark.parametrize("total,fraction,phases", [(100, 0.5, 3), (940, 0.5, 3), (7, 0.4, 3), (1000, 0.3, 7)])
def test_budget_split_is_exact(total, fraction, phases):
    dense, per_phase = bimp.split_budget(total, fraction, phases)
    assert dense + phases * per_phase == total and per_phase >= 1
    assert 0 <= dense - round(fraction * total) < phases     # the remainder goes to the dense phase


def test_budget_split_errors():
    with pytest.raises(LthError, match="no step"):
        bimp.split_budget(3, 0.5, 3)
    with pytest.raises(LthError, match="--dense-fraction"):
        bimp.split_budget(100, 1.0, 3)


def test_bimp_refuses_flags_it_sets():
    with pytest.raises(LthError, match="--schedule is set by lth.lottery.bimp"):
        bimp.plan([*BASE, "--budget-steps", "60", "--final-sparsity", "0.9", "--schedule", "ocp"])
    with pytest.raises(LthError, match="--final-sparsity"):
        bimp.plan([*BASE, "--budget-steps", "60"])
    with pytest.raises(LthError, match="belongs to no LR schedule"):
        bimp.plan([*BASE, "--budget-steps", "60", "--final-sparsity", "0.9", "--div", "10"])


def test_bimp_plan_routes_lr_parameters(tmp_path):
    runs, arithmetic = bimp.plan([*BASE, "--budget-steps", "100", "--final-sparsity", "0.9", "--baselines", "ocp",
                                  "--baseline-lr-schedule", "linear", "--warmup", "0.1", "--retrain-warmup", "0.2",
                                  "--runs-root", str(tmp_path)])
    (label_d, dense), (label_b, retrain), (label_o, ocp) = runs
    assert (label_d, label_b, label_o) == ("dense", "bimp", "ocp")
    assert dense.train.lr_schedule == "linear" and dense.train.lr_schedule_params["warmup"] == 0.1
    assert retrain.train.lr_schedule == "allr" and retrain.train.lr_schedule_params["retrain_warmup"] == 0.2
    assert ocp.train.lr_schedule_params["warmup"] == 0.1 and ocp.prune.scope == "global"
    assert dense.train.steps + 3 * retrain.train.steps == ocp.train.steps == 100
    assert retrain.prune.restart_params["from_run"] == str((tmp_path / run_name(dense)).resolve())
    assert "B = 100 steps" in arithmetic and f"dense D {dense.train.steps}" in arithmetic


@pytest.fixture(scope="module")
def bimp_runs(tmp_path_factory):
    """python -m lth.bimp in this process: dense (linear), 3 ALLR phases, OCP and AGP at 90 steps."""
    root = tmp_path_factory.mktemp("bimp")
    assert bimp.main([*BASE, "--budget-steps", "90", "--final-sparsity", "0.9", "--baselines", "ocp", "agp",
                      "--runs-root", str(root)]) == 0
    return {RunStore(d).run_config().prune.schedule: RunStore(d) for d in root.iterdir()}


def steps_of(store: RunStore) -> int:
    return sum(store.load_summary(r)["steps"] for r in store.finished_rounds())


def test_bimp_and_baselines_train_the_same_number_of_steps(bimp_runs):
    assert sorted(bimp_runs) == ["agp", "dense", "ocp", "one_shot"]
    dense, phases = bimp_runs["dense"], bimp_runs["one_shot"]
    assert phases.run_config().prune.restart_params["from_run"] == str(dense.root)
    assert steps_of(dense) == 45 and steps_of(phases) == 3 * 15
    assert steps_of(dense) + steps_of(phases) == steps_of(bimp_runs["ocp"]) == steps_of(bimp_runs["agp"]) == 90
    assert dense.run_config().train.lr_schedule == "linear" and phases.run_config().train.lr_schedule == "allr"
    assert phases.load_summary(3)["sparsity"] == pytest.approx(0.9, abs=1e-3)


def test_analysis_tables_and_figures(bimp_runs, dense_run, allr_run, tmp_path, capsys):
    from analysis import retrain
    out = tmp_path / "out"
    given = [str(s.root) for s in bimp_runs.values()] + [str(dense_run), str(allr_run[0].root)]
    assert retrain.main(given + ["--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["retrain_budget.csv", "retrain_budget.md", "retrain_budget.png",
                                                     "retrain_schedules.csv", "retrain_schedules.md",
                                                     "retrain_schedules.png"]
    schedules = (out / "retrain_schedules.md").read_text()
    assert schedules.count("| ALLR |") == 2                # the step-LR dense run's, and BIMP's phases
    budget = (out / "retrain_budget.md").read_text()
    assert "BIMP" in budget and "OCP (step)" in budget and "AGP (step)" in budget and "| 90 = " in budget
    assert "one run each" in budget and budget in text and "IMP-ALLR" not in budget   # 105 steps: alone
    rows = (out / "retrain_schedules.csv").read_text().splitlines()
    assert rows[0].startswith("dense_lr,dense_epochs,rt_epochs_per_phase,lr_schedule,phase,sparsity")
    assert len(rows) == 1 + 2 * 3
    # the paired column: the step-LR ALLR run's last phase minus its own dense run's accuracy
    header = rows[0].split(",")
    last = dict(zip(header, next(r for r in rows[1:] if r.startswith("step,") and r.split(",")[4] == "3").split(",")))
    expected = allr_run[0].load_summary(3)["test_acc"] - RunStore(dense_run).load_summary(1)["test_acc"]
    assert float(last["minus_dense_mean"]) == pytest.approx(expected, abs=1e-6)


def test_bimp_runs_with_another_budget_split_are_another_method(bimp_runs, tmp_path, capsys):
    """Two BIMP splits of the same budget are two rows of the budget table, never pooled as seeds."""
    from analysis import retrain
    root = tmp_path / "split"
    assert bimp.main([*BASE, "--budget-steps", "90", "--final-sparsity", "0.9", "--dense-fraction", "0.3",
                      "--runs-root", str(root)]) == 0
    given = [str(s.root) for s in bimp_runs.values()] + [str(d) for d in root.iterdir()]
    assert retrain.main(given + ["--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    budget = (tmp_path / "out" / "retrain_budget.md").read_text()
    rows = [line for line in budget.splitlines() if line.startswith("| 90.0 |") and "BIMP" in line]
    assert len(rows) == 2
    assert any("BIMP (dense 50 %)" in r and r.rstrip().endswith("| 1 |") for r in rows)   # 45 of 90 steps
    assert any("BIMP (dense 30 %)" in r and r.rstrip().endswith("| 1 |") for r in rows)   # 27 of 90 steps


def test_analysis_refuses_an_unfinished_run(allr_run, tmp_path):
    from analysis import retrain
    unfinished = tmp_path / "unfinished"
    shutil.copytree(allr_run[0].root, unfinished)
    (unfinished / "round_03" / "summary.json").unlink()
    with pytest.raises(LthError, match="2 of 3 rounds finished"):
        retrain.main([str(unfinished), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_phases_continue_one_data_stream(dense_run, tmp_path, monkeypatch):
    """Zimmer et al.'s code keeps one loader running across phases: with T_rt = half an epoch,
    phase 2 trains on the half of the data order phase 1 did not see, not on the same half."""
    from lth.training import loop as train_mod
    seen, real_step = [], train_mod.train_step

    def recording_step(forward, optimizer, masks, x, y, *args, **kwargs):
        seen.append(y.clone())
        return real_step(forward, optimizer, masks, x, y, *args, **kwargs)
    monkeypatch.setattr(train_mod, "train_step", recording_step)
    args = [*BASE, *RETRAIN[:-2], "--rounds", "2", "--from-run", str(dense_run), "--steps", "11",
            "--lr-schedule", "llr", "--augment", "none"]
    cfg, run_dir = run.resolve_config(args)
    execution.execute(cfg, run_dir=tmp_path / "run", device="cpu")
    assert len(seen) == 22                                              # 2 phases x 11 of the 22 batches an epoch
    loader, _ = train_mod.make_loaders(datasets.load("digits"), cfg.train, "cpu", 28, "none", cfg.seeds.order_seed, 0)
    epoch = [y for _, y in loader]                                      # one epoch of a fresh loader's order
    assert all(torch.equal(a, b) for a, b in zip(seen, epoch))          # phase 1: its first half, phase 2: the second
    assert RunStore(tmp_path / "run").loader_path(1).exists()


def test_analysis_pools_seed_replicates_only(dense_run, allr_run, tmp_path, capsys):
    """Issue 19 item 2: runs that differ in a field outside the table's setting (here the ALLR
    warm-up) are separate rows labelled by that field; a run that differs only in its seeds
    is pooled with its replicate."""
    from analysis import retrain
    other_seed, other_warmup = tmp_path / "seed", tmp_path / "warmup"
    for run_dir, more in ((other_seed, ["--order-seed", "7"]), (other_warmup, ["--retrain-warmup", "0.2"])):
        cfg, _ = run.resolve_config(retrain_args(dense_run, tmp_path, "--lr-schedule", "allr", *more))
        execution.execute(cfg, run_dir=run_dir, device="cpu")
    assert retrain.main([str(allr_run[0].root), str(other_seed), str(other_warmup), "--out", str(tmp_path / "o")]) == 0
    capsys.readouterr()
    rows = [r for r in (tmp_path / "o" / "retrain_schedules.md").read_text().splitlines() if "| ALLR" in r]
    assert len(rows) == 2
    assert any("| ALLR [retrain_warmup=0.1] |" in r and r.rstrip().endswith("| 2 |") for r in rows)
    assert any("| ALLR [retrain_warmup=0.2] |" in r and r.rstrip().endswith("| 1 |") for r in rows)
