"""lth.Pruner in a plain PyTorch loop: the same per-step sparsity trajectory as `lth run`'s
training loop for the same schedule, exact final targets, masked gradients and optimizer
state, resumable state, lth's mask format, one-line errors for bad input.

    python -m pytest tests/test_pruner.py -q
"""

import pytest
import torch
import torch.nn.functional as F

import lth
from lth import models
from lth.config import PruneConfig
from lth.data import datasets
from lth.errors import LthError
from lth.lottery import assemble
from lth.pruning.masks import Masks
from lth.pruning.pruner import DEFAULTS
from lth.runs.files import load_tensors
from runhelpers import fit_model
from runhelpers import resolved_config

STEPS = 60


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits")


def lth_run_trajectory(digits, *flags):
    """Per-step sparsity of `lth run FLAGS`' rounds, recorded with train()'s after_step hook on
    the updater lth.lottery.imp builds (assemble.mask_updater), round after round: the sparsity
    each optimizer step trained under, then the sparsity each round ended at."""
    cfg = resolved_config("--dataset", "digits", "--model", "lenet300_100", "--image-size", "0", "--augment", "none",
                          "--batch-size", "32", "--steps", str(STEPS), "--eval-every", "0", "--no-progress", *flags)
    model = assemble.build_model(cfg, digits, cfg.seeds.init_seed, "cpu")
    masks = assemble.make_masks(cfg, model)
    targets = assemble.sparsity_targets(cfg, masks)
    rounds = []
    for r in range(1, cfg.prune.rounds + 1):
        seen = []
        updater = assemble.mask_updater(cfg, masks, targets[r - 1], targets[r], r)
        fit_model(model, masks, digits, cfg.train, device="cpu", image_size=8, augment="none", order_seed=1,
                  augment_seed=2, pruning=updater, progress=False,
                  after_step=lambda step, model, masks: seen.append(masks.pruned_counts()))
        rounds.append((seen, masks.pruned_counts()))
    return cfg, targets, rounds


