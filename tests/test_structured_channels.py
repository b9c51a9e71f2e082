"""Channel groups, saliency, the floor, selection by FLOPs, masking, the targeted shrink and
physical removal (lth.pruning.channels, lth.pruning.channel_select; issue 13).

Tiny models: a two-stage ResNet of width 4/8 (residual additions, a 1x1 projection shortcut)
and a hand-set conv-BN-conv net whose saliencies are computed by hand. The FLOPs-target test
uses the real resnet20 (fine enough channels to meet 5e-4; built once, about 3 s)."""
import math

import pytest
import torch
from torch import nn

from lth import models
from lth.errors import LthError
from lth.models.resnet import ResNet
from lth.pruning.channel_select import FlopsModel, flops_discount, floor_keep, rank, select
from lth.pruning.channels import ChannelGroups, TargetedShrink, count, shrink, shrunk_copy

X = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def tiny_resnet(seed=0):
    torch.manual_seed(seed)
    model = ResNet((4, 8), (2, 1), num_classes=5, in_channels=3, imagenet_stem=False)
    return random_batchnorm(model).eval()


def random_batchnorm(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm parameters and statistics, so that a wrong channel shows."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model


def members(groups, name):
    g = next(g for g in groups.groups if any(m.name == name and m.out for m in g.members))
    return {(m.name, m.out) for m in g.members}, g


def test_a_resnet_stage_is_one_group_across_its_residual_additions():
    groups = ChannelGroups(tiny_resnet(), X[:1], num_classes=5)
    stage1, g = members(groups, "stem.0")
    # stem, both blocks' second conv and BN: all add into the same channels
    assert {("stem.0", True), ("stem.1", True), ("layers.0.conv2", True), ("layers.0.bn2", True),
            ("layers.1.conv2", True), ("layers.1.bn2", True)} <= stage1
    # ...and everything that reads the stage: both blocks' first convs, the next stage's conv and shortcut
    assert {("layers.0.conv1", False), ("layers.1.conv1", False), ("layers.2.conv1", False),
            ("layers.2.shortcut.0", False)} <= stage1
    assert g.size == 4
    stage2, g2 = members(groups, "layers.2.shortcut.0")
    assert {("layers.2.conv2", True), ("layers.2.bn2", True), ("layers.2.shortcut.1", True), ("fc", False)} <= stage2
    assert ("fc", True) not in stage1 | stage2            # the classifier's outputs are never pruned
    inner, _ = members(groups, "layers.0.conv1")
    assert inner == {("layers.0.conv1", True), ("layers.0.bn1", True), ("layers.0.conv2", False)}
    assert len(groups.groups) == 5 and sorted(groups.sizes) == [4, 4, 4, 8, 8]


def hand_net():
    net = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2), nn.ReLU(),
                        nn.Conv2d(2, 3, 1, bias=False), nn.BatchNorm2d(3), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 7))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1))
        net[1].weight.copy_(torch.tensor([0.5, 3.0]))
        net[3].weight.copy_(torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.0, 3.0]]).view(3, 2, 1, 1))
        net[4].weight.copy_(torch.tensor([1.0, 2.0, 0.0]))
        net[8].weight.copy_(torch.arange(21, dtype=torch.float).view(7, 3) / 10)
    return net.eval()


def test_saliency_is_the_member_mean_of_squared_norm_over_sqrt_fan_and_gamma_squared():
    net = hand_net()
    groups = ChannelGroups(net, torch.zeros(1, 1, 4, 4), num_classes=7)
    scores = dict(zip(groups.names, groups.saliency()))
    w3 = net[3].weight.view(3, 2)
    # group of conv 0: its filters (fan 1), BN gamma^2, conv 3's input columns (fan 3)
    expect0 = [(1.0 + 0.25 + (w3[:, i] ** 2).sum().item() / math.sqrt(3)) / 3 if i == 0 else
               (4.0 + 9.0 + (w3[:, i] ** 2).sum().item() / math.sqrt(3)) / 3 for i in range(2)]
    assert torch.allclose(scores["0"], torch.tensor(expect0, dtype=torch.float64))
    # group of conv 3: its filters (fan 2), BN gamma^2, the classifier's input columns (fan 7)
    wl = net[8].weight
    expect3 = [((w3[i] ** 2).sum().item() / math.sqrt(2) + net[4].weight[i].item() ** 2
                + (wl[:, i] ** 2).sum().item() / math.sqrt(7)) / 3 for i in range(3)]
    assert torch.allclose(scores["3"], torch.tensor(expect3, dtype=torch.float64))


@pytest.mark.parametrize("size,keep", [(1, 1), (2, 1), (3, 1), (4, 2), (16, 5), (32, 9), (64, 16), (512, 128)])
def test_layer_floor(size, keep):
    assert floor_keep(size) == keep == size - int(size * 0.75 * (1 - math.exp(-size)))


def test_floor_with_another_limit():
    assert floor_keep(16, 0.5) == 16 - int(8 * (1 - math.exp(-16)))
    assert floor_keep(16, 0.0) == 16


