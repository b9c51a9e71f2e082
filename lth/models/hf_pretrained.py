"""Pre-trained Hugging Face classifiers: `hf:DIR` or `hf:HUB_NAME` starts from pre-trained weights.

    python -m lth.run --model hf:/models/bert-base-uncased --dataset glue:sst2 ...   # save_pretrained's dir
    python -m lth.run --model hf:bert-base-uncased --dataset glue:sst2 ...           # from the Hub (network)

    pretrained.kind("bert")                 # None: a model type, built at random init by lth.models.external
    pretrained.kind("/models/bert")          # "dir": config.json + weights on disk
    pretrained.kind("bert-base-uncased")     # "hub": a Hub model id (transformers downloads or reads its cache)

The encoder is loaded from the weights; the classification head, which the checkpoint lacks (or
has for another number of classes), is initialised by transformers from the global torch RNG,
which lth seeds with --init-seed. So W0 *is* the pre-trained network with a fresh head, and IMP's
`--restart rewind` (k = 0) rewinds every round to the pre-trained weights: Chen et al. 2020's
protocol for BERT tickets.

The run hash covers the weights: a dir's config.json and weight files by SHA-256 (`identity`),
a Hub model by its id and the commit transformers resolved (the snapshot it loaded).
A name that is a model type (`bert`, `gpt2`) stays a config at random init, as does a bare word
without a dash; give such a Hub model by its owner (`openai-community/gpt2`).
"""
import functools
import hashlib
import re
from pathlib import Path
from typing import Optional

from lth.errors import LthError

# Files save_pretrained writes for the weights (one file, or shards named by an index).
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")   # owner/name or a legacy bare name
HASH_CHUNK = 1 << 20     # bytes read at a time when hashing weight files


def kind(name: str) -> Optional[str]:
    """"dir" (a local save_pretrained dir), "hub" (a Hub model id), or None (a model type or a
    config file: random init, lth.models.external)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return "dir"
    if name.endswith(".json") or path.is_file() or _looks_like_path(name):
        return None
    try:
        from transformers import CONFIG_MAPPING
    except ImportError:   # lth.models.external names the extra to install
        return None
    if name in CONFIG_MAPPING:
        return None
    # a bare word that is no model type (hf:bret) is a misspelt type, not a Hub id: legacy bare
    # ids carry a dash (bert-base-uncased, roberta-base); others are owner/name
    return "hub" if HUB_ID.match(name) and ("/" in name or "-" in name) else None


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or name.count("/") > 1


def check(name: str) -> None:
    """One line for a dir that holds no model; a Hub id is checked when it loads (network)."""
    if kind(name) != "dir":
        if _looks_like_path(name) and not name.endswith(".json"):
            raise LthError(f"hf model dir {name} not found (hf:DIR takes a folder written by save_pretrained)")
        return
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise LthError(f"hf model dir {path} has no config.json: not a folder written by save_pretrained")
    if not weight_files(path):
        raise LthError(f"hf model dir {path} has config.json but no weights ({' or '.join(WEIGHT_FILES[:2])}); "
                       f"save the model with save_pretrained, or give hf:{path}/config.json to build it at random init")


def weight_files(path: Path):
    """The dir's weight files, shards included, in a fixed order."""
    found = sorted(p for p in path.iterdir() if p.is_file() and (p.name in WEIGHT_FILES or (
        p.suffix in (".safetensors", ".bin") and p.name.startswith(("model-", "pytorch_model-")))))
    return found


def load(name: str, overrides: dict, num_classes: int):
    """(net, config) of the pre-trained model with a new `num_classes` head; config overrides
    (dropout, ...) from the spec's ,key=value pairs."""
    import transformers
    check(name)
    source = str(Path(name).expanduser()) if kind(name) == "dir" else name
    try:
        config = transformers.AutoConfig.from_pretrained(source, num_labels=num_classes, **overrides)
    except OSError as e:
        raise LthError(f"cannot load Hugging Face model {name}: {str(e).strip().splitlines()[0][:200]}") from None
    auto = (transformers.AutoModelForImageClassification if is_image_config(config)
            else transformers.AutoModelForSequenceClassification)
    if not is_image_config(config) and getattr(config, "pad_token_id", None) != 0:
        raise LthError(f"hf:{name} pads with token id {config.pad_token_id}; lth's text datasets pad with id 0 "
                       f"(the attention mask drops it): use a model whose pad_token_id is 0 (BERT's)")
    logs = transformers.utils.logging
    verbosity, bars = logs.get_verbosity(), logs.is_progress_bar_enabled()
    logs.set_verbosity_error()      # the load report lists the new head's weights as missing: expected
    logs.disable_progress_bar()     # a bar per load, on every ticket copy
    try:
        net = auto.from_pretrained(source, config=config, ignore_mismatched_sizes=True)
    except OSError as e:
        raise LthError(f"cannot load Hugging Face model {name}: {str(e).strip().splitlines()[0][:200]}") from None
    finally:
        logs.set_verbosity(verbosity)
        if bars:
            logs.enable_progress_bar()
    return net, config


def is_image_config(config) -> bool:
    """Whether the config's classifier takes pixel_values (the rest take input_ids)."""
    from transformers import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING
    return type(config) in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING


def config_of(name: str, num_classes: int, local_only: bool = False):
    """The model's config alone (no weights): what --dry-run counts parameters from.
    local_only: a Hub model's config only from the local cache (no network)."""
    import transformers
    source = str(Path(name).expanduser()) if kind(name) == "dir" else name
    try:
        return transformers.AutoConfig.from_pretrained(source, num_labels=num_classes, local_files_only=local_only)
    except OSError as e:
        raise LthError(f"cannot load the config of Hugging Face model {name}: "
                       f"{str(e).strip().splitlines()[0][:160]}") from None


def identity(name: str) -> dict:
    """What the hash covers beside the spec: the weights' content (dir) or Hub commit."""
    if kind(name) == "dir":
        path = Path(name).expanduser().resolve()
        files = [path / "config.json", *weight_files(path)]
        return {"weights_sha256": _files_sha256(tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files))}
    from transformers.utils import cached_file
    try:
        resolved = Path(cached_file(name, "config.json"))
    except OSError as e:
        raise LthError(f"cannot resolve Hugging Face model {name}: {str(e).strip().splitlines()[0][:200]}") from None
    # the Hub cache keeps each download under snapshots/<commit>/: the revision this run loads
    revision = resolved.parent.name if resolved.parent.parent.name == "snapshots" else "local"
    return {"weights": name, "revision": revision}


@functools.lru_cache(maxsize=16)
def _files_sha256(files: tuple) -> str:
    """SHA-256 over the files' names and bytes (cached per path, mtime and size: a 440 MB
    BERT-base takes about a second to hash, and the hash is asked for several times a run)."""
    digest = hashlib.sha256()
    for path, _, _ in files:
        digest.update(Path(path).name.encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(HASH_CHUNK), b""):
                digest.update(chunk)
    return digest.hexdigest()
