"""Prunable layers of any model by module type, the output head found generically, --layers-list
(lth.pruning.layers, issue 21): torchvision ResNet-50 (built, not trained), a timm ViT, a tiny
Hugging Face BERT from a config."""
from collections import Counter

import pytest
import torch
from torch import nn

from lth import models
from lth.errors import LthError, cli_main
from lth.pruning import layers
from lth.pruning.masks import Masks, prunable_weights
from lth import run

TINY_BERT = ("hf:bert,hidden_size=16,num_hidden_layers=2,num_attention_heads=2,intermediate_size=32,"
             "vocab_size=50,max_position_embeddings=16")
TINY_VIT = "timm:vit_tiny_patch16_224,depth=2,patch_size=8,embed_dim=16,num_heads=2"


def kinds(model):
    return Counter(c.kind for c in layers.candidates(model))


def test_torchvision_resnet50():
    net = models.build("torchvision:resnet50", 1000, 3, 224)
    assert kinds(net) == {"conv": 53, "linear": 1}
    assert layers.check_output(net, 1000, "resnet50").name == "fc.weight"
    picked = list(prunable_weights(net, layers="all_but_output"))
    assert len(picked) == 53 and "fc.weight" not in picked
    assert list(prunable_weights(net, layers="all"))[-1] == "fc.weight"


def test_timm_vit_attention_projections_and_head():
    net = models.build(TINY_VIT, 7, 3, 32)
    assert kinds(net) == {"conv": 1, "attention": 4, "linear": 5}
    attention = list(prunable_weights(net, layers="attention"))
    assert attention == [f"blocks.{b}.attn.{p}.weight" for b in (0, 1) for p in ("qkv", "proj")]
    assert layers.check_output(net, 7, TINY_VIT).name == "head.weight"
    assert "patch_embed.proj.weight" not in prunable_weights(net, layers="linear")
    assert list(prunable_weights(net, layers="conv")) == ["patch_embed.proj.weight"]


def test_tiny_bert_embeddings_excluded_unless_asked():
    net = models.build(TINY_BERT, 2, 3, 32)
    assert kinds(net) == {"embedding": 3, "attention": 8, "linear": 6}   # FFN x 2 x 2, pooler, classifier
    default = prunable_weights(net, layers="all")
    assert not any("embeddings" in n for n in default)
    assert list(default)[-1] == "net.classifier.weight"
    assert "net.bert.encoder.layer.0.attention.self.query.weight" in prunable_weights(net, layers="attention")
    with_emb = prunable_weights(net, layers="all_with_embeddings")
    assert "net.bert.embeddings.word_embeddings.weight" in with_emb
    assert layers.check_output(net, 2, TINY_BERT).name == "net.classifier.weight"
    with pytest.raises(LthError, match="this model has attention, embedding, linear layers"):
        prunable_weights(net, layers="conv")   # the default --layers on a transformer: a one-line hint


def test_multihead_attention_in_proj_is_masked():
    net = nn.Sequential(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), nn.Flatten(), nn.Linear(8 * 4, 3))
    names = list(prunable_weights(net, layers="attention"))
    assert names == ["0.self_attn.in_proj_weight", "0.self_attn.out_proj.weight"]
    masks = Masks.for_model(net, layers="all")
    from lth.pruning import prune
    prune(masks, 0.5)
    masks.enforce()
    w = net[0].self_attn.in_proj_weight
    assert (w == 0).sum().item() == round(0.5 * w.numel())
    assert net(torch.randn(2, 4, 8)).shape == (2, 3)


def test_head_that_cannot_be_found_is_one_line():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 5), nn.Softmax(-1))
    assert layers.check_output(net, 5, "x").name == "2.weight"
    with pytest.raises(LthError, match="cannot find the output layer of model x: no classifier head with 3"):
        layers.check_output(net, 3, "x")
    with pytest.raises(LthError, match="no conv or linear layer"):
        layers.check_output(nn.Sequential(nn.Embedding(5, 3)), 3, "x")


def test_head_by_attribute_even_when_not_registered_last():
    class HeadFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.classifier = nn.Linear(6, 3)
            self.body = nn.Linear(4, 6)

        def forward(self, x):
            return self.classifier(self.body(x))
    net = HeadFirst()
    assert layers.output_layer(net).name == "classifier.weight"
    assert list(prunable_weights(net, layers="all")) == ["body.weight", "classifier.weight"]   # output last (@output)
    assert list(prunable_weights(net, layers="all_but_output")) == ["body.weight"]


def test_output_check_on_the_cli(tmp_path, capsys, monkeypatch):
    (tmp_path / "oddnets.py").write_text(
        "import torch.nn as nn\n"
        "def make(num_classes, in_channels, image_size):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, num_classes + 1),\n"
        "                         nn.Linear(num_classes + 1, num_classes + 1))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["--preset", "quick", "--model", "oddnets:make", "--runs-root", str(tmp_path / "runs"), "--no-progress"]
    assert cli_main(run.main, [*argv, "--layers", "all_but_output"]) == 2
    err = capsys.readouterr().err
    assert "cannot find the output layer of model oddnets:make" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_layers_list_prints_and_writes_nothing(tmp_path, capsys):
    code = run.main(["--preset", "quick", "--model", TINY_VIT, "--image-size", "32", "--layers", "linear",
                     "--exclude", "head.*", "--runs-root", str(tmp_path / "runs"), "--layers-list"])
    out = capsys.readouterr().out
    assert code == 0 and not (tmp_path / "runs").exists()
    rows = {line.split()[0]: line for line in out.splitlines()[1:-1]}
    assert rows["blocks.0.attn.qkv.weight"].split()[1] == "attention" and rows["blocks.0.attn.qkv.weight"].endswith("yes")
    assert not rows["patch_embed.proj.weight"].endswith("yes")           # a conv: not in --layers linear
    assert rows["head.weight"].split()[-1] == "yes" and rows["head.weight"].count("yes") == 1   # output, excluded
    assert "8 of 10 layers pruned by --layers linear" in out.splitlines()[-1]


def test_builtin_models_keep_their_layer_order():
    """The generic resolution picks exactly what the conv/linear scan picked before issue 21."""
    for name in models.names():
        net = models.build(name, 10, 3, 32)
        scan = [f"{n}.weight" for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert list(prunable_weights(net, layers="all")) == scan, name
        assert list(prunable_weights(net, layers="all_but_output")) == scan[:-1], name
