"""Structured pruning of depthwise convolutions and attention heads (lth.pruning.channels, heads;
issue 21): masking a channel or a head and removing it give the same outputs; exports reload."""
import copy

import pytest
import torch
from torch import nn

from lth import models
from lth.errors import LthError
from lth.pruning.channels import ChannelGroups, shrink
from lth.pruning.heads import attention_blocks, remove_heads
from lth.structured import export

VIT = "timm:vit_tiny_patch16_224,depth=2,patch_size=8,embed_dim=32,num_heads=4"
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def masked_and_removed(model, pruned_of, x=X):
    """Mask the channels pruned_of(group name, size) picks, then remove them from a copy:
    (groups, the small copy, the masked model's output on x, the small copy's)."""
    groups = ChannelGroups(model, x[:1], 10)
    pruned = [pruned_of(name, size) for name, size in zip(groups.names, groups.sizes)]
    groups.mask(groups.masker(), pruned)
    with torch.no_grad():
        masked = model(x)
    small = shrink(copy.deepcopy(model), groups.by_name(pruned), x[:1])
    with torch.no_grad():
        removed = small(x)
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


BERT = ("hf:bert,hidden_size=32,num_hidden_layers=2,num_attention_heads=4,intermediate_size=64,vocab_size=100,"
        "max_position_embeddings=16")
TOKENS = torch.randint(1, 100, (3, 8), generator=torch.Generator().manual_seed(0))


def test_bert_heads_and_mlp_channels_masked_equal_removed():
    torch.manual_seed(0)
    bert = models.build(BERT, 10, 3, 32).eval()
    layer = "net.bert.encoder.layer.0"
    assert f"{layer}.attention.self.query" in attention_blocks(bert)
    groups, small, masked, removed = masked_and_removed(
        bert, lambda n, _: torch.tensor([0, 2]) if n.endswith("query") else torch.arange(7), TOKENS)
    assert dict(zip(groups.names, groups.sizes)) == {
        f"net.bert.encoder.layer.{i}.{n}": s for i in (0, 1)
        for n, s in (("attention.self.query", 4), ("intermediate.dense", 64))} | {"net.bert.pooler.dense": 32}
    assert torch.allclose(removed, masked, atol=1e-5)
    att = small.net.bert.encoder.layer[0].attention
    assert att.self.num_attention_heads == 2 and att.self.all_head_size == 16
    assert att.self.query.weight.shape == (16, 32) and att.output.dense.weight.shape == (32, 16)
    assert small.net.bert.encoder.layer[1].intermediate.dense.out_features == 57
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in bert.parameters())


def tiny_torchvision_vit(num_classes=10, in_channels=3, image_size=32):
    from torchvision.models import VisionTransformer
    return VisionTransformer(image_size=image_size, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32,
                             mlp_dim=64, num_classes=num_classes)


def test_multihead_attention_heads_masked_equal_removed():
    torch.manual_seed(0)
    vit = tiny_torchvision_vit().eval()
    groups, small, masked, removed = masked_and_removed(
        vit, lambda n, _: torch.tensor([3, 1]) if n.endswith("attention") else torch.arange(9))
    name = "encoder.layers.encoder_layer_0.self_attention"
    assert groups.sizes[groups.names.index(name)] == 4
    assert sorted(groups.sizes) == [4, 4, 64, 64]                    # heads, MLP hidden; the width stays dense
    assert torch.allclose(removed, masked, atol=1e-5)
    att = small.encoder.layers[0].self_attention
    assert att.num_heads == 2 and att.in_proj_weight.shape == (48, 32) and att.out_proj.weight.shape == (32, 16)
    # the FLOPs counter sees the smaller attention: an unpruned copy counts as nn.MultiheadAttention does
    from lth.pruning.channels import count
    from lth.pruning.mha import PrunedMultiheadAttention
    same = copy.deepcopy(vit)
    for layer in same.encoder.layers:
        layer.self_attention = PrunedMultiheadAttention(layer.self_attention, [0, 1, 2, 3])
    with torch.no_grad():
        assert torch.allclose(same(X), vit(X), atol=1e-5)
    assert count(same, X[:1]) == count(vit, X[:1]) and count(small, X[:1])[0] < count(vit, X[:1])[0]


def test_pruned_multihead_attention_matches_the_torch_module_with_masks_and_weights():
    from lth.pruning.mha import PrunedMultiheadAttention
    torch.manual_seed(0)
    for batch_first in (False, True):
        mha = nn.MultiheadAttention(16, 4, batch_first=batch_first).eval()
        ours = PrunedMultiheadAttention(mha, [0, 1, 2, 3]).eval()
        q = torch.randn(5, 3, 16) if not batch_first else torch.randn(3, 5, 16)
        pad = torch.zeros(3, 5, dtype=torch.bool)
        pad[0, -2:] = True
        causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
        with torch.no_grad():
            a, wa = mha(q, q, q, key_padding_mask=pad, attn_mask=causal)
            b, wb = ours(q, q, q, key_padding_mask=pad, attn_mask=causal)
        assert torch.allclose(a, b, atol=1e-5) and torch.allclose(wa, wb, atol=1e-6)


