"""Model registry: every model builds, runs forward and backward, has the right head, and starts
from its reference implementation's initialisation."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lth import models
from lth.errors import LthError
from lth.pruning.masks import Masks
from lth.models import init as init_schemes
from lth.models import reference
from lth.pruning import prune

PAPER_MODELS = {"conv2", "conv4", "conv6", "lenet300_100", "resnet18", "resnet20", "vgg16"}
SMALL_INPUT_MODELS = ("lenet300_100", "conv2", "conv4", "conv6")

# (name, num_classes, in_channels, image_size, batch)
COMBOS = (
    [(name, 10, 3, 32, 2) for name in sorted(PAPER_MODELS)]                    # CIFAR-10
    + [(name, 10, 1, 28, 2) for name in SMALL_INPUT_MODELS]                    # MNIST
    + [(name, 10, 1, 8, 2) for name in SMALL_INPUT_MODELS]                     # digits
    + [("resnet20", 100, 3, 32, 2), ("vgg16", 100, 3, 32, 2),                  # CIFAR-100
       ("resnet18", 10, 1, 28, 2), ("resnet20", 10, 1, 28, 2), ("resnet18", 10, 1, 8, 2),
       ("resnet18", 101, 3, 224, 1)]                                           # Caltech-101, ImageNet stem
)


def _forward_backward(net: nn.Module, num_classes: int, in_channels: int, image_size: int, batch: int):
    net.train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, in_channels, image_size, image_size, generator=g)
    y = torch.randint(0, num_classes, (batch,), generator=g)
    out = net(x)
    assert out.shape == (batch, num_classes)
    assert out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())
    F.cross_entropy(out, y).backward()
    return out


def test_registry_holds_the_paper_models():
    names = models.names()
    assert PAPER_MODELS <= set(names)
    assert names == sorted(names)


def test_every_registered_model_is_covered_here():
    # a new model gets a build test by being added to COMBOS
    assert set(models.names()) <= {c[0] for c in COMBOS}


@pytest.mark.parametrize("name,num_classes,in_channels,image_size,batch", COMBOS,
                         ids=[f"{c[0]}-{c[1]}c-{c[2]}ch-{c[3]}px" for c in COMBOS])
def test_builds_forward_backward(name, num_classes, in_channels, image_size, batch):
    torch.manual_seed(0)
    net = models.build(name, num_classes=num_classes, in_channels=in_channels, image_size=image_size)
    assert isinstance(net, nn.Module)
    _forward_backward(net, num_classes, in_channels, image_size, batch)
    params = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    assert params
    for n, p in params:
        assert p.grad is not None, f"{n} got no gradient"
        assert bool(torch.isfinite(p.grad).all()), f"{n} has a non-finite gradient"
    assert any(bool((p.grad != 0).any()) for _, p in params)
    # the first layer's weights see the input: their gradient is not all zero
    first = next(p for n, p in params if n.endswith("weight") and p.dim() > 1)
    assert bool((first.grad != 0).any())
    # and lth can prune it
    masks = Masks.for_model(net)
    assert masks.numel() > 0
    prune(masks, 0.5)
    masks.enforce()
    _forward_backward(net, num_classes, in_channels, image_size, batch)


@pytest.mark.parametrize("name", sorted(PAPER_MODELS))
def test_build_is_seeded(name):
    size, channels = (8, 1) if name in SMALL_INPUT_MODELS else (32, 3)
    torch.manual_seed(123)
    a = models.build(name, 10, channels, size)
    torch.manual_seed(123)
    b = models.build(name, 10, channels, size)
    torch.manual_seed(124)
    c = models.build(name, 10, channels, size)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_resnet18_stem_depends_on_image_size():
    imagenet = models.build("resnet18", 101, 3, 224)
    conv = imagenet.stem[0]
    assert isinstance(conv, nn.Conv2d)
    assert conv.kernel_size == (7, 7) and conv.stride == (2, 2)
    assert any(isinstance(m, nn.MaxPool2d) for m in imagenet.stem)
    assert imagenet.fc.out_features == 101

    cifar = models.build("resnet18", 10, 3, 32)
    conv = cifar.stem[0]
    assert conv.kernel_size == (3, 3) and conv.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in cifar.stem)
    # same body either way: only the stem's first conv differs in size
    assert sum(p.numel() for p in imagenet.layers.parameters()) == sum(p.numel() for p in cifar.layers.parameters())


def test_resnet18_224_forward_is_downsampled_by_the_stem():
    net = models.build("resnet18", 10, 3, 224).eval()
    with torch.no_grad():
        stem_out = net.stem(torch.zeros(1, 3, 224, 224))
    assert stem_out.shape == (1, 64, 56, 56)  # 7x7 stride 2, then 3x3 max-pool stride 2


def test_resnet20_is_the_cifar_resnet():
    net = models.build("resnet20", 10, 3, 32)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 19  # 1 stem + 9 blocks x 2, plus the fc: 20 layers
    assert net.fc.in_features == 64
    assert 0.26e6 < sum(p.numel() for p in net.parameters()) < 0.28e6


def test_classic_lottery_ticket_shapes():
    lenet = models.build("lenet300_100", 10, 1, 28)
    linears = [m for m in lenet.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 300), (300, 100), (100, 10)]
    for name, convs in (("conv2", 2), ("conv4", 4), ("conv6", 6)):
        net = models.build(name, 10, 3, 32)
        assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == convs
        assert [m.out_features for m in net.modules() if isinstance(m, nn.Linear)] == [256, 256, 10]


def test_vgg16_has_13_convs_and_a_pooled_head():
    net = models.build("vgg16", 100, 3, 32)
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == 13
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 13
    assert net.fc.in_features == 512 and net.fc.out_features == 100


@pytest.mark.slow
def test_vgg16_at_224():
    net = models.build("vgg16", 101, 3, 224)
    _forward_backward(net, 101, 3, 224, 1)


def test_unknown_model_raises_with_choices():
    with pytest.raises(LthError) as info:
        models.build("resnet9000", 10, 3, 32)
    message = str(info.value)
    assert "resnet9000" in message
    for name in models.names():
        assert name in message


def test_image_too_small_for_conv_net_raises_lth_error():
    with pytest.raises(LthError, match="conv6.*8 px"):
        models.build("conv6", 10, 1, 7)
    models.build("conv6", 10, 1, 8)  # the smallest that fits


def test_register_twice_is_an_error():
    with pytest.raises(LthError, match="model 'lenet300_100' is registered twice"):
        models.register("lenet300_100", init="pytorch")(lambda c, i, s: nn.Identity())
    assert "lenet300_100" in models.MODELS
    assert not isinstance(models.build("lenet300_100", 10, 1, 8), nn.Identity)


# ---- initialisation: each model as its reference implementation ----------------------------

def _close(value: float, target: float, numel: int, sigmas: float = 5.0) -> bool:
    """Within `sigmas` standard errors of a sample std (about target / sqrt(2n)), and 5 % at most."""
    return abs(value - target) <= max(0.05, min(sigmas / math.sqrt(2 * numel), 1.0)) * target


def test_reference_schemes_are_registered():
    reference = {name: models.reference_init(name) for name in models.names()}
    assert reference == {"resnet18": "torchvision_resnet", "vgg16": "torchvision_vgg",
                         "resnet20": "openlth", "lenet300_100": "openlth", "conv2": "openlth",
                         "conv4": "openlth", "conv6": "openlth"}
    assert set(reference.values()) <= set(init_schemes.INITS)


def test_resnet18_w0_is_torchvision_resnet18_bit_for_bit():
    # same seed, same layer order, same draws: at 224 px lth's ResNet-18 is torchvision's exactly
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(5)
    ours = models.build("resnet18", 10, 3, 224)
    torch.manual_seed(5)
    theirs = torchvision.models.resnet18(num_classes=10)
    a, b = list(ours.state_dict().values()), list(theirs.state_dict().values())
    assert len(a) == len(b) == 122
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_resnet18_per_layer_statistics_match_torchvision():
    pytest.importorskip("torchvision")
    rows = reference.compare("resnet18", seed=1)
    assert len(rows) == 62   # 20 convs, 20 BatchNorms (weight, bias), fc (weight, bias)
    for r in rows:
        assert r["reference_std"] == pytest.approx(r["std"], rel=1e-6), r["layer"]
        assert r["reference_mean"] == pytest.approx(r["mean"], rel=1e-6, abs=1e-9), r["layer"]
        if r["expected_std"] == 0.0:
            assert r["std"] == 0.0 and r["mean"] == r["expected_mean"], r["layer"]
        else:
            assert _close(r["std"], r["expected_std"], r["numel"]), r
    first = next(r for r in rows if r["layer"] == "layers.0.conv1.weight")
    assert first["reference"] == "layer1.0.conv1.weight"
    assert first["std"] == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.02)   # 0.059 (PyTorch default: 0.024)


def test_resnet18_cifar_stem_is_kaiming_fan_out_too():
    torch.manual_seed(0)
    net = models.build("resnet18", 10, 3, 32)
    assert float(net.stem[0].weight.detach().std()) == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.05)
    assert float(net.layers[0].conv1.weight.detach().std()) == pytest.approx(0.0589, rel=0.05)
    torch.manual_seed(0)
    old = models.build("resnet18", 10, 3, 32, init="pytorch")
    assert float(old.layers[0].conv1.weight.detach().std()) == pytest.approx(1 / math.sqrt(3 * 576), rel=0.05)  # 0.024


def test_vgg16_per_layer_statistics_match_torchvision():
    pytest.importorskip("torchvision")
    rows = reference.compare("vgg16", seed=2)
    assert len(rows) == 13 * 3 + 2   # 13 convs (no bias: BatchNorm follows), 13 BatchNorms, fc
    assert rows[-2]["reference"] == "classifier.6.weight"
    for r in rows:
        assert r["reference_std"] is not None, r["layer"]
        if r["expected_std"] == 0.0:
            assert r["std"] == 0.0 and r["reference_std"] == 0.0, r["layer"]
            assert r["mean"] == r["reference_mean"] == r["expected_mean"], r["layer"]
        else:
            assert _close(r["std"], r["expected_std"], r["numel"]), r
            assert _close(r["reference_std"], r["expected_std"], r["numel"]), r
            assert _close(r["std"], r["reference_std"], r["numel"], sigmas=7.0), r
    assert rows[-2]["std"] == pytest.approx(0.01, rel=0.1)   # torchvision VGG linear: N(0, 0.01)


@pytest.mark.parametrize("name", ["resnet20", "lenet300_100", "conv2", "conv4", "conv6"])
def test_openlth_models_match_openlth_statistics(name):
    rows = reference.compare(name, seed=3)
    assert all(r["reference"] is None for r in rows)   # OpenLTH: checked against the analytic values
    for r in rows:
        if r["expected_std"] == 0.0:
            assert r["std"] == 0.0 and r["mean"] == r["expected_mean"], r["layer"]
        elif r["numel"] >= 64:
            assert _close(r["std"], r["expected_std"], r["numel"]), r
    weights = [r for r in rows if r["layer"].endswith("weight") and len(r["shape"]) > 1]
    for r in weights:   # kaiming normal, fan_in: sqrt(2 / fan_in)
        fan_in = math.prod(r["shape"][1:])
        assert r["expected_std"] == pytest.approx(math.sqrt(2 / fan_in))


def test_openlth_batchnorm_weights_are_uniform_01():
    torch.manual_seed(0)
    net = models.build("resnet20", 10, 3, 32)
    gammas = torch.cat([m.weight.detach() for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
    betas = torch.cat([m.bias.detach() for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
    assert gammas.numel() == 784   # 21 BatchNorms: 7 of 16, 7 of 32, 7 of 64 channels
    assert float(gammas.min()) >= 0.0 and float(gammas.max()) < 1.0
    assert float(gammas.mean()) == pytest.approx(0.5, abs=0.05)
    assert float(gammas.std()) == pytest.approx(1 / math.sqrt(12), rel=0.1)
    assert torch.equal(betas, torch.zeros_like(betas))


def test_other_schemes_can_be_chosen():
    torch.manual_seed(0)
    glorot = models.build("conv2", 10, 3, 32, init="glorot")
    w = glorot[0].weight.detach()
    assert float(w.std()) == pytest.approx(math.sqrt(2 / (27 + 576)), rel=0.1)
    assert torch.equal(glorot[0].bias, torch.zeros_like(glorot[0].bias))
    torch.manual_seed(0)
    default = models.build("lenet300_100", 10, 1, 28, init="pytorch")
    assert float(default[1].weight.detach().abs().max()) <= 1 / math.sqrt(784)   # PyTorch's uniform bound
    with pytest.raises(LthError, match="unknown initialisation 'xavier'.*openlth"):
        models.build("conv2", 10, 3, 32, init="xavier")


def test_reference_cli_prints_every_layer(capsys):
    assert reference.main(["resnet20", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "resnet20: init openlth, seed 1" in out
    assert out.count("\n") == 2 + len(reference.compare("resnet20", seed=1))
