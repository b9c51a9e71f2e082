"""Models from the ecosystem, named by a spec: no weights are ever downloaded.

    python -m lth.run --model torchvision:resnet50 ...
    python -m lth.run --model timm:vit_tiny_patch16_224 ...          # pip install lth[timm]
    python -m lth.run --model timm:vit_tiny_patch16_224,depth=2,patch_size=4 ...   # constructor keywords
    python -m lth.run --model hf:bert,hidden_size=64,num_hidden_layers=2,num_attention_heads=2 ...
    python -m lth.run --model hf:path/to/config.json ...              # pip install lth[hf]
    python -m lth.run --model hf:path/to/saved_model ...              # pre-trained (lth.models.hf_pretrained)
    python -m lth.run --model my_pkg.nets:make_net ...                # any (num_classes, in_channels, image_size) factory

    models.build("torchvision:resnet18", num_classes=10, in_channels=3, image_size=32)

Spec forms (`parse`):
  torchvision:NAME[,k=v...]   torchvision.models.get_model(NAME, weights=None, num_classes=...,
                     k=v...); image_size is passed where the model takes one (vit_b_16, swin)
  timm:NAME[,k=v...] timm.create_model(NAME, pretrained=False, num_classes, in_chans, img_size
                     where the model takes one, k=v...); values are JSON (2, 4.0, true) or text
  hf:TYPE[,k=v...]   a Hugging Face classifier built from a config, never from the Hub: TYPE is
  hf:FILE.json       a model type (bert, vit, ...) with config overrides, or a local config file;
                     image types become AutoModelForImageClassification, text types
                     AutoModelForSequenceClassification; wrapped so forward(x) returns logits
  hf:DIR, hf:HUB_ID  pre-trained weights (a save_pretrained folder, or a Hub model such as
                     bert-base-uncased, downloaded by transformers): lth.models.hf_pretrained
  MODULE:FACTORY     MODULE imported (must be on the Python path), FACTORY(num_classes,
                     in_channels, image_size) must return an nn.Module

Initialisation: these models keep their constructor's own ("library", lth.models.init) unless
--init names another scheme. The run hash covers the spec and `identity(spec)`: the library's
version (a factory's package version, an hf config file's content hash, pre-trained weights' content hash or
Hub commit), so a run made with another timm is another run; `source_file(spec)` names the file provenance hashes.
"""
import hashlib
import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from lth.errors import LthError
from lth.factories import import_callable

LIBRARIES = ("torchvision", "timm", "hf")
EXTRAS = {"timm": "timm", "hf": "hf"}        # library -> the setup.cfg extra that installs it
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# Hugging Face model types whose classifier takes pixel_values (the rest take input_ids).
HF_PAD_TOKEN = 0     # token id 0 is padding in lth's text datasets: the attention mask drops it


@dataclass(frozen=True)
class Spec:
    kind: str        # "torchvision", "timm", "hf" or "factory"
    name: str        # the library's model name; hf: type or file; factory: "module:function"
    options: Tuple[Tuple[str, str], ...] = ()   # ,key=value: constructor keywords (hf: config overrides)


def is_spec(model: str) -> bool:
    """Whether `model` names an external model (a prefix) rather than a built-in one."""
    return isinstance(model, str) and ":" in model


def parse(model: str) -> Spec:
    prefix, _, rest = model.partition(":")
    if not rest:
        raise LthError(f"model spec {model!r} names no model after {prefix + ':'!r}")
    if prefix in LIBRARIES:
        name, *pairs = rest.split(",")
        options = []
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq or not key:
                raise LthError(f"model spec {model!r}: config override {pair!r} is not KEY=VALUE")
            options.append((key.strip(), value.strip()))
        return Spec(prefix, name, tuple(options))
    if MODULE_NAME.match(prefix) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", rest):
        return Spec("factory", f"{prefix}:{rest}")
    raise LthError(f"unknown model spec {model!r}: use torchvision:NAME, timm:NAME, hf:TYPE or hf:CONFIG.json, "
                   f"or MODULE:FACTORY (a Python module path and a function name)")


def _import_library(name: str):
    try:
        return importlib.import_module("transformers" if name == "hf" else name)
    except ImportError:
        raise LthError(f"--model {name}:... needs the {name} library: pip install 'lth[{EXTRAS.get(name, name)}]'") from None


def _import_factory(spec: Spec):
    module_name = spec.name.split(":")[0]
    return import_callable(spec.name, "model factory", f"unknown model spec {spec.name!r}: {module_name!r} is not a "
                                                       f"library prefix ({', '.join(LIBRARIES)}) nor an importable module")