class UnknownAttention(nn.Module):
    """Heads split by a private attribute: no layout lth knows."""
    def __init__(self, width=16, sdpa=False):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(width, width) for _ in range(4))
        self.h, self.sdpa = 4, sdpa

    def forward(self, x):
        b, n, w = x.shape
        q, k, v = (f(x).view(b, n, self.h, -1).transpose(1, 2) for f in (self.q, self.k, self.v))
        out = (nn.functional.scaled_dot_product_attention(q, k, v) if self.sdpa
               else (q @ k.transpose(-1, -2)).softmax(-1) @ v)
        return self.o(out.transpose(1, 2).reshape(b, n, w))


def unknown_attention_net(num_classes=10, in_channels=3, image_size=32, sdpa=False):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Conv2d(in_channels, 16, 8, stride=8)
            self.attn = UnknownAttention(sdpa=sdpa)
            self.fc = nn.Linear(16, num_classes)

        def forward(self, x):
            return self.fc(self.attn(self.embed(x).flatten(2).transpose(1, 2)).mean(1))
    return Net()


@pytest.mark.parametrize("sdpa", [False, True])
def test_an_unrecognised_attention_is_refused_in_one_line(sdpa):
    with pytest.raises(LthError, match="layer attn.[qkv] feeds an attention whose layout lth does not recognise"):
        ChannelGroups(unknown_attention_net(sdpa=sdpa).eval(), X[:1], 10)
    odd = nn.Sequential()
    odd.add_module("att", nn.MultiheadAttention(16, 4, kdim=8, vdim=8))   # heads kept, removal refused
    assert "separate key/value widths" in attention_blocks(odd)["att"].dense
    with pytest.raises(LthError, match="cannot remove heads of att: it has separate key/value widths"):
        remove_heads(odd, None, attention_blocks(odd)["att"], [0])


def test_hugging_face_vit_heads_masked_equal_removed():
    torch.manual_seed(0)
    vit = models.build("hf:vit,hidden_size=32,num_hidden_layers=1,num_attention_heads=4,intermediate_size=64,"
                       "patch_size=8", 10, 3, 32).eval()
    name = "net.vit.layers.0.attention.q_proj"           # transformers 5: q_proj, k_proj, v_proj, o_proj
    groups, small, masked, removed = masked_and_removed(
        vit, lambda n, _: torch.tensor([2]) if n == name else torch.arange(3))
    assert groups.sizes[groups.names.index(name)] == 4
    assert torch.allclose(removed, masked, atol=1e-5)
    assert small.net.vit.layers[0].attention.num_attention_heads == 3


def test_swin_heads_with_a_relative_position_bias_stay_dense():
    import timm
    torch.manual_seed(0)
    swin = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=10, img_size=32,
                             embed_dim=24, depths=(1, 1), num_heads=(2, 4), window_size=4).eval()
    groups, small, masked, removed = masked_and_removed(swin, lambda name, size: torch.arange(3))
    assert groups.names == ["layers.0.blocks.0.mlp.fc1", "layers.1.blocks.0.mlp.fc1"]   # heads untouched
    assert torch.allclose(masked, removed, atol=1e-5)
    block = attention_blocks(swin)["layers.0.blocks.0.attn.qkv"]
    assert "relative_position_bias_table" in block.dense
    with pytest.raises(LthError, match="cannot remove heads .* relative_position_bias_table"):
        shrink(copy.deepcopy(swin), {"layers.0.blocks.0.attn.qkv": [0]}, X[:1])


def test_a_torch_transformer_encoder_keeps_its_outputs_when_heads_go():
    """nn.TransformerEncoderLayer's fused eval fast path must not take the narrower attention."""
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Conv2d(3, 16, 8, stride=8)
            layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            return self.fc(self.encoder(self.embed(x).flatten(2).transpose(1, 2)).mean(1))

    groups, small, masked, removed = masked_and_removed(
        Net().eval(), lambda name, size: torch.tensor([0, 3]) if name.endswith("self_attn") else torch.arange(4))
    assert sorted(n for n in groups.names if n.endswith("self_attn")) == [f"encoder.layers.{i}.self_attn" for i in (0, 1)]
    assert small.encoder.layers[1].self_attn.num_heads == 2
    assert torch.allclose(masked, removed, atol=1e-5)
