"""The training engine: accuracy on real data, sparsity following the schedule at every step,
determinism per seed, exact resume from an epoch checkpoint, LR schedules, optimizer groups."""
import copy
import dataclasses
import math

import pytest
import torch

from lth import config, models
from lth.data import datasets
from lth.pruning import schedules
from lth.errors import LthError
from lth.pruning.masks import Masks
from lth.pruning import MaskUpdater
from lth.training.loop import lr_at, make_optimizer, total_steps
from runhelpers import fit_model

TIMING_KEYS = {"images_per_s", "wall_time_s"}


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits")


def recipe(**overrides):
    cfg = config.RunConfig()
    base = {"batch_size": 64, "epochs": 4.0, "eval_every": 2}
    if overrides.get("recipe", "paper") == "paper":
        base["lr"] = 3e-3
    config.apply_overrides(cfg, {**base, **overrides}, "test")
    return cfg.resolved().train


def fresh_model(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = models.build("lenet300_100", 10, 1, 8)
    return model, Masks.for_model(model)


def run(ds, cfg, target=None, augment="none", **kwargs):
    """Train a fresh LeNet; target(t) -> sparsity, if given, drives a MaskUpdater."""
    model, masks = fresh_model()
    pruning = MaskUpdater(masks, target) if target is not None else None
    result = fit_model(model, masks, ds, cfg, device="cpu", image_size=8, augment=augment, order_seed=1,
                   augment_seed=2, pruning=pruning, progress=False, **kwargs)
    return model, masks, result


def strip_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


def test_short_training_on_digits_is_far_above_chance(digits):
    _, _, result = run(digits, recipe(epochs=6.0))
    assert result["test_acc"] > 0.85  # chance is 0.10


def test_sparsity_follows_the_schedule_at_every_step(digits):
    cfg = recipe(epochs=3.0)
    target = lambda t: schedules.ocp(t, 0.1, 0.8)  # noqa: E731
    total = total_steps(cfg, len(digits.train_y))
    seen = []

    def check(step, model, masks):
        expected = target((step - 1) / total)  # the mask was last updated before this step
        for mask, pruned in zip(masks.tensors, masks.pruned_counts()):
            assert abs(pruned - expected * mask.numel()) <= 1
        for param, mask in zip(masks.params, masks.tensors):
            assert torch.all(param[mask == 0] == 0)
        seen.append(step)

    _, masks, _ = run(digits, cfg, (target), after_step=check)
    assert seen == list(range(1, total + 1))
    for mask, pruned in zip(masks.tensors, masks.pruned_counts()):
        assert pruned == round(0.8 * mask.numel())  # exactly s_f after the final update at t = 1


def test_best_accuracy_counts_only_the_final_sparsity(digits):
    # one-shot to 99 % at 50 % of the run, evaluated every epoch: the dense epochs do not count
    cfg = recipe(epochs=4.0, eval_every=1)
    _, masks, result = run(digits, cfg, lambda t: schedules.one_shot(t, 0.0, 0.99, start=0.5))
    evaluated = [m for m in result["metrics"] if "test_acc" in m]
    final = masks.sparsity()
    at_final = [m["test_acc"] for m in evaluated if m["sparsity"] == final]
    dense = [m["test_acc"] for m in evaluated if m["sparsity"] == 0.0]
    assert len(at_final) == 2 and len(dense) == 2   # epoch 3 and the final evaluation; epochs 1 and 2
    assert result["best_acc_at_final_sparsity"] == max(at_final)
    assert result["best_acc_at_final_sparsity"] >= result["test_acc"]
    assert max(dense) > result["best_acc_at_final_sparsity"]   # the old 'best acc' was this dense number
    assert "best_test_acc" not in result
    # under OCP only the end of the run is at the final sparsity
    _, _, ocp = run(digits, cfg, lambda t: schedules.ocp(t, 0.0, 0.9))
    assert ocp["best_acc_at_final_sparsity"] == ocp["test_acc"]


def test_one_shot_at_the_end_is_classic_imp(digits):
    cfg = recipe(epochs=1.0)
    counts = []
    _, masks, _ = run(digits, cfg, (lambda t: schedules.one_shot(t, 0.0, 0.5, start=1.0)),
                      after_step=lambda step, model, masks: counts.append(sum(masks.pruned_counts())))
    assert set(counts) == {0}  # dense for the whole run ...
    assert masks.sparsity() == pytest.approx(0.5, abs=1e-4)  # ... pruned once at the end


def test_same_seeds_give_identical_metrics_and_weights(digits):
    plan = lambda: (lambda t: schedules.agp(t, 0.0, 0.7))  # noqa: E731
    model_a, masks_a, a = run(digits, recipe(), plan(), augment="crop_flip")
    model_b, masks_b, b = run(digits, recipe(), plan(), augment="crop_flip")
    assert strip_timing(a["metrics"]) == strip_timing(b["metrics"])
    for pa, pb in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        assert torch.equal(pa, pb)


def test_resume_from_an_epoch_checkpoint_equals_an_uninterrupted_run(digits):
    cfg = recipe(epochs=4.0, optimizer="sgd", momentum=0.9)
    plan = lambda: (lambda t: schedules.ocp(t, 0.0, 0.8))  # noqa: E731
    states = []
    # deepcopy: a state holds live tensors, which the store serialises at once
    model_full, masks_full, full = run(digits, cfg, plan(), augment="crop_flip",
                                       save_checkpoint=lambda state: states.append(copy.deepcopy(state)))
    assert [s["epoch"] for s in states] == [1, 2, 3]  # after every epoch but the last
    model_resumed, masks_resumed, resumed = run(digits, cfg, plan(), augment="crop_flip", resume=states[1])
    assert strip_timing(resumed["metrics"]) == strip_timing(full["metrics"])
    for pa, pb in zip(model_full.state_dict().values(), model_resumed.state_dict().values()):
        assert torch.equal(pa, pb)
    for ma, mb in zip(masks_full.tensors, masks_resumed.tensors):
        assert torch.equal(ma, mb)


def test_one_cycle_lr_matches_fastai():
    cfg = recipe()
    total = 1000
    assert lr_at(0, total, cfg) == pytest.approx(cfg.lr / 25)
    assert lr_at(250, total, cfg) == pytest.approx(cfg.lr)
    assert lr_at(125, total, cfg) == pytest.approx((cfg.lr / 25 + cfg.lr) / 2)  # cosine midpoint
    assert lr_at(total, total, cfg) == pytest.approx(cfg.lr / 1e5)
    values = [lr_at(k, total, cfg) for k in range(total)]
    assert max(values) == pytest.approx(cfg.lr)
    assert all(a >= b for a, b in zip(values[250:], values[251:]))


def test_step_lr_drops_at_milestones():
    cfg = recipe(recipe="openlth")
    assert cfg.optimizer == "sgd" and cfg.lr == 0.1
    assert lr_at(499, 1000, cfg) == pytest.approx(0.1)
    assert lr_at(500, 1000, cfg) == pytest.approx(0.01)
    assert lr_at(750, 1000, cfg) == pytest.approx(0.001)


def test_paper_recipe_puts_no_weight_decay_on_batchnorm_and_biases():
    model = models.build("resnet20", 10, 3, 32)
    groups = make_optimizer(model, recipe(), torch.device("cpu")).param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == (p.dim() > 1), name
    groups = make_optimizer(model, recipe(recipe="openlth"), torch.device("cpu")).param_groups
    assert all(g["weight_decay"] == pytest.approx(1e-4) for g in groups)


def test_budget_in_steps_overrides_epochs(digits):
    cfg = recipe(steps=7)
    _, _, result = run(digits, cfg)
    assert result["steps"] == 7 and total_steps(cfg, len(digits.train_y)) == 7
    assert math.isfinite(result["test_loss"])


# ---- fastai's fit_one_cycle, written independently from fastai's definitions ------------------

def fastai_sched_cos(start, end, pos):
    """fastai.callback.schedule.SchedCos."""
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def fastai_combined_cos(pct, start, middle, end, pos):
    """fastai's combined_cos(pct, start, middle, end) = combine_scheds([pct, 1 - pct], [cos, cos])."""
    if pos < pct:
        return fastai_sched_cos(start, middle, pos / pct)
    return fastai_sched_cos(middle, end, (pos - pct) / (1 - pct))


ELEVEN_POINTS = [k / 10 for k in range(11)]


def test_lr_and_beta1_follow_fastai_fit_one_cycle_at_11_points():
    """fit_one_cycle(lr_max, div=25, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95))."""
    from lth.training.loop import momentum_at
    cfg = recipe()
    total = 1000
    for t in ELEVEN_POINTS:
        step = round(t * total)
        lr = fastai_combined_cos(0.25, cfg.lr / 25, cfg.lr, cfg.lr / 1e5, t)
        mom = fastai_combined_cos(0.25, 0.95, 0.85, 0.95, t)
        assert lr_at(step, total, cfg) == pytest.approx(lr, rel=1e-11, abs=0), t
        assert momentum_at(step, total, cfg) == pytest.approx(mom, rel=1e-11, abs=0), t


def test_the_optimizer_sees_the_scheduled_beta1(digits):
    from lth.training.loop import momentum_at
    cfg = recipe(steps=8)
    seen = []

    def check(step, model, masks):
        seen.append(step)
    model, masks = fresh_model()
    opt_betas = []
    real_step = torch.optim.AdamW.step

    def spy(self, *a, **k):
        opt_betas.append(self.param_groups[0]["betas"][0])
        return real_step(self, *a, **k)
    torch.optim.AdamW.step = spy
    try:
        fit_model(model, masks, digits, cfg, device="cpu", image_size=8, augment="none", order_seed=1,
              augment_seed=2, progress=False)
    finally:
        torch.optim.AdamW.step = real_step
    assert opt_betas == [pytest.approx(momentum_at(k, 8, cfg)) for k in range(8)]
    assert opt_betas[0] == pytest.approx(0.95) and min(opt_betas) < 0.9


def test_empty_moms_keeps_the_optimizers_beta1():
    from lth.training.loop import momentum_at
    cfg = recipe(moms=())
    assert momentum_at(10, 100, cfg) is None
    assert cfg.optimizer_params["beta1"] == 0.9


# ---- the weight multiply after a step (the optimizers' trait keeps_pruned_zero) ---------------------

@pytest.mark.parametrize("overrides", [
    {"optimizer": "adamw"},
    {"optimizer": "adamw", "beta1": 0.5, "eps": 1e-8, "weight_decay": 0.1},
    {"optimizer": "sgd", "momentum": 0.9, "recipe": "openlth", "lr": 0.05},
    {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "recipe": "openlth", "lr": 0.05},
    {"optimizer": "sgd", "momentum": 0.0, "recipe": "openlth", "lr": 0.05, "weight_decay": 0.01},
])
def test_skipping_the_weight_multiply_changes_no_bit(digits, monkeypatch, overrides):
    """Pruning while training with the multiply after every step and without it (the default for
    the registered optimizers): the same weights, masks and metrics, and pruned weights are
    exactly zero after every step of the run without it."""
    cfg = recipe(epochs=3.0, **overrides)
    plan = lambda: (lambda t: schedules.ocp(t, 0.0, 0.8))  # noqa: E731
    moved = []

    def check(step, model, masks):
        moved.extend(int((p[m == 0] != 0).sum()) for p, m in zip(masks.params, masks.tensors))

    model_a, masks_a, a = run(digits, cfg, plan(), augment="crop_flip", after_step=check)
    assert len(moved) > 0 and sum(moved) == 0
    untrusted(monkeypatch, cfg.optimizer)                                          # enforce every step
    model_b, masks_b, b = run(digits, cfg, plan(), augment="crop_flip")
    assert strip_timing(a["metrics"]) == strip_timing(b["metrics"])
    for pa, pb in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        assert torch.equal(pa, pb)
    for ma, mb in zip(masks_a.tensors, masks_b.tensors):
        assert torch.equal(ma, mb)


def untrusted(monkeypatch, name):
    """The optimizer entry `name` without the trait keeps_pruned_zero, for this test only."""
    from lth.training.optimizers import OPTIMIZERS
    entry = OPTIMIZERS.entries[name]
    monkeypatch.setitem(OPTIMIZERS.entries, name,
                        dataclasses.replace(entry, traits={**entry.traits, "keeps_pruned_zero": False}))


class _Drifting(torch.optim.SGD):
    """SGD that also nudges every weight, zeros included (a coupled update lth must not trust)."""

    @torch.no_grad()
    def step(self, closure=None):
        super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(1e-3)


def test_an_optimizer_that_moves_pruned_weights_is_caught(digits, monkeypatch):
    from lth.training.optimizers import OPTIMIZERS
    entry = OPTIMIZERS.entries["sgd"]
    drifting = dataclasses.replace(entry, fn=lambda groups, lr, **params: _Drifting(groups, lr=lr))
    monkeypatch.setitem(OPTIMIZERS.entries, "sgd", drifting)
    cfg = recipe(epochs=2.0, optimizer="sgd", recipe="openlth", lr=0.05)
    with pytest.raises(LthError, match="pruned weights moved off zero under optimizer 'sgd' in epoch 1"):
        run(digits, cfg, lambda t: schedules.one_shot(t, 0.0, 0.5, 0.0))
    untrusted(monkeypatch, "sgd")                                                  # not trusted: enforced each step
    _, masks, _ = run(digits, cfg, lambda t: schedules.one_shot(t, 0.0, 0.5, 0.0))
    assert masks.pruned_are_zero()