def check(model: str) -> None:
    """Refuse a spec that cannot resolve (unknown prefix, missing library, unknown name), with one
    line, without building the model."""
    spec = parse(model)
    if spec.kind == "torchvision":
        tv = _import_library("torchvision")
        if spec.name not in tv.models.list_models():
            raise LthError(f"unknown torchvision model {spec.name!r}; see torchvision.models.list_models()")
    elif spec.kind == "timm":
        timm = _import_library("timm")
        if not timm.is_model(spec.name):
            raise LthError(f"unknown timm model {spec.name!r}; see timm.list_models()")
    elif spec.kind == "hf":
        from lth.models import hf_pretrained
        _import_library("hf")
        hf_pretrained.check(spec.name)   # a dir without weights, a path that is not there
        if hf_pretrained.kind(spec.name) is None:
            _hf_config(spec, 2, 3, 32)
    else:
        _import_factory(spec)


def build(model: str, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """The model of `model`'s spec, with the constructor's own initialisation (global torch RNG)."""
    spec = parse(model)
    check(model)
    try:
        if spec.kind == "torchvision":
            net = _torchvision(spec.name, num_classes, in_channels, image_size, _keywords(spec))
        elif spec.kind == "timm":
            net = _timm(spec.name, num_classes, in_channels, image_size, _keywords(spec))
        elif spec.kind == "hf" and is_pretrained(model):
            from lth.models import hf_pretrained
            net, config = hf_pretrained.load(spec.name, _keywords(spec), num_classes)
            net = HFClassifier(config, net)
        elif spec.kind == "hf":
            net = HFClassifier(_hf_config(spec, num_classes, in_channels, image_size))
        else:
            _, factory = _import_factory(spec)
            net = factory(num_classes, in_channels, image_size)
    except LthError:
        raise
    except Exception as e:  # the library or the user's factory refused these arguments
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise LthError(f"model {model} could not be built for {num_classes} classes, {in_channels} channels, "
                       f"{image_size} px: {type(e).__name__}: {first}") from None
    if not isinstance(net, nn.Module):
        raise LthError(f"model factory {model} returned {type(net).__name__}, not a torch.nn.Module")
    return net


def _with_image_size(make, image_size_key: str, image_size: int, **kwargs):
    """make(**kwargs, image_size_key=image_size) where the model takes an image size, else without."""
    try:
        return make(**kwargs, **{image_size_key: image_size})
    except TypeError as e:
        if image_size_key not in str(e):
            raise
        return make(**kwargs)


def _keywords(spec: Spec) -> dict:
    return {k: _parse_value(v) for k, v in spec.options}


def _torchvision(name: str, num_classes: int, in_channels: int, image_size: int, keywords: dict) -> nn.Module:
    import torchvision
    if in_channels != 3:
        raise LthError(f"torchvision:{name} takes 3-channel images; this dataset has {in_channels} "
                       f"(use timm:{name}, which takes in_chans, or a MODULE:FACTORY)")
    if "image_size" in keywords:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **keywords)
    return _with_image_size(torchvision.models.get_model, "image_size", image_size, name=name, weights=None,
                            num_classes=num_classes, **keywords)


def _timm(name: str, num_classes: int, in_channels: int, image_size: int, keywords: dict) -> nn.Module:
    import timm
    if "img_size" in keywords:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **keywords)
    return _with_image_size(timm.create_model, "img_size", image_size, model_name=name, pretrained=False,
                            num_classes=num_classes, in_chans=in_channels, **keywords)


# ---- Hugging Face -------------------------------------------------------------------------

def _hf_config(spec: Spec, num_classes: int, in_channels: int, image_size: int):
    transformers = _import_library("hf")
    path = Path(spec.name).expanduser()
    if spec.name.endswith(".json") or path.is_file():
        try:
            values = json.loads(path.read_text())
        except OSError as e:
            raise LthError(f"hf config {path}: cannot read it ({e.strerror})") from None
        except json.JSONDecodeError as e:
            raise LthError(f"hf config {path} is not valid JSON: {e}") from None
        if not isinstance(values, dict) or "model_type" not in values:
            raise LthError(f"hf config {path} has no 'model_type' (a Hugging Face config.json has one)")
        model_type = values.pop("model_type")
    else:
        model_type, values = spec.name, {}
    values.update({k: _parse_value(v) for k, v in spec.options})
    try:
        config = transformers.AutoConfig.for_model(model_type, **values)
    except ValueError:
        raise LthError(f"unknown Hugging Face model type {model_type!r} (hf:TYPE takes a model type such as "
                       f"bert or vit; hf:FILE.json a local config; hf:DIR or hf:OWNER/NAME pre-trained weights)") from None
    config.num_labels = num_classes
    if _is_image_config(config):
        for key, value in (("image_size", image_size), ("num_channels", in_channels)):
            if hasattr(config, key):
                setattr(config, key, value)
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = HF_PAD_TOKEN
    return config


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _is_image_config(config) -> bool:
    from lth.models.hf_pretrained import is_image_config
    return is_image_config(config)


