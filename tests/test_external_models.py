"""Models by spec (lth.models.external, issue 21): torchvision, timm, Hugging Face from a config,
MODULE:FACTORY; the hash covers the library version; bad specs are one line, exit 2, nothing written."""
import hashlib
import json

import pytest
import torch
from torch import nn

from lth import config, models
from lth.errors import LthError, cli_main
from lth.lottery import assemble
from lth.models import external
from lth import run

TINY_BERT = ("hf:bert,hidden_size=16,num_hidden_layers=1,num_attention_heads=2,intermediate_size=32,"
             "vocab_size=50,max_position_embeddings=16")
TINY_VIT = "timm:vit_tiny_patch16_224,depth=1,patch_size=8,embed_dim=16,num_heads=2"


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    """A user's package on the Python path with good and bad factories."""
    (tmp_path / "mynets.py").write_text(
        "import torch.nn as nn\n"
        "def make(num_classes, in_channels, image_size):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.Flatten(), nn.LazyLinear(num_classes))\n"
        "def broken(num_classes, in_channels, image_size):\n"
        "    raise ValueError('no such width')\n"
        "def not_a_module(num_classes, in_channels, image_size):\n"
        "    return 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path / "mynets.py"


def test_each_library_builds_a_classifier_without_weights():
    for spec, x in [("torchvision:resnet18", torch.zeros(2, 3, 32, 32)), (TINY_VIT, torch.zeros(2, 3, 32, 32)),
                    (TINY_BERT, torch.randint(1, 50, (2, 8)))]:
        net = models.build(spec, 5, 3, 32)
        assert net(x).shape == (2, 5), spec


def test_image_size_reaches_models_that_take_one():
    net = models.build("torchvision:vit_b_16", 3, 3, 32)   # 86 M parameters: built, never trained
    assert net.image_size == 32 and net(torch.zeros(1, 3, 32, 32)).shape == (1, 3)


def test_hf_config_file(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({"model_type": "bert", "hidden_size": 16, "num_hidden_layers": 1,
                                "num_attention_heads": 2, "intermediate_size": 32, "vocab_size": 40}))
    net = models.build(f"hf:{path}", 4, 3, 32)
    assert net.net.config.hidden_size == 16 and net(torch.randint(1, 40, (3, 6))).shape == (3, 4)
    assert external.identity(f"hf:{path}")["config_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_library_init_by_default_and_init_flag_overrides():
    import torchvision
    torch.manual_seed(0)
    ours = models.build("torchvision:resnet18", 10, 3, 32)
    torch.manual_seed(0)
    theirs = torchvision.models.resnet18(num_classes=10)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))
    torch.manual_seed(0)
    glorot = models.build("torchvision:resnet18", 10, 3, 32, init="glorot")
    assert not torch.equal(glorot.conv1.weight, ours.conv1.weight)


def test_same_seed_same_model_and_global_rng_untouched():
    cfg = config.from_overrides({"model": "torchvision:resnet18", "dataset": "digits", "image_size": 32,
                                 "augment": "none", "layers": "all"})
    from lth.data.datasets import load
    ds = load("digits")
    cfg.data.image_size = 32
    state = torch.random.get_rng_state()
    with pytest.raises(LthError, match="3-channel"):   # digits is grayscale: torchvision refuses with one line
        assemble.build_model(cfg, ds, 0, "cpu")
    assert torch.equal(state, torch.random.get_rng_state())
    cfg = config.from_overrides({"model": TINY_VIT, "dataset": "digits", "image_size": 32, "layers": "all"})
    a, b = (assemble.build_model(cfg, ds, 0, "cpu").state_dict() for _ in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_factory(factory_module):
    net = models.build("mynets:make", 3, 1, 8)
    assert isinstance(net, nn.Module) and net(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    prov = external.provenance("mynets:make")
    assert prov["source_file"] == str(factory_module.resolve())
    assert prov["source_sha256"] == hashlib.sha256(factory_module.read_bytes()).hexdigest()


@pytest.mark.parametrize("spec, message", [
    ("keras:resnet", "not a library prefix"),
    ("torchvision:resnet_999", "unknown torchvision model"),
    ("timm:no_such_net", "unknown timm model"),
    ("hf:no_such_type", "unknown Hugging Face model type"),
    ("hf:bert,hidden_size", "not KEY=VALUE"),
    ("hf:/nonexistent/config.json", "cannot read"),
    ("torchvision:", "names no model"),
    ("my-pkg:make", "unknown model spec"),
    ("mynets:missing", "has no function"),
    ("mynets:broken", "could not be built.*no such width"),
    ("mynets:not_a_module", "returned int, not a torch.nn.Module"),
    ("torchvision:resnet18,no_such_kw=3", "could not be built"),
])
def test_bad_specs_are_one_line_errors(factory_module, spec, message):
    with pytest.raises(LthError, match=message):
        models.build(spec, 3, 3, 32)


def test_bad_spec_on_the_cli_exits_2_and_writes_nothing(tmp_path, capsys, factory_module):
    for spec in ("keras:resnet", "mynets:broken", "mynets:not_a_module"):
        code = cli_main(run.main, ["--preset", "quick", "--model", spec, "--image-size", "8",
                                   "--runs-root", str(tmp_path / "runs"), "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()


def test_hash_covers_spec_and_library_version(monkeypatch):
    import timm
    base = {"dataset": "digits", "image_size": 32, "layers": "all"}
    cfg = config.from_overrides({**base, "model": TINY_VIT})
    assert cfg.experiment_dict()["model"]["identity"] == {"library": f"timm {timm.__version__}"}
    h = cfg.hash()
    monkeypatch.setattr(timm, "__version__", "0.0.1")
    assert cfg.hash() != h                                                     # another timm, another run
    assert config.from_overrides({**base, "model": "resnet18"}).experiment_dict()["model"].keys() == {"model", "init"}
    from lth.runs.store import run_name
    name = run_name(cfg)
    assert name.startswith("digits-timm_vit_tiny_patch16_224,depth=1,") and ":" not in name and "/" not in name


def test_config_json_records_the_factory_source(tmp_path, factory_module):
    from lth import execute
    (factory_module.parent / "mlp.py").write_text(
        "import torch.nn as nn\n"
        "def make(num_classes, in_channels, image_size):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, 16), nn.ReLU(),\n"
        "                         nn.Linear(16, num_classes))\n")
    cfg = config.from_overrides({"model": "mlp:make", "steps": 2, "rounds": 1, "eval_every": 0}, preset="quick")
    result = execute(cfg, runs_root=str(tmp_path), device="cpu")
    meta = json.loads((result.run_dir / "config.json").read_text())
    source = meta["model_source"]
    assert source["spec"] == "mlp:make" and source["library"] == "mlp unversioned"
    assert source["source_sha256"] == hashlib.sha256((factory_module.parent / "mlp.py").read_bytes()).hexdigest()
    assert result.run_dir.name.startswith("digits-mlp_make-ocp-")
    assert result.summaries[0]["layers"][-1]["name"] == "3.weight"      # the output layer, pruned at half rate
