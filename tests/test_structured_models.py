"""`python -m lth.structured` on external architectures (issue 21 follow-up): ResNeXt's grouped
convolutions, a Hugging Face BERT's heads, a torchvision ViT's nn.MultiheadAttention heads; each
run removes channels or heads, reports the smaller model and exports a file that reloads to it.
Data and the tiny ViT come from a MODULE:FUNCTION written to tmp_path (nothing downloaded)."""
import textwrap

import pytest
import torch

from lth.errors import cli_main
from lth.structured import cli, export
from lth.structured.store import StructuredStore

FACTORIES = textwrap.dedent('''
    import torch

    class Images(torch.utils.data.Dataset):
        """3-channel 32 px images whose class is the brightest colour channel."""
        classes = ["r", "g", "b"]
        def __init__(self, n, seed):
            g = torch.Generator().manual_seed(seed)
            self.y = torch.randint(0, 3, (n,), generator=g)
            self.x = torch.rand(n, 3, 32, 32, generator=g) * 0.5
            self.x[torch.arange(n), self.y] += 0.5
        def __len__(self): return len(self.y)
        def __getitem__(self, i): return self.x[i], int(self.y[i])

    class Text(torch.utils.data.Dataset):
        """Token sequences (ids 1..99) whose class is whether token 7 occurs."""
        def __init__(self, n, seed):
            g = torch.Generator().manual_seed(seed)
            self.x = torch.randint(1, 100, (n, 12), generator=g)
            self.y = (self.x == 7).any(1).long()
        def __len__(self): return len(self.y)
        def __getitem__(self, i): return self.x[i], int(self.y[i])

    def images(data_dir, image_size): return Images(96, 0), Images(32, 1)
    def text(data_dir, image_size): return Text(96, 0), Text(32, 1)

    def grouped_net(num_classes, in_channels, image_size):
        from torch import nn
        return nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                             nn.Conv2d(16, 32, 3, padding=1, groups=4), nn.BatchNorm2d(32), nn.ReLU(),
                             nn.Conv2d(32, 16, 1), nn.BatchNorm2d(16), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))

    def tiny_vit(num_classes, in_channels, image_size):
        from torchvision.models import VisionTransformer
        return VisionTransformer(image_size=image_size, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32,
                                 mlp_dim=64, num_classes=num_classes)
''')
BERT = ("hf:bert,hidden_size=32,num_hidden_layers=2,num_attention_heads=4,intermediate_size=64,vocab_size=100,"
        "max_position_embeddings=16")
FAST = ["--batch-size", "32", "--lr", "0.01", "--augment", "none", "--device", "cpu", "--no-progress",
        "--latency-batches", "1", "--latency-repeats", "1", "--method", "one_shot", "--flops-rr", "0.3"]


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "sp_factories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))


def structured(tmp_path, *argv) -> StructuredStore:
    assert cli_main(cli.main, [*FAST, "--runs-root", str(tmp_path / "runs"), *argv]) == 0
    (path,) = (tmp_path / "runs").iterdir()
    return StructuredStore(path)


def check_smaller(store: StructuredStore, x: torch.Tensor, target: float = 0.3):
    summary = store.summary()
    assert summary["flops"] < summary["dense_flops"] and summary["params"] < summary["dense_params"]
    assert abs(summary["flops_rr"] - target) < 0.05
    assert summary["export_max_abs_diff"] < 1e-4
    assert any(summary["kept"][n] < summary["sizes"][n] for n in summary["kept"])
    net = export.load(store.export_path)
    with torch.no_grad():
        assert net(x).shape[0] == len(x)
    return summary, net


def test_bert_heads_through_lth_structured(tmp_path, factories):
    # at 30 % the MLP channels alone reach the target; at 50 % heads go too (measured: 3 of 4 kept in each layer)
    store = structured(tmp_path, "--dataset", "sp_factories:text", "--model", BERT, "--epochs", "2", "--flops-rr", "0.5")
    summary, net = check_smaller(store, torch.randint(1, 100, (2, 12)), target=0.5)
    heads = {n: k for n, k in summary["kept"].items() if n.endswith("attention.self.query")}
    assert len(heads) == 2 and all(summary["sizes"][n] == 4 for n in heads) and min(heads.values()) < 4
    for i, layer in enumerate(net.net.bert.encoder.layer):
        att = layer.attention.self
        assert att.num_attention_heads == heads[f"net.bert.encoder.layer.{i}.attention.self.query"]
        assert att.query.out_features == att.num_attention_heads * 8


def test_torchvision_vit_heads_through_lth_structured(tmp_path, factories):
    store = structured(tmp_path, "--dataset", "sp_factories:images", "--model", "sp_factories:tiny_vit",
                       "--epochs", "2")
    summary, net = check_smaller(store, torch.randn(2, 3, 32, 32))
    assert summary["sizes"]["encoder.layers.encoder_layer_0.self_attention"] == 4
    assert min(k for n, k in summary["kept"].items() if n.endswith("self_attention")) < 4   # a head went
    for i, layer in enumerate(net.encoder.layers):
        assert layer.self_attention.num_heads == summary["kept"][f"encoder.layers.encoder_layer_{i}.self_attention"]


def test_a_grouped_conv_net_through_lth_structured(tmp_path, factories):
    store = structured(tmp_path, "--dataset", "sp_factories:images", "--model", "sp_factories:grouped_net",
                       "--epochs", "2")
    summary, net = check_smaller(store, torch.randn(2, 3, 32, 32))
    assert summary["sizes"] == {"0": 4, "3": 8, "6": 16}           # 16 and 32 channels in 4 conv groups
    assert net[3].groups == 4 and net[3].out_channels == 4 * summary["kept"]["3"]
    assert net[3].in_channels == 4 * summary["kept"]["0"]


@pytest.mark.slow
def test_resnext50_through_lth_structured(tmp_path, factories):
    store = structured(tmp_path, "--dataset", "sp_factories:images", "--model", "torchvision:resnext50_32x4d",
                       "--steps", "3", "--batch-size", "8")
    summary, net = check_smaller(store, torch.randn(2, 3, 32, 32))
    assert summary["sizes"]["layer1.0.conv1"] == 4            # 128 channels in 32 conv groups: 4 positions
    assert all(m.groups == 32 for n, m in net.named_modules() if n.endswith("conv2"))


def test_an_unrecognised_attention_is_one_line_exit_2(tmp_path, factories, capsys):
    (tmp_path / "sp_unknown.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn

        class Attention(nn.Module):
            def __init__(self, width=16):
                super().__init__()
                self.q, self.k, self.v, self.o = (nn.Linear(width, width) for _ in range(4))
            def forward(self, x):
                b, n, w = x.shape
                q, k, v = (f(x).view(b, n, 4, -1).transpose(1, 2) for f in (self.q, self.k, self.v))
                return self.o(((q @ k.transpose(-1, -2)).softmax(-1) @ v).transpose(1, 2).reshape(b, n, w))

        class Net(nn.Module):
            def __init__(self, num_classes):
                super().__init__()
                self.embed, self.attn, self.fc = nn.Conv2d(3, 16, 8, stride=8), Attention(), nn.Linear(16, num_classes)
            def forward(self, x):
                return self.fc(self.attn(self.embed(x).flatten(2).transpose(1, 2)).mean(1))

        def net(num_classes, in_channels, image_size): return Net(num_classes)
    '''))
    code = cli_main(cli.main, [*FAST, "--runs-root", str(tmp_path / "runs"), "--dataset", "sp_factories:images",
                               "--model", "sp_unknown:net", "--epochs", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "feeds an attention whose layout lth does not recognise" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
