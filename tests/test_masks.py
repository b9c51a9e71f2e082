"""Pruning masks: the invariants of docs/DESIGN.md §4 and the docstring of lth/pruning/masks.py."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lth import models
from lth.errors import LthError
from lth.pruning.masks import Masks, prunable_weights
from lth.pruning import prune as pruning_prune, random_mask_like

# The three settings of the old --method flag, as (criterion, scope) of lth.pruning.
PRUNING_METHODS = ("local", "global", "random")


def prune_to(masks, sparsity, method="local", generator=None):
    criterion, scope = {"local": ("magnitude", "local"), "global": ("magnitude", "global"),
                        "random": ("random", "local")}[method]
    pruning_prune(masks, sparsity, criterion, scope, generator)

TARGETS = [0.0, 0.1, 0.25, 0.25, 0.5, 0.62, 0.8, 0.9, 0.95, 0.99]


def small_net(seed: int = 0) -> nn.Module:
    """Conv + two linears with awkward sizes (36, 1872, 39 weights) so rounding matters."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 13), nn.ReLU(), nn.Linear(13, 3))


def scaled_net(seed: int = 0) -> nn.Module:
    """The same net with very different weight scales per layer."""
    net = small_net(seed)
    with torch.no_grad():
        net[0].weight.mul_(100.0)
        net[5].weight.mul_(0.01)
    return net


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def prune(masks: Masks, sparsity: float, method: str, seed: int = 0) -> None:
    prune_to(masks, sparsity, method=method, generator=generator(seed) if method == "random" else None)


def kept(masks: Masks):
    return [(m != 0).clone() for m in masks.tensors]