def plain_loop_trajectory(digits, cfg, targets, seed=5, **pruner_kwargs):
    """The same rounds in a user's loop: their own model copy, optimizer (SGD), data order."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = models.build("lenet300_100", 10, 1, 8)
    g = torch.Generator().manual_seed(seed)
    rounds, previous = [], None
    p = cfg.prune
    for r in range(1, p.rounds + 1):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        pruner = lth.Pruner(model, optimizer, schedule=p.schedule, schedule_params=p.schedule_params,
                            initial_sparsity=targets[r - 1], final_sparsity=targets[r], total_steps=STEPS,
                            layers=p.layers, scope=p.scope, tolerance=p.prune_tolerance, masks=previous,
                            **pruner_kwargs)
        seen = []
        for _ in range(STEPS):
            idx = torch.randint(0, len(digits.train_y), (32,), generator=g)
            x = digits.train_x[idx].float().div(16.0)
            loss = F.cross_entropy(model(x), digits.train_y[idx])
            optimizer.zero_grad()
            loss.backward()
            seen.append(pruner.masks.pruned_counts())  # the mask this step trains under
            optimizer.step()
        rounds.append((seen, pruner.masks.pruned_counts()))
        previous = pruner.masks.state_dict()
        pruner.remove()
    return rounds


def largest_gap(a, b, sizes, scope="local"):
    """The largest difference in sparsity, over steps and layers, between two trajectories
    (global scope: of the overall sparsity, since one threshold spreads it by the weights)."""
    if scope == "global":
        return max(abs(sum(row_a) - sum(row_b)) / sum(sizes) for row_a, row_b in zip(a, b))
    return max(abs(x - y) / n for row_a, row_b in zip(a, b) for x, y, n in zip(row_a, row_b, sizes))


@pytest.mark.parametrize("flags", [
    ("--schedule", "ocp", "--final-sparsity", "0.9", "--rounds", "1", "--layers", "all_but_output"),
    ("--schedule", "ocp", "--final-sparsity", "0.9", "--rounds", "1", "--prune-tolerance", "0", "--layers", "all"),
    ("--schedule", "agp", "--rounds", "2", "--rate", "0.5", "--layers", "all"),
    ("--schedule", "iterative", "--rounds", "1", "--final-sparsity", "0.8", "--scope", "global", "--layers", "all"),
    ("--schedule", "one_shot", "--rounds", "2", "--rate", "0.3", "--layers", "all", "--layer-rate", "@output=0.5"),
])
def test_plain_loop_follows_lth_runs_trajectory_exactly(digits, flags):
    cfg, targets, reference = lth_run_trajectory(digits, *flags)
    ours = plain_loop_trajectory(digits, cfg, targets)
    sizes = [m.numel() for m in Masks.for_model(models.build("lenet300_100", 10, 1, 8), layers=cfg.prune.layers).tensors]
    for (ref_steps, ref_end), (our_steps, our_end) in zip(reference, ours):
        assert len(our_steps) == len(ref_steps) == STEPS
        assert largest_gap(ref_steps, our_steps, sizes, cfg.prune.scope) == 0.0   # the same counts at every step
        assert largest_gap([ref_end], [our_end], sizes, cfg.prune.scope) == 0.0   # and at the end of each round
    assert len(ours) == cfg.prune.rounds


def test_defaults_are_lth_runs():
    d = PruneConfig()
    assert DEFAULTS == {"tolerance": d.prune_tolerance, "interval": d.prune_interval, "criterion": d.criterion,
                        "scope": d.scope}


def tiny():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = models.build("lenet300_100", 10, 1, 8)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2)


def steps(model, optimizer, n, seed=0, closure=False):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)

        def step():
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss
        if closure:
            optimizer.step(step)
        else:
            step()
            optimizer.step()


@pytest.mark.parametrize("closure", [False, True])
def test_pruned_weights_and_optimizer_state_stay_zero(closure):
    model, optimizer = tiny()
    pruner = lth.Pruner(model, optimizer, schedule="agp", final_sparsity=0.8, total_steps=20, layers="all",
                        tolerance=0.0)
    steps(model, optimizer, 25, closure=closure)
    assert pruner.sparsity() == pytest.approx(0.8, abs=1e-4) and pruner.finished and pruner.step == 25
    for param, mask in zip(pruner.masks.params, pruner.masks.tensors):
        assert torch.all(param[mask == 0] == 0)
        for value in optimizer.state[param].values():
            if torch.is_tensor(value) and value.shape == param.shape:
                assert torch.all(value[mask == 0] == 0)   # the gradients were masked before the step


def test_state_dict_resumes_the_same_trajectory(tmp_path):
    model, optimizer = tiny()
    pruner = lth.Pruner(model, optimizer, schedule="ocp", final_sparsity=0.9, total_steps=30, layers="all")
    steps(model, optimizer, 30)
    reference = pruner.masks.state_dict()

    model, optimizer = tiny()
    pruner = lth.Pruner(model, optimizer, schedule="ocp", final_sparsity=0.9, total_steps=30, layers="all")
    steps(model, optimizer, 12)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "pruner": pruner.state_dict()},
               tmp_path / "ckpt.pt")
    saved = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    model, optimizer = tiny()
    pruner = lth.Pruner(model, optimizer, schedule="ocp", final_sparsity=0.9, total_steps=30, layers="all")
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    pruner.load_state_dict(saved["pruner"])
    assert pruner.step == 12
    g = torch.Generator().manual_seed(0)
    for _ in range(12):  # the same batches the uninterrupted run drew first
        torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
    for _ in range(18):
        x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    assert all(torch.equal(pruner.masks.state_dict()[k], reference[k]) for k in reference)

    other, other_opt = tiny()
    different = lth.Pruner(other, other_opt, schedule="agp", final_sparsity=0.9, total_steps=30, layers="all")
    with pytest.raises(LthError, match="differs in schedule"):
        different.load_state_dict(saved["pruner"])
    with pytest.raises(LthError, match="not a Pruner state"):
        different.load_state_dict({"masks": {}})


def test_masks_are_saved_in_lths_format(tmp_path):
    model, optimizer = tiny()
    pruner = lth.Pruner(model, optimizer, final_sparsity=0.5, total_steps=4, layers="all")
    steps(model, optimizer, 4)
    pruner.save_masks(tmp_path / "mask.pt")
    loaded = load_tensors(tmp_path / "mask.pt")   # as lth.runs.store reads a round's mask.pt
    run_masks = Masks.for_model(tiny()[0], layers="all")
    run_masks.load_state_dict(loaded)
    assert run_masks.sparsity() == pytest.approx(0.5, abs=1e-4)
    assert all(t.dtype == torch.bool for t in loaded.values())


def test_finish_applies_the_final_target_early():
    model, optimizer = tiny()
    pruner = lth.Pruner(model, optimizer, schedule="ocp", final_sparsity=0.7, total_steps=100, layers="all")
    steps(model, optimizer, 10)
    assert pruner.sparsity() < 0.6
    pruner.finish()
    assert pruner.sparsity() == pytest.approx(0.7, abs=1e-4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(final_sparsity=1.0), "final_sparsity must be a number in"),
    (dict(final_sparsity=-0.1), "final_sparsity must be"),
    (dict(final_sparsity="0.5"), "final_sparsity must be"),
    (dict(final_sparsity=0.5, initial_sparsity=0.6), "above final_sparsity"),
    (dict(final_sparsity=[0.5, 0.5]), "2 entries for 3 prunable layers"),
    (dict(final_sparsity=[0.5] * 3, scope="global"), "per-layer sparsities need scope='local'"),
    (dict(final_sparsity=0.5, total_steps=0), "total_steps must be a positive int"),
    (dict(final_sparsity=0.5, total_steps=2.5), "total_steps must be a positive int"),
    (dict(final_sparsity=0.5, schedule="cosine"), "unknown schedule 'cosine'"),
    (dict(final_sparsity=0.5, schedule="agp", schedule_params={"alpha": 3}), "has no parameter 'alpha'"),
    (dict(final_sparsity=0.5, schedule="agp", schedule_params={"start": 2.0}), "--start must be"),
    (dict(final_sparsity=0.5, layers="dense"), "unknown layer set"),
    (dict(final_sparsity=0.5, scope="row"), "unknown scope"),
    (dict(final_sparsity=0.5, criterion="taylor"), "criterion"),
    (dict(final_sparsity=0.5, exclude="fc1.*"), "exclude takes a list"),
    (dict(final_sparsity=0.5, exclude=["nope.*"]), "matches no layer"),
    (dict(final_sparsity=0.5, interval=0), "interval must be a positive int"),
    (dict(final_sparsity=0.5, tolerance=1.5), "tolerance"),
    (dict(final_sparsity=0.5, tolerance="0"), "tolerance must be a number"),
    (dict(final_sparsity=0.5, seed=1.5), "seed must be an int"),
    (dict(final_sparsity=0.5, schedule_params=[1]), "schedule_params must be a dict"),
    (dict(final_sparsity=0.5, masks=[1]), "masks must be a mask in lth's format"),
    (dict(final_sparsity=0.5, exclude=[3]), "exclude takes a list"),
    (dict(final_sparsity=0.5, masks={"1.weight": torch.ones(2)}), "mask does not fit"),
])
def test_bad_input_is_one_line(kwargs, message):
    model, optimizer = tiny()
    kwargs = {"total_steps": 10, "layers": "all", **kwargs}
    with pytest.raises(LthError, match=message) as e:
        lth.Pruner(model, optimizer, **kwargs)
    assert "\n" not in str(e.value)
    with pytest.raises(LthError, match="torch.optim.Optimizer"):
        lth.Pruner(model, object(), final_sparsity=0.5, total_steps=10)


def test_import_lth_stays_light():
    import subprocess
    import sys
    code = ("import sys, lth; assert 'torch' not in sys.modules; "
            "lth.Pruner; lth.rewind; lth.lmc.interpolate; assert 'torch' in sys.modules")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
    with pytest.raises(AttributeError, match="no attribute 'Prunr'"):
        lth.Prunr
