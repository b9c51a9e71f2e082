"""Pruning while training (lth.pruning.updater, lth.pruning.candidates): the fast path selects
exactly what a full re-selection selects, the trajectory stays within the tolerance at every
step and never ahead of the schedule, the round ends exactly at its target, and the exact mode
(tolerance 0) reproduces the per-step updates of before."""
import copy
import json

import pytest
import torch

from lth import config, execute, models
from lth.data import datasets
from lth.pruning import schedules
from lth.pruning.masks import Masks
from lth.pruning import MaskUpdater, candidates, prune
from lth.pruning.select import memory_flat, prune_layer
from lth.training.loop import make_optimizer, total_steps
from runhelpers import fit_model


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits")


def recipe(**overrides):
    cfg = config.RunConfig()
    config.apply_overrides(cfg, {"batch_size": 64, "epochs": 3.0, "eval_every": 0, "lr": 3e-3, **overrides}, "test")
    return cfg.resolved().train


def fresh(name="lenet300_100", channels_last=False):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = models.build(name, 10, 1, 8)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, Masks.for_model(model)


def weights_with_ties(shape, generator, channels_last=False):
    """Weights on a coarse grid (many equal magnitudes, both signs), optionally channels_last."""
    w = torch.randint(-6, 7, shape, generator=generator).float() / 4
    return w.contiguous(memory_format=torch.channels_last) if channels_last else w


# ---- the candidate selection against a full re-selection ------------------------------------

@pytest.mark.parametrize("shape, channels_last", [((300, 64), False), ((16, 8, 3, 3), True), ((7,), False),
                                                  ((64, 32, 3, 3), True)])
def test_candidates_select_exactly_the_lowest_kept_weights(shape, channels_last):
    g = torch.Generator().manual_seed(1)
    for trial in range(20):
        param = weights_with_ties(shape, g, channels_last)
        if trial % 2:
            param = param + torch.randn(shape, generator=g) * 1e-3  # distinct magnitudes too
            param = param.contiguous(memory_format=torch.channels_last) if channels_last else param
        mask = torch.ones_like(param)
        n = mask.numel()
        already = int(torch.randint(0, n - 1, (1,), generator=g))
        prune_layer(mask, torch.rand(shape, generator=g), already)  # an arbitrary earlier mask
        param.mul_(mask)                                            # pruned weights are zero
        count = int(torch.randint(1, n - already + 1, (1,), generator=g))
        expected = mask.clone()
        prune_layer(expected, param.abs(), count)                   # the reference: full re-selection
        layer = candidates.Layer(param, mask)
        offsets = candidates.select_layer(layer, n - already, count)
        got = mask.clone()
        memory_flat(got).index_fill_(0, torch.from_numpy(offsets), 0)
        assert offsets.size == count and torch.equal(got, expected), (trial, already, count)


def test_candidates_global_selects_what_global_pruning_selects():
    g = torch.Generator().manual_seed(2)
    for trial in range(10):
        model, masks = fresh("conv2", channels_last=True)
        with torch.no_grad():
            for p in masks.params:
                p.copy_(weights_with_ties(p.shape, g) * (0.1 if p.dim() == 2 else 1.0))
        prune(masks, 0.3, scope="global")
        masks.enforce()
        reference = copy.deepcopy(masks)
        sparsity = 0.3 + 0.05 * (trial + 1)
        prune(reference, sparsity, scope="global")
        counts = masks.pruned_counts()
        layers = candidates.layers_of(masks.params, masks.tensors)
        wanted = round(sparsity * masks.numel())
        picks = candidates.select_global(layers, masks.numel() - sum(counts), wanted - sum(counts))
        for mask, offsets in zip(masks.tensors, picks):
            memory_flat(mask).index_fill_(0, torch.from_numpy(offsets), 0)
        for a, b in zip(masks.tensors, reference.tensors):
            assert torch.equal(a, b)