def is_pretrained(model: str) -> bool:
    """Whether an hf: spec names pre-trained weights (a save_pretrained dir or a Hub id)."""
    if not (is_spec(model) and model.startswith("hf:")):
        return False
    from lth.models import hf_pretrained
    return hf_pretrained.kind(parse(model).name) is not None


def hf_config(model: str, num_classes: int = 2):
    """The Hugging Face config an hf: spec builds (no weights loaded): what --dry-run counts."""
    spec = parse(model)
    if is_pretrained(model):
        from lth.models import hf_pretrained
        return hf_pretrained.config_of(spec.name, num_classes)
    return _hf_config(spec, num_classes, 3, 224)


class HFClassifier(nn.Module):
    """A Hugging Face classifier built from a config (or given, pre-trained: `net`); forward(x)
    returns the logits. Image models take float pixel batches; text models int64 token ids
    (HF_PAD_TOKEN masked out)."""

    def __init__(self, config, net: Optional[nn.Module] = None):
        super().__init__()
        import transformers
        self.is_image = _is_image_config(config)
        auto = (transformers.AutoModelForImageClassification if self.is_image
                else transformers.AutoModelForSequenceClassification)
        self.net = net if net is not None else auto.from_config(config)
        # The tokenizer's [SEP] id, set by lth.lottery.assemble for a text dataset: a sentence
        # pair's second segment then gets token type 1, as BERT was pre-trained (None: all type 0).
        self.sep_token_id: Optional[int] = None

    def token_types(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """0 up to and including the first [SEP], 1 after it ([CLS] a [SEP] b [SEP]), 0 on padding."""
        if self.sep_token_id is None or (getattr(self.net.config, "type_vocab_size", 0) or 0) < 2:
            return None
        sep = (x == self.sep_token_id).long()
        return ((sep.cumsum(1) - sep).clamp(max=1) * (x != HF_PAD_TOKEN)).long()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_image:
            return self.net(pixel_values=x).logits
        types = self.token_types(x)
        extra = {} if types is None else {"token_type_ids": types}
        return self.net(input_ids=x, attention_mask=(x != HF_PAD_TOKEN).long(), **extra).logits


# ---- what the hash and provenance record ------------------------------------------------------

def identity(model: str) -> Dict[str, str]:
    """What decides the built model beside the spec string: the library's version; a factory's
    package version; an hf config file's content hash; pre-trained weights (the hash covers these)."""
    spec = parse(model)
    if spec.kind in LIBRARIES:
        lib = _import_library(spec.kind)
        out = {"library": f"{'transformers' if spec.kind == 'hf' else spec.kind} {lib.__version__}"}
        if spec.kind == "hf" and Path(spec.name).expanduser().is_file():
            out["config_sha256"] = hashlib.sha256(Path(spec.name).expanduser().read_bytes()).hexdigest()
        if is_pretrained(model):   # the pre-trained weights: a dir's content hash, a Hub id and commit
            from lth.models import hf_pretrained
            out.update(hf_pretrained.identity(spec.name))
        return out
    module, _ = _import_factory(spec)
    top = importlib.import_module(module.__name__.split(".")[0])
    return {"library": f"{top.__name__} {getattr(top, '__version__', 'unversioned')}"}


def source_file(model: str) -> Optional[Path]:
    """The file the model's code comes from (a factory's module), for provenance; None otherwise."""
    spec = parse(model)
    if spec.kind != "factory":
        return None
    module, _ = _import_factory(spec)
    return Path(module.__file__).resolve() if getattr(module, "__file__", None) else None


def provenance(model: str) -> dict:
    """config.json's record of an external model: its identity and, for a factory, its source file and hash."""
    out = {"spec": model, **identity(model)}
    path = source_file(model)
    if path is not None:
        out["source_file"] = str(path)
        out["source_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out
