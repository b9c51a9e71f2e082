"""Structured pruning of depthwise convolutions and attention heads (lth.pruning.channels, heads;
issue 21): masking a channel or a head and removing it give the same outputs; exports reload."""
import copy

import pytest
import torch
from torch import nn

from lth import models
from lth.errors import LthError
from lth.pruning.channels import ChannelGroups, shrink
from lth.pruning.heads import attention_blocks
from lth.structured import export

VIT = "timm:vit_tiny_patch16_224,depth=2,patch_size=8,embed_dim=32,num_heads=4"
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def masked_and_removed(model, pruned_of):
    groups = ChannelGroups(model, X[:1], 10)
    pruned = [pruned_of(name, size) for name, size in zip(groups.names, groups.sizes)]
    groups.mask(groups.masker(), pruned)
    with torch.no_grad():
        masked = model(X)
    small = shrink(copy.deepcopy(model), groups.by_name(pruned), X[:1])
    with torch.no_grad():
        removed = small(X)
    return groups, small, masked, removed


def test_vit_heads_are_groups_and_removing_them_changes_nothing():
    torch.manual_seed(0)
    vit = models.build(VIT, 10, 3, 32).eval()
    assert set(attention_blocks(vit)) == {"blocks.0.attn.qkv", "blocks.1.attn.qkv"}
    groups, small, masked, removed = masked_and_removed(
        vit, lambda name, size: torch.tensor([1, 3]) if name.endswith("qkv") else torch.arange(5))
    assert groups.names == ["blocks.0.attn.qkv", "blocks.0.mlp.fc1", "blocks.1.attn.qkv", "blocks.1.mlp.fc1"]
    assert groups.sizes == [4, 128, 4, 128]          # heads; MLP hidden channels; the width stays dense
    assert torch.equal(masked, removed)
    attn = small.blocks[0].attn
    assert attn.num_heads == 2 and attn.qkv.weight.shape == (48, 32) and attn.proj.weight.shape == (32, 16)
    with pytest.raises(LthError, match="one must stay"):
        shrink(copy.deepcopy(vit), {"blocks.0.attn.qkv": [0, 1, 2, 3]}, X[:1])


def test_head_saliency_scores_whole_heads():
    vit = models.build(VIT, 10, 3, 32).eval()
    with torch.no_grad():
        vit.blocks[0].attn.qkv.weight[8:16].mul_(0.01)      # head 1's queries (head_dim 8) nearly zero
        vit.blocks[0].attn.qkv.weight[40:48].mul_(0.01)     # and its keys
        vit.blocks[0].attn.qkv.weight[72:80].mul_(0.01)     # and its values
    groups = ChannelGroups(vit, X[:1], 10)
    scores = groups.saliency()[groups.names.index("blocks.0.attn.qkv")]
    assert int(scores.argmin()) == 1


def test_mobilenet_v2_depthwise_channels():
    torch.manual_seed(0)
    net = models.build("torchvision:mobilenet_v2,width_mult=0.25", 10, 3, 32).eval()
    _, small, masked, removed = masked_and_removed(net, lambda name, size: torch.arange(min(2, size - 1)))
    assert torch.allclose(masked, removed, atol=1e-5)
    depthwise = [m for m in small.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert depthwise and all(m.groups == m.in_channels == m.out_channels for m in depthwise)


def test_export_of_a_vit_with_heads_removed_reloads(tmp_path):
    vit = models.build(VIT, 10, 3, 32).eval()
    groups = ChannelGroups(vit, X[:1], 10)
    pruned = [torch.tensor([2]) if n.endswith("qkv") else torch.arange(3) for n in groups.names]
    kept = groups.kept(pruned)
    small = shrink(copy.deepcopy(vit), groups.by_name(pruned), X[:1])
    export.save(tmp_path / "net.pt", small, VIT, 10, 3, 32,
                {n: {"size": s, "kept": k} for n, s, k in zip(groups.names, groups.sizes, kept)})
    again = export.load(tmp_path / "net.pt")
    with torch.no_grad():
        assert torch.equal(again(X), small(X))