def test_a_misplaced_bound_is_raised_until_enough_weights_are_candidates(monkeypatch):
    """The sample only sets the cost: a bound far too low is raised and the result is the same."""
    monkeypatch.setattr(candidates, "CANDIDATES", 1e-6)
    g = torch.Generator().manual_seed(3)
    param = torch.randn(200, 50, generator=g)
    mask = torch.ones_like(param)
    expected = mask.clone()
    prune_layer(expected, param.abs(), 777)
    offsets = candidates.select_layer(candidates.Layer(param, mask), param.numel(), 777)
    memory_flat(mask).index_fill_(0, torch.from_numpy(offsets), 0)
    assert torch.equal(mask, expected)


# ---- training: fast path = full re-selection, trajectory, end point ---------------------------

def run(ds, cfg, target, model_name="lenet300_100", channels_last=False, **updater_kwargs):
    model, masks = fresh(model_name, channels_last)
    updater = MaskUpdater(masks, target, **updater_kwargs)
    result = fit_model(model, masks, ds, cfg, device="cpu", image_size=8, augment="none", order_seed=1, augment_seed=2,
                   pruning=updater, progress=False)
    return model, masks, updater, result


@pytest.mark.parametrize("scope, model_name, tolerance", [("local", "lenet300_100", 0.0),
                                                          ("local", "lenet300_100", 1e-3),
                                                          ("global", "lenet300_100", 1e-3),
                                                          ("local", "conv2", 1e-3),
                                                          ("global", "conv2", 0.0)])
def test_candidate_updates_equal_full_reselection_bit_for_bit(digits, scope, model_name, tolerance):
    cfg = recipe(epochs=2.0)
    target = lambda t: schedules.ocp(t, 0.1, 0.8)  # noqa: E731
    fast = run(digits, cfg, target, model_name, model_name == "conv2", scope=scope, tolerance=tolerance,
               select="candidates")
    full = run(digits, cfg, target, model_name, model_name == "conv2", scope=scope, tolerance=tolerance,
               select="full")
    assert fast[2].updates == full[2].updates > 10
    for a, b in zip(fast[1].tensors, full[1].tensors):
        assert torch.equal(a, b)
    for a, b in zip(fast[0].state_dict().values(), full[0].state_dict().values()):
        assert torch.equal(a, b)
    assert fast[3]["test_acc"] == full[3]["test_acc"]


class PerStepReference:
    """The mask update before tolerances (commit 873c49b): whenever the target rose, prune to it,
    zero the optimizer state of every pruned weight, zero every pruned weight."""

    def __init__(self, masks, target):
        self.masks, self.target, self.last = masks, target, None

    def due(self, step):
        return True

    @torch.no_grad()
    def update(self, t, optimizer=None):
        target = self.target(t)
        if self.last is not None and target <= self.last:
            return False
        prune(self.masks, target)
        self.masks.zero_optimizer_state(optimizer)
        self.masks.enforce()
        self.last = target
        return True

    def state_dict(self):
        return {}


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_tolerance_0_reproduces_the_per_step_updates_of_before(digits, optimizer):
    cfg = recipe(epochs=2.0, optimizer=optimizer, **({"lr": 0.05} if optimizer == "sgd" else {}))
    target = lambda t: schedules.agp(t, 0.0, 0.85)  # noqa: E731
    model, masks, _, result = run(digits, cfg, target, tolerance=0.0)
    ref_model, ref_masks = fresh()
    ref = fit_model(ref_model, ref_masks, digits, cfg, device="cpu", image_size=8, augment="none", order_seed=1,
                augment_seed=2, pruning=PerStepReference(ref_masks, target), progress=False)
    for a, b in zip(masks.tensors, ref_masks.tensors):
        assert torch.equal(a, b)
    for a, b in zip(model.state_dict().values(), ref_model.state_dict().values()):
        assert torch.equal(a, b)
    assert result["test_acc"] == ref["test_acc"]