@pytest.fixture(scope="module")
def r20():
    torch.manual_seed(1)
    model = models.build("resnet20", 10, 3, 32).eval()
    example = torch.zeros(1, 3, 32, 32)
    groups = ChannelGroups(model, example, 10)
    return model, example, groups, FlopsModel(model, groups, example)


def test_flops_model_equals_torch_pruning_counts(r20):
    model, example, groups, fm = r20
    assert not fm.exact_only
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        kept = [int(torch.randint(floor_keep(s), s + 1, (), generator=gen)) for s in groups.sizes]
        removed = [s - k for s, k in zip(groups.sizes, kept)]
        assert fm.flops(kept) == pytest.approx(fm.exact(removed), abs=0.5)


@pytest.mark.parametrize("target", [0.3, 0.5, 0.7])
def test_binary_search_finds_the_cut_at_the_flops_target_of_the_shrunk_network(r20, target):
    model, example, groups, fm = r20
    discount = flops_discount(fm.channel_costs())
    sel = select(groups.saliency(), fm, target, discount=discount)
    flops, _ = count(shrunk_copy(model, groups.by_name(sel.pruned), example), example)
    assert sel.flops_rr == pytest.approx(1 - flops / fm.dense_flops, abs=1e-12)   # the FLOPs model is exact
    # every cut of the ranking: the search returns one within 5e-4 when one exists, else the closest
    ranking = rank(groups.saliency(), groups.sizes, discount=discount)
    reach = [fm.reduction(ranking.kept_for(k)) for k in range(len(ranking) + 1)]
    best = min(abs(r - target) for r in reach)
    assert abs(sel.flops_rr - target) <= 5e-4 if best <= 5e-4 else abs(sel.flops_rr - target) == best
    for size, kept in zip(groups.sizes, sel.kept_counts):
        assert kept >= floor_keep(size)


def test_binary_search_meets_the_tolerance_where_the_ranking_allows(r20):
    model, example, groups, fm = r20
    ranking = rank(groups.saliency(), groups.sizes)
    reach = [fm.reduction(ranking.kept_for(k)) for k in range(len(ranking) + 1)]
    hits = 0
    for target in [i / 100 for i in range(5, 80, 5)]:
        sel = select(groups.saliency(), fm, target)
        if min(abs(r - target) for r in reach) <= 5e-4:
            assert abs(sel.flops_rr - target) <= 5e-4
            hits += 1
    assert hits >= 5


def test_selection_prunes_the_lowest_scores_and_respects_earlier_cuts(r20):
    model, example, groups, fm = r20
    scores = groups.saliency()
    first = select(scores, fm, 0.3)
    for g, (s, p) in enumerate(zip(scores, first.pruned)):
        kept = groups.kept(first.pruned)[g]
        if len(p) and len(kept) > floor_keep(groups.sizes[g]):
            assert s[p].max() <= s[kept].min()             # within a group: lowest scores go first
    reversed_scores = [-s for s in scores]                  # a different ranking...
    second = select(reversed_scores, fm, 0.5, already=first.pruned)
    for a, b in zip(first.pruned, second.pruned):           # ...still keeps the earlier channels pruned
        assert set(a.tolist()) <= set(b.tolist())
    # the reversed ranking removes costly channels first (a stem channel is 2.4 % of the FLOPs),
    # so the cut closest to the target may be further from it than the tolerance
    assert second.flops_rr == pytest.approx(0.5, abs=0.025)


def test_unreachable_target_is_a_one_line_error(r20):
    model, example, groups, fm = r20
    with pytest.raises(LthError, match="out of reach.*layer floor"):
        select(groups.saliency(), fm, 0.9, layer_limit=0.2)
    with pytest.raises(LthError, match=r"outside \[0, 1\)"):
        select(groups.saliency(), fm, 1.0)


def test_masked_network_equals_the_physically_shrunk_one():
    model = tiny_resnet()
    groups = ChannelGroups(model, X[:1], num_classes=5)
    pruned = [torch.tensor([0, 2])] + [torch.tensor([1])] * (len(groups.groups) - 1)
    masker = groups.masker()
    groups.mask(masker, pruned)
    for g, idx in zip(groups.groups, pruned):                # every out-member slice is zero
        for m in g.members:
            if m.out:
                assert m.module.weight.index_select(0, idx).abs().sum() == 0
    masked_out = model(X)
    small = shrunk_copy(model, groups.by_name(pruned), X[:1])
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    assert torch.allclose(small(X), masked_out, atol=1e-5)
    masker.enforce()                                          # enforcement is idempotent
    assert torch.equal(model(X), masked_out)


def test_targeted_shrink_touches_only_the_selected_channels():
    model = tiny_resnet()
    groups = ChannelGroups(model, X[:1], num_classes=5)
    pruned = [torch.tensor([], dtype=torch.long)] * len(groups.groups)
    gi = groups.names.index("layers.0.conv1")
    pruned[gi] = torch.tensor([1, 3])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    TargetedShrink(groups, pruned).apply(lam=0.5, lr=1.0)      # factor 1 - 0.5 = 0.5
    after = model.state_dict()
    for name in before:
        b, a = before[name], after[name]
        if name == "layers.0.conv1.weight" or name == "layers.0.bn1.weight":
            assert torch.equal(a[[1, 3]], b[[1, 3]] * 0.5) and torch.equal(a[[0, 2]], b[[0, 2]])
        elif name == "layers.0.conv2.weight":                  # the consumer's input slices
            assert torch.equal(a[:, [1, 3]], b[:, [1, 3]] * 0.5) and torch.equal(a[:, [0, 2]], b[:, [0, 2]])
        else:                                                 # BN beta, statistics, other layers: untouched
            assert torch.equal(a, b), name