def jiggle(net: nn.Module, seed: int) -> None:
    """Change weight magnitudes (as training would), including pruned positions."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * p.detach().abs().mean())


# ---- construction -------------------------------------------------------------------------

def test_prunable_weights_are_conv_and_linear_weights_only():
    net = small_net()
    assert list(prunable_weights(net)) == ["0.weight", "3.weight", "5.weight"]
    masks = Masks.for_model(net)
    assert masks.names == ["0.weight", "3.weight", "5.weight"]
    assert masks.numel() == 36 + 144 * 13 + 13 * 3
    assert masks.sparsity() == 0.0
    for p, m in zip(masks.params, masks.tensors):
        assert m.shape == p.shape and m.dtype == p.dtype and not m.requires_grad
        assert bool((m == 1).all())


def test_exclude_globs_drop_layers():
    net = models.build("resnet20", 10, 3, 32)
    all_names = Masks.for_model(net).names
    assert "fc.weight" in all_names and "stem.0.weight" in all_names
    no_fc = Masks.for_model(net, exclude=("fc.*",)).names
    assert no_fc == [n for n in all_names if n != "fc.weight"]
    no_ends = Masks.for_model(net, exclude=("fc.*", "stem.*", "*.shortcut.*")).names
    assert "stem.0.weight" not in no_ends and "fc.weight" not in no_ends
    assert not any(".shortcut." in n for n in no_ends)
    assert len(no_ends) == len(all_names) - 2 - sum(".shortcut." in n for n in all_names)
    assert any(".shortcut." in n for n in all_names)
    # an excluded layer is never pruned
    masks = Masks.for_model(net, exclude=("fc.*",))
    prune_to(masks, 0.9)
    assert all(p is not net.fc.weight for p in masks.params)


def test_excluding_everything_raises():
    with pytest.raises(LthError):
        Masks.for_model(small_net(), exclude=("*",))


# ---- achieved sparsity --------------------------------------------------------------------

@pytest.mark.parametrize("method", ["local", "random"])
def test_per_layer_count_is_round_target_times_numel(method):
    net = small_net()
    masks = Masks.for_model(net)
    for i, target in enumerate(TARGETS):
        prune(masks, target, method, seed=i)
        for mask, pruned in zip(masks.tensors, masks.pruned_counts()):
            assert pruned == int((mask == 0).sum())
            assert pruned == round(target * mask.numel())
            assert abs(pruned / mask.numel() - target) <= 1.0 / mask.numel()
        jiggle(net, seed=100 + i)


def test_global_total_count_is_round_target_times_numel():
    net = small_net()
    masks = Masks.for_model(net)
    for i, target in enumerate(TARGETS):
        prune_to(masks, target, method="global")
        total = sum(masks.pruned_counts())
        assert total == round(target * masks.numel())
        assert abs(masks.sparsity() - target) <= 1.0 / masks.numel()
        jiggle(net, seed=200 + i)


@pytest.mark.parametrize("method", PRUNING_METHODS)
def test_masks_only_lose_ones(method):
    net = small_net(1)
    masks = Masks.for_model(net)
    before = kept(masks)
    for i, target in enumerate(TARGETS):
        prune(masks, target, method, seed=i)
        after = kept(masks)
        for a, b in zip(before, after):
            assert not bool((b & ~a).any()), f"{method} revived a weight at target {target}"
        before = after
        jiggle(net, seed=300 + i)  # magnitudes change between prunings, as in training
    assert masks.sparsity() == pytest.approx(0.99, abs=0.01)


def test_mixing_methods_keeps_counts_and_only_loses_ones():
    net = scaled_net(11)
    masks = Masks.for_model(net)
    before = kept(masks)
    for i, (target, method) in enumerate([(0.3, "local"), (0.5, "global"), (0.6, "random"),
                                          (0.7, "local"), (0.8, "global"), (0.9, "local")]):
        prune(masks, target, method, seed=i)
        counts = masks.pruned_counts()
        assert counts == [int((m == 0).sum()) for m in masks.tensors]
        if method == "global":
            assert sum(counts) == round(target * masks.numel())
        else:  # layers already above the target keep their extra pruning
            for pruned, m in zip(counts, masks.tensors):
                assert pruned >= round(target * m.numel())
            assert min(c - round(target * m.numel()) for c, m in zip(counts, masks.tensors)) == 0
        after = kept(masks)
        assert all(not bool((b & ~a).any()) for a, b in zip(before, after))
        before = after
        jiggle(net, seed=400 + i)


@pytest.mark.parametrize("method", PRUNING_METHODS)
def test_is_subset_of(method):
    net = small_net(2)
    earlier = Masks.for_model(net)
    prune(earlier, 0.3, method)
    later = Masks.for_model(net)
    later.load_state_dict(earlier.state_dict())
    prune(later, 0.7, method, seed=1)
    assert later.is_subset_of(earlier)
    assert not earlier.is_subset_of(later)


@pytest.mark.parametrize("method", PRUNING_METHODS)
def test_prune_to_never_revives_a_regrown_weight(method):
    net = small_net(3)
    masks = Masks.for_model(net)
    prune(masks, 0.5, method)
    with torch.no_grad():
        # A pruned weight grows large behind the mask's back (no enforce).
        for p, m in zip(masks.params, masks.tensors):
            idx = int((m.view(-1) == 0).nonzero()[0])
            p.view(-1)[idx] = 1e6
            regrown = idx
    prune(masks, 0.7, method, seed=1)
    assert float(masks.tensors[-1].view(-1)[regrown]) == 0.0
    for m in masks.tensors:
        assert float(m.view(-1)[int((m.view(-1) == 0).nonzero()[0])]) == 0.0
    if method == "global":
        assert sum(masks.pruned_counts()) == round(0.7 * masks.numel())
    else:
        assert masks.pruned_counts() == [round(0.7 * m.numel()) for m in masks.tensors]


@pytest.mark.parametrize("method", PRUNING_METHODS)
def test_lower_target_changes_nothing(method):
    masks = Masks.for_model(small_net())
    prune(masks, 0.7, method)
    before = kept(masks)
    prune(masks, 0.3, method, seed=5)
    prune(masks, 0.0, method, seed=6)
    assert all(torch.equal(a, b) for a, b in zip(before, kept(masks)))


def test_local_prunes_the_smallest_magnitudes():
    net = small_net(4)
    masks = Masks.for_model(net)
    prune_to(masks, 0.6, method="local")
    for p, m in zip(masks.params, masks.tensors):
        a = p.detach().abs()
        assert float(a[m == 0].max()) <= float(a[m != 0].min())


def test_global_prunes_the_smallest_magnitudes_over_all_layers():
    net = scaled_net()
    masks = Masks.for_model(net)
    prune_to(masks, 0.6, method="global")
    pruned = torch.cat([p.detach().abs()[m == 0] for p, m in zip(masks.params, masks.tensors)])
    kept_ = torch.cat([p.detach().abs()[m != 0] for p, m in zip(masks.params, masks.tensors)])
    assert float(pruned.max()) <= float(kept_.min())


def test_global_gives_different_per_layer_sparsities():
    net = scaled_net()
    global_masks = Masks.for_model(net)
    prune_to(global_masks, 0.5, method="global")
    s_conv, s_mid, s_last = [r["sparsity"] for r in global_masks.report()[:3]]
    # conv weights are 100x larger, the last layer's 100x smaller than the middle one's
    assert s_conv < 0.1
    assert s_last > 0.9
    assert s_conv < s_mid < s_last
    local_masks = Masks.for_model(net)
    prune_to(local_masks, 0.5, method="local")
    for row in local_masks.report()[:3]:
        assert abs(row["sparsity"] - 0.5) <= 1.0 / row["numel"]


def test_random_pruning_is_seeded_and_ignores_magnitude():
    net = scaled_net()
    a, b, c = Masks.for_model(net), Masks.for_model(net), Masks.for_model(net)
    prune_to(a, 0.5, method="random", generator=generator(7))
    prune_to(b, 0.5, method="random", generator=generator(7))
    prune_to(c, 0.5, method="random", generator=generator(8))
    assert all(torch.equal(x, y) for x, y in zip(a.tensors, b.tensors))
    assert not all(torch.equal(x, y) for x, y in zip(a.tensors, c.tensors))
    local = Masks.for_model(net)
    prune_to(local, 0.5)
    assert not all(torch.equal(x, y) for x, y in zip(a.tensors, local.tensors))
    with pytest.raises(LthError, match="seeded generator"):
        prune_to(Masks.for_model(net), 0.5, method="random")


# ---- ties ---------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["local", "global"])
def test_ties_broken_by_index_deterministically(method):
    def equal_net():
        net = nn.Sequential(nn.Linear(7, 5, bias=False), nn.Linear(5, 3, bias=False))
        with torch.no_grad():
            for p in net.parameters():
                p.fill_(0.5)
        return net

    first, second = Masks.for_model(equal_net()), Masks.for_model(equal_net())
    prune_to(first, 0.4, method=method)
    prune_to(second, 0.4, method=method)
    assert all(torch.equal(a, b) for a, b in zip(first.tensors, second.tensors))
    if method == "local":
        for m in first.tensors:
            count = round(0.4 * m.numel())
            flat = m.view(-1)
            assert bool((flat[:count] == 0).all()) and bool((flat[count:] == 1).all())
        prune_to(first, 0.6, method=method)  # a second pruning continues in index order
        for m in first.tensors:
            count = round(0.6 * m.numel())
            assert bool((m.view(-1)[:count] == 0).all()) and bool((m.view(-1)[count:] == 1).all())
    else:
        # one threshold over the concatenation: the lowest indices of the first layer first
        count = round(0.4 * 50)  # 20 of the 35 + 15 weights, all in the first layer
        flat = torch.cat([m.view(-1) for m in first.tensors])
        assert bool((flat[:count] == 0).all()) and bool((flat[count:] == 1).all())


def test_ties_at_the_threshold_take_the_lowest_indices():
    layer = nn.Linear(7, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, -1.0, 2.0, 1.0, 1.0, 5.0, -1.0]]))
    masks = Masks.for_model(layer)
    prune_to(masks, 3 / 7 + 1e-9)  # 3 of 7: four weights tie at |w| = 1, the first three go
    assert masks.tensors[0].view(-1).tolist() == [1, 0, 1, 0, 0, 1, 1]
    with torch.no_grad():
        layer.weight[0, 0] = 0.5  # now the smallest kept weight
    prune_to(masks, 5 / 7 + 1e-9)  # 2 more: index 0, then the last tie at |w| = 1
    assert masks.tensors[0].view(-1).tolist() == [0, 0, 1, 0, 0, 1, 0]


# ---- enforcing and optimizers -------------------------------------------------------------

def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 1, 6, 6, generator=g), torch.randint(0, 3, (16,), generator=g)


def _train(net, masks, opt, steps, check=True):
    x, y = _batch()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        masks.mask_grads()
        opt.step()
        masks.enforce()
        if check:
            for p, m in zip(masks.params, masks.tensors):
                assert bool((p.detach()[m == 0] == 0).all())


OPTIMIZERS = {
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.01),
    "adamw_amsgrad": lambda ps: torch.optim.AdamW(ps, lr=1e-2, betas=(0.9, 0.99), eps=1e-5,
                                                  weight_decay=0.01, amsgrad=True),
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-4),
    "sgd_nesterov": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-4, nesterov=True),
    "sgd_foreach_off": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-4, foreach=False),
    "adamw_foreach_off": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.01, foreach=False),
}
STATE_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer")


def _pruned_state(masks, opt):
    """{(layer, key): values of the state tensor at pruned positions}."""
    out = {}
    for i, (p, m) in enumerate(zip(masks.params, masks.tensors)):
        for key in STATE_KEYS:
            if key in opt.state.get(p, {}):
                out[(i, key)] = opt.state[p][key][m == 0]
    return out


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_pruned_weights_stay_exactly_zero_for_300_steps(name):
    net = small_net(5)
    masks = Masks.for_model(net)
    prune_to(masks, 0.7)
    masks.enforce()
    start = [p.detach().clone() for p in masks.params]
    opt = OPTIMIZERS[name](net.parameters())
    _train(net, masks, opt, 300)
    for p, m, p0 in zip(masks.params, masks.tensors, start):
        assert bool((p.detach()[m == 0] == 0).all())
        assert not torch.equal(p.detach()[m != 0], p0[m != 0])  # training did move the kept ones
    state = _pruned_state(masks, opt)
    expected = {"exp_avg", "exp_avg_sq"} if "adam" in name else {"momentum_buffer"}
    assert expected <= {key for _, key in state}
    for (layer, key), values in state.items():
        assert bool((values == 0).all()), f"{key} of layer {layer} is not zero at pruned positions"


@pytest.mark.parametrize("name", ["adamw", "sgd_momentum", "sgd_nesterov"])
def test_zero_optimizer_state_after_pruning_mid_training(name):
    net = small_net(6)
    masks = Masks.for_model(net)
    opt = OPTIMIZERS[name](net.parameters())
    _train(net, masks, opt, 20)  # dense: state is non-zero almost everywhere
    for target in (0.3, 0.6, 0.9):
        prune_to(masks, target)
        masks.enforce()
        state = _pruned_state(masks, opt)
        assert any(bool((v != 0).any()) for v in state.values())  # stale state before zeroing
        masks.zero_optimizer_state(opt)
        for (layer, key), values in _pruned_state(masks, opt).items():
            assert bool((values == 0).all()), (layer, key)
        _train(net, masks, opt, 100)
        for (layer, key), values in _pruned_state(masks, opt).items():
            assert bool((values == 0).all()), (layer, key)
    # step counters and other non-weight-shaped state are left alone
    if "adam" in name:
        assert all(float(opt.state[p]["step"]) == 320 for p in masks.params)


def test_enforce_zeroes_pruned_and_keeps_the_rest():
    net = small_net(7)
    masks = Masks.for_model(net)
    before = [p.detach().clone() for p in masks.params]
    prune_to(masks, 0.5)
    masks.enforce()
    for p, m, b in zip(masks.params, masks.tensors, before):
        assert bool((p.detach()[m == 0] == 0).all())
        assert torch.equal(p.detach()[m != 0], b[m != 0])


def test_mask_grads_zeroes_pruned_grads_only():
    net = small_net(8)
    masks = Masks.for_model(net)
    prune_to(masks, 0.5)
    x, y = _batch()
    F.cross_entropy(net(x), y).backward()
    grads = [p.grad.clone() for p in masks.params]
    net[5].weight.grad = None  # layers without a gradient are skipped
    masks.mask_grads()
    assert net[5].weight.grad is None
    for p, m, g in list(zip(masks.params, masks.tensors, grads))[:2]:
        assert bool((p.grad[m == 0] == 0).all())
        assert torch.equal(p.grad[m != 0], g[m != 0])
        assert bool((g[m == 0] != 0).any())


# ---- channels_last (docs/DESIGN.md §5) --------------------------------------------------

@pytest.mark.parametrize("method", PRUNING_METHODS)
def test_channels_last_model_gives_the_same_masks(method):
    plain = models.build("conv2", 10, 3, 8)
    fast = models.build("conv2", 10, 3, 8)
    fast.load_state_dict(plain.state_dict())
    fast = fast.to(memory_format=torch.channels_last)
    assert not fast[2].weight.is_contiguous()
    a, b = Masks.for_model(plain), Masks.for_model(fast)
    for target in (0.3, 0.8):
        prune(a, target, method, seed=int(target * 10))
        prune(b, target, method, seed=int(target * 10))
    assert a.pruned_counts() == b.pruned_counts()
    assert all(torch.equal(x, y) for x, y in zip(a.tensors, b.tensors))
    b.enforce()
    for p, m in zip(b.params, b.tensors):
        assert bool((p.detach()[m == 0] == 0).all())
    other = random_mask_like(b, generator(1))
    assert other.pruned_counts() == b.pruned_counts()


# ---- random_like ---------------------------------------------------------------------------

def test_random_like_keeps_counts_and_differs():
    net = scaled_net()
    masks = Masks.for_model(net)
    prune_to(masks, 0.8, method="global")
    original = kept(masks)
    other = random_mask_like(masks, generator(3))
    assert other.pruned_counts() == masks.pruned_counts()
    assert other.names == masks.names
    assert all(o is p for o, p in zip(other.params, masks.params))
    assert not all(torch.equal(a != 0, b) for a, b in zip(other.tensors, original))
    assert all(torch.equal(a != 0, b) for a, b in zip(masks.tensors, original))  # original untouched
    again = random_mask_like(masks, generator(3))
    assert all(torch.equal(a, b) for a, b in zip(other.tensors, again.tensors))
    different_seed = random_mask_like(masks, generator(4))
    assert not all(torch.equal(a, b) for a, b in zip(other.tensors, different_seed.tensors))


# ---- report -------------------------------------------------------------------------------

def test_report_rows_sum():
    net = small_net()
    masks = Masks.for_model(net)
    prune_to(masks, 0.37)
    rows = masks.report()
    layers, total = rows[:-1], rows[-1]
    assert [r["name"] for r in layers] == masks.names
    assert total["name"] == "total"
    assert total["numel"] == sum(r["numel"] for r in layers) == masks.numel()
    assert total["pruned"] == sum(r["pruned"] for r in layers) == sum(masks.pruned_counts())
    assert total["sparsity"] == pytest.approx(total["pruned"] / total["numel"])
    assert total["sparsity"] == pytest.approx(masks.sparsity())
    for r, p in zip(layers, masks.params):
        assert r["shape"] == list(p.shape)
        assert r["numel"] == p.numel()
        assert r["sparsity"] == pytest.approx(r["pruned"] / r["numel"])
        assert r["pruned"] == round(0.37 * p.numel())


# ---- saving -------------------------------------------------------------------------------

@pytest.mark.parametrize("method", PRUNING_METHODS)
def test_save_load_round_trip(tmp_path, method):
    masks = Masks.for_model(small_net(9))
    prune(masks, 0.55, method)
    state = masks.state_dict()
    assert all(v.dtype == torch.bool and v.device.type == "cpu" for v in state.values())
    torch.save(state, tmp_path / "mask.pt")
    loaded = torch.load(tmp_path / "mask.pt", weights_only=True)
    fresh = Masks.for_model(small_net(10))
    fresh.load_state_dict(loaded)
    assert fresh.pruned_counts() == masks.pruned_counts()
    for a, b, p in zip(masks.tensors, fresh.tensors, fresh.params):
        assert torch.equal(a, b)
        assert b.dtype == p.dtype  # stays a weight-dtype multiply


def test_load_state_dict_keeps_tensor_identity():
    masks = Masks.for_model(small_net())
    ids = [id(m) for m in masks.tensors]
    ptrs = [m.data_ptr() for m in masks.tensors]
    source = Masks.for_model(small_net())
    prune_to(source, 0.4)
    masks.load_state_dict(source.state_dict())
    assert masks.pruned_counts() == source.pruned_counts()
    prune_to(masks, 0.6)
    assert masks.pruned_counts() == [round(0.6 * m.numel()) for m in masks.tensors]
    assert [id(m) for m in masks.tensors] == ids
    assert [m.data_ptr() for m in masks.tensors] == ptrs


def test_load_state_dict_rejects_wrong_names_and_shapes():
    masks = Masks.for_model(small_net())
    good = masks.state_dict()

    missing = dict(good)
    del missing["3.weight"]
    with pytest.raises(LthError, match="3.weight"):
        masks.load_state_dict(missing)

    extra = dict(good, **{"9.weight": torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(LthError, match="9.weight"):
        masks.load_state_dict(extra)

    renamed = {("x" + k): v for k, v in good.items()}
    with pytest.raises(LthError):
        masks.load_state_dict(renamed)

    wrong_shape = dict(good, **{"5.weight": torch.ones(3, 14, dtype=torch.bool)})
    with pytest.raises(LthError, match="5.weight"):
        masks.load_state_dict(wrong_shape)

    other_model = Masks.for_model(models.build("lenet300_100", 10, 1, 8))
    with pytest.raises(LthError):
        masks.load_state_dict(other_model.state_dict())
    assert masks.sparsity() == 0.0  # a failed load of the names changed nothing


# ---- bad input ----------------------------------------------------------------------------

@pytest.mark.parametrize("method", PRUNING_METHODS)
@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5, math.nan])
def test_sparsity_outside_unit_interval_raises(method, sparsity):
    masks = Masks.for_model(small_net())
    with pytest.raises(LthError, match="outside"):
        prune(masks, sparsity, method)
    assert masks.sparsity() == 0.0


def test_unknown_criterion_and_scope_raise():
    with pytest.raises(LthError, match="magnitude"):
        pruning_prune(Masks.for_model(small_net()), 0.5, criterion="largest")
    with pytest.raises(LthError, match="local"):
        pruning_prune(Masks.for_model(small_net()), 0.5, scope="everywhere")


def test_exclude_matching_no_layer_lists_the_layers():
    with pytest.raises(LthError) as info:
        Masks.for_model(small_net(), exclude=("classifier.*",))
    assert "matches no layer" in str(info.value)
    for name in prunable_weights(small_net()):
        assert name in str(info.value)


def test_layer_sets_conv_and_all_but_output():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 8), nn.Linear(8, 3))
    assert list(prunable_weights(net, layers="conv")) == ["0.weight"]
    assert list(prunable_weights(net, layers="all_but_output")) == ["0.weight", "3.weight"]
    assert list(prunable_weights(net)) == ["0.weight", "3.weight", "4.weight"]
    with pytest.raises(LthError, match="no prunable weights"):
        prunable_weights(nn.Sequential(nn.Linear(3, 3)), layers="conv")