@pytest.mark.parametrize("scope", ["local", "global"])
@pytest.mark.parametrize("tolerance", [0.0, 1e-3, 5e-3])
def test_trajectory_lags_the_schedule_by_at_most_the_tolerance_at_every_step(digits, scope, tolerance):
    cfg = recipe(epochs=3.0)
    target = lambda t: schedules.ocp(t, 0.2, 0.9)  # noqa: E731
    total = total_steps(cfg, len(digits.train_y))
    model, masks = fresh()
    updater = MaskUpdater(masks, target, scope=scope, tolerance=tolerance)
    sizes = [m.numel() for m in masks.tensors]
    prune(masks, 0.2, scope=scope)  # the round starts at s_i
    lags = []

    def check(step, model, masks):
        s = target((step - 1) / total)  # the mask was last considered before this step
        counts = masks.pruned_counts()
        if scope == "local":
            for n, pruned in zip(sizes, counts):
                lag = round(s * n) - pruned
                assert 0 <= lag <= tolerance * n, (step, n, lag)  # never ahead, at most tau behind
                lags.append(lag / n)
        else:
            lag = round(s * sum(sizes)) - sum(counts)
            assert 0 <= lag <= tolerance * sum(sizes), (step, lag)
            lags.append(lag / sum(sizes))
        for param, mask in zip(masks.params, masks.tensors):
            assert torch.all(param[mask == 0] == 0)

    fit_model(model, masks, digits, cfg, device="cpu", image_size=8, augment="none", order_seed=1, augment_seed=2,
          pruning=updater, after_step=check, progress=False)
    assert len(lags) >= total
    if tolerance:
        assert max(lags) > tolerance / 4  # the tolerance is used, not just respected
    counts = masks.pruned_counts()
    if scope == "local":  # exactly s_f after the final update at t = 1
        assert counts == [round(0.9 * n) for n in sizes]
    else:
        assert sum(counts) == round(0.9 * sum(sizes))
    assert masks.known_total == sum(counts)


def test_tolerance_bounds_the_number_of_updates(digits):
    cfg = recipe(epochs=6.0)
    target = lambda t: schedules.ocp(t, 0.0, 0.9)  # noqa: E731
    total = total_steps(cfg, len(digits.train_y))
    _, masks, updater, _ = run(digits, cfg, target, tolerance=0.0)
    sizes = [m.numel() for m in masks.tensors]
    counts = [[round(target(t) * n) for n in sizes] for t in [k / total for k in range(total)] + [1.0]]
    rising = sum(1 for before, now in zip([[0] * len(sizes)] + counts, counts) if now != before)
    assert updater.updates == rising > total / 2  # tolerance 0: every step whose counts rose
    coarse = run(digits, cfg, target, tolerance=5e-3)[2].updates
    assert coarse <= 0.9 / 5e-3 + 2 and coarse < 0.6 * rising  # mid-round the schedule outruns 5e-3 a step


def test_per_layer_targets_keep_each_layer_within_the_tolerance(digits):
    cfg = recipe(epochs=2.0)
    total = total_steps(cfg, len(digits.train_y))
    finals = [0.9, 0.5, 0.0]
    fns = [lambda t, f=f: schedules.agp(t, 0.0, f) for f in finals]
    target = lambda t: [fn(t) for fn in fns]  # noqa: E731
    model, masks = fresh()
    sizes = [m.numel() for m in masks.tensors]

    def check(step, model, masks):
        for s, n, pruned in zip(target((step - 1) / total), sizes, masks.pruned_counts()):
            assert 0 <= round(s * n) - pruned <= 2e-3 * n

    fit_model(model, masks, digits, cfg, device="cpu", image_size=8, augment="none", order_seed=1, augment_seed=2,
          pruning=MaskUpdater(masks, target, tolerance=2e-3), after_step=check, progress=False)
    assert masks.pruned_counts() == [round(f * n) for f, n in zip(finals, sizes)]