def test_shrink_refuses_unknown_layers_and_out_of_range_channels():
    model = tiny_resnet()
    with pytest.raises(LthError, match="no layer named"):
        shrink(model, {"nope.conv": [0]}, X[:1])
    with pytest.raises(LthError, match="cannot remove channels"):
        shrink(model, {"layers.0.conv1": [9]}, X[:1])


def grouped_net(seed=0):
    """conv -> grouped conv (4 groups, 8 -> 12) -> 1x1 conv, BatchNorm after each: ResNeXt's block in small."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 12, 3, padding=1, groups=4, bias=False), nn.BatchNorm2d(12), nn.ReLU(),
                        nn.Conv2d(12, 6, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))
    return random_batchnorm(net).eval()


def test_grouped_convolutions_prune_the_same_positions_in_every_conv_group():
    net = grouped_net()
    groups = ChannelGroups(net, X[:1], num_classes=5)
    assert groups.names == ["0", "3", "6"] and groups.sizes == [2, 3, 6]   # 8/4 and 12/4 positions; plain 6
    pruned = [torch.tensor([1]), torch.tensor([0, 2]), torch.tensor([4])]
    masker = groups.masker()
    groups.mask(masker, pruned)
    assert net[0].weight[[1, 3, 5, 7]].abs().sum() == 0 and net[0].weight[[0, 2, 4, 6]].abs().sum() > 0
    assert net[3].weight[:, 1].abs().sum() == 0 and net[3].weight[:, 0].abs().sum() > 0   # input position 1
    assert net[3].weight[[0, 2, 3, 5, 6, 8, 9, 11]].abs().sum() == 0                      # positions 0, 2 of 3
    masked = net(X)
    small = shrunk_copy(net, groups.by_name(pruned), X[:1])
    assert small[3].groups == 4 and small[3].weight.shape == (4, 1, 3, 3) and small[0].out_channels == 4
    assert torch.allclose(small(X), masked, atol=1e-5)
    scores = groups.saliency()
    assert [len(s) for s in scores] == [2, 3, 6] and all(torch.isfinite(s).all() for s in scores)


def test_resnext_masked_equals_removed():
    torch.manual_seed(0)
    net = models.build("torchvision:resnext50_32x4d", 5, 3, 32).eval()   # 25 M parameters, 32 conv groups
    x = X[:2, :, :, :]
    groups = ChannelGroups(net, x[:1], num_classes=5)
    assert "layer1.0.conv1" in groups.names and groups.sizes[groups.names.index("layer1.0.conv1")] == 4   # 128 channels in 32 groups
    pruned = [torch.arange(s // 2) for s in groups.sizes]
    groups.mask(groups.masker(), pruned)
    small = shrunk_copy(net, groups.by_name(pruned), x[:1])
    with torch.no_grad():
        assert torch.allclose(small(x), net(x), atol=1e-4)
    assert small.layer4[0].conv2.groups == 32 and small.layer4[0].conv2.out_channels == 512


def test_regnet_grouped_convs_with_squeeze_excitation_masked_equal_removed():
    torch.manual_seed(0)
    net = models.build("torchvision:regnet_y_400mf", 5, 3, 32).eval()   # group width 8, SE blocks
    groups = ChannelGroups(net, X[:1], num_classes=5)
    pruned = [torch.arange(s // 3) for s in groups.sizes]
    groups.mask(groups.masker(), pruned)
    small = shrunk_copy(net, groups.by_name(pruned), X[:1])
    with torch.no_grad():
        assert torch.allclose(small(X), net(X), atol=1e-5)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in net.parameters())


def test_grouped_channels_that_do_not_split_into_the_conv_groups_are_refused():
    from lth.pruning.grouped import period
    with pytest.raises(LthError, match="do not split evenly"):
        period("x", 10, [4])


def test_a_model_without_a_classifier_of_that_size_is_refused():
    with pytest.raises(LthError, match="no Linear or Conv layer with 11 outputs"):
        ChannelGroups(tiny_resnet(), X[:1], num_classes=11)


def test_tiny_groups_fall_back_to_exact_flops_counts():
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Conv2d(2, 6, 3), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5)).eval()
    groups = ChannelGroups(net, X[:1], num_classes=5)
    fm = FlopsModel(net, groups, X[:1])
    assert fm.exact_only                                       # a group of 2 channels: no quadratic fit
    sel = select(groups.saliency(), fm, 0.3, layer_limit=0.9)
    flops, _ = count(shrunk_copy(net, groups.by_name(sel.pruned), X[:1]), X[:1])
    assert sel.flops_rr == pytest.approx(1 - flops / fm.dense_flops)