def test_resume_with_a_tolerance_equals_an_uninterrupted_run(digits):
    cfg = recipe(epochs=3.0)
    target = lambda t: schedules.ocp(t, 0.0, 0.8)  # noqa: E731
    states = []
    model, masks = fresh()
    fit_model(model, masks, digits, cfg, device="cpu", image_size=8, augment="none", order_seed=1, augment_seed=2,
          pruning=MaskUpdater(masks, target, tolerance=2e-3), progress=False,
          save_checkpoint=lambda state: states.append(copy.deepcopy(state)))
    resumed_model, resumed_masks = fresh()
    fit_model(resumed_model, resumed_masks, digits, cfg, device="cpu", image_size=8, augment="none", order_seed=1,
          augment_seed=2, pruning=MaskUpdater(resumed_masks, target, tolerance=2e-3), progress=False,
          resume=states[0])
    for a, b in zip(masks.tensors, resumed_masks.tensors):
        assert torch.equal(a, b)
    for a, b in zip(model.state_dict().values(), resumed_model.state_dict().values()):
        assert torch.equal(a, b)


def test_optimizer_state_of_pruned_weights_is_zero_after_index_updates(digits):
    model, masks = fresh()
    optimizer = make_optimizer(model, recipe(), "cpu")
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()  # non-zero moments everywhere
    updater = MaskUpdater(masks, lambda t: 0.5 * t, tolerance=0.0, select="candidates")
    assert updater.update(0.5, optimizer)
    for param, mask in zip(masks.params, masks.tensors):
        for value in optimizer.state[param].values():
            if torch.is_tensor(value) and value.shape == param.shape:
                assert torch.all(value[mask == 0] == 0) and torch.all(value[mask != 0] != 0)
        assert torch.all(param[mask == 0] == 0)


# ---- threads ------------------------------------------------------------------------------------

def test_threads_are_applied_and_recorded_not_hashed(tmp_path):
    cfg = config.from_overrides({"rounds": 1, "epochs": 1.0, "threads": 1, "progress": False}, preset="quick")
    result = execute(cfg, runs_root=str(tmp_path), device="cpu")
    meta = json.loads((result.run_dir / "config.json").read_text())
    assert meta["threads"] == 1 == torch.get_num_threads()
    assert meta["config"]["runtime"]["threads"] == 1
    other = config.from_overrides({"rounds": 1, "epochs": 1.0, "threads": 3, "progress": False}, preset="quick")
    assert other.hash() == cfg.hash()


def test_global_full_reselection_counts_nothing_on_the_host_between_updates():
    """Global scope without candidates (CUDA's path): the total is tracked on the host, so no
    update recounts the masks (a device-to-host sync per update on a GPU)."""
    model, masks = fresh()
    updater = MaskUpdater(masks, lambda t: 0.8 * t, scope="global", select="full")
    assert updater.update(0.1)
    assert masks.known_counts is None and masks.known_total == round(0.08 * masks.numel())

    def no_recount():
        raise AssertionError("recounted the masks")
    masks.pruned_counts = no_recount
    for k in range(2, 11):
        assert updater.update(k / 10)
    assert masks.known_total == round(0.8 * masks.numel())
    del masks.pruned_counts
    assert sum(masks.pruned_counts()) == masks.known_total


@pytest.mark.parametrize("scope, tolerance", [("local", 0.0), ("local", 2e-3), ("global", 1e-3)])
def test_count_updates_predicts_the_updates_of_a_round(digits, scope, tolerance):
    from lth.pruning.updater import count_updates
    cfg = recipe(epochs=2.0)
    target = lambda t: schedules.agp(t, 0.0, 0.85)  # noqa: E731
    _, masks, updater, _ = run(digits, cfg, target, scope=scope, tolerance=tolerance)
    sizes = [m.numel() for m in masks.tensors]
    assert count_updates(target, sizes, total_steps(cfg, len(digits.train_y)), tolerance, scope=scope) \
        == updater.updates > 5
