"""Text classification through Hugging Face `datasets` and a tokenizer (pip install 'lth[text]').

    python -m lth.run --preset bert --dataset glue:sst2                  # the model's own tokenizer
    python -m lth.run --dataset glue:mnli --data-dir /data ...            # /data/glue/mnli: a local copy, if there
    python -m lth.run --dataset hf-text:stanfordnlp/imdb --text-columns text --test-split test ...
    python -m lth.run --dataset hf-text:/data/reviews --tokenizer /models/bert/vocab.txt ...

    dataset = text.load(cfg.data)        # what lth.data.sources.load_config calls for these names

Names (`check`):
  glue:TASK          a GLUE task (GLUE below: its text columns, its evaluation split). Read from
                     DATA_DIR/glue/TASK when that holds a copy (a save_to_disk folder, or
                     train/validation csv, json, jsonl or parquet files), else from the Hub
                     (nyu-mll/glue, network). stsb is regression and ax has no labels: refused.
  hf-text:SOURCE     a local folder as above, or a Hub dataset id (network); hf-text:ID:CONFIG
                     picks a configuration. Its text columns: --text-columns, else `sentence` or `text`.

GLUE's test labels are hidden (-1), so the validation split is the test split (MNLI:
validation_matched); --train-split / --test-split pick others. Labels are integers (a ClassLabel
names the classes); a float label column is regression, refused.

Tokenised once, by the tokenizer of --tokenizer (lth.data.tokenizer: a save_pretrained folder, a BERT
WordPiece vocab.txt, or a Hub name; lth.config fills in an hf:DIR or Hub model's own), pairs as
[CLS] a [SEP] b [SEP], truncated to --max-length; then held as lth's text path holds token ids:
int64 (N, L), padded with id 0 to the longest sequence in the split (lth.models.external's
HFClassifier masks id 0 out), so the tokenizer must pad with id 0 (BERT's do; RoBERTa's, 1, are
refused). A pair's second segment gets token type 1 in the model (lth.models.external's
HFClassifier finds it after the first [SEP]) when the tokenizer uses token types.
The tensors are cached in LTH_TEXT_CACHE (default ~/.cache/lth/text), keyed by the data's
fingerprints, the tokenizer's content hash, the columns and the length: a second run, a ticket
copy, a study cell read them back. The run hash covers the name, the tokenizer's content hash
(`identity`), the length, the columns and the splits.
"""
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import List, Optional, Tuple

import torch

from lth.data.datasets import Dataset
from lth.data.tokenizer import tokenizer, tokenizer_sha256
from lth.errors import LthError

log = logging.getLogger(__name__)

PREFIXES = ("glue", "hf-text")
# GLUE task -> (text columns, evaluation split): the validation split, since test labels are hidden
GLUE = {"cola": (("sentence",), "validation"), "sst2": (("sentence",), "validation"),
        "mrpc": (("sentence1", "sentence2"), "validation"), "qqp": (("question1", "question2"), "validation"),
        "mnli": (("premise", "hypothesis"), "validation_matched"), "qnli": (("question", "sentence"), "validation"),
        "rte": (("sentence1", "sentence2"), "validation"), "wnli": (("sentence1", "sentence2"), "validation")}
REFUSED = {"stsb": "a regression task (similarity scores), which lth's classifiers cannot train",
           "ax": "a diagnostic set with no training split and hidden labels"}
GLUE_HUB = "nyu-mll/glue"          # the Hub dataset glue:TASK falls back to
DEFAULT_COLUMNS = ("sentence", "text")   # hf-text's text column when --text-columns is unset
FILE_TYPES = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
ENCODE_BATCH = 1000                 # sentences tokenised per call (the fast tokenizer batches them in Rust)
CACHE_FORMAT = 1                    # bump when the cached tensors change meaning


def is_text(name: str) -> bool:
    return name.partition(":")[0] in PREFIXES


def _import():
    try:
        import datasets
    except ImportError:
        raise LthError("text datasets (glue:TASK, hf-text:SOURCE) need Hugging Face datasets: "
                       "pip install 'lth[text]'") from None
    return datasets


def check(name: str) -> None:
    """A one-line error for a name that can never load: an unknown or refused GLUE task, a
    missing `datasets`, a local folder that holds no dataset (a Hub id is checked when it loads)."""
    prefix, _, rest = name.partition(":")
    if not rest:
        raise LthError(f"--dataset {prefix}: names no {'task' if prefix == 'glue' else 'dataset'} after '{prefix}:'")
    if prefix == "glue" and rest in REFUSED:
        raise LthError(f"--dataset {name}: {rest} is {REFUSED[rest]}")
    if prefix == "glue" and rest not in GLUE:
        raise LthError(f"unknown GLUE task {rest!r}; choose one of {', '.join(sorted(GLUE))}")
    _import()
    if prefix == "hf-text":
        source, _ = _source(rest)
        path = Path(source).expanduser()
        if path.exists():
            _local_files(path, name)
        elif source.startswith(("/", ".", "~")):
            raise LthError(f"--dataset {name}: {path} not found")


def _source(rest: str) -> Tuple[str, Optional[str]]:
    """hf-text's SOURCE and CONFIG (ID:CONFIG; a local path is taken whole when it exists)."""
    if Path(rest).expanduser().exists() or ":" not in rest:
        return rest, None
    source, _, config = rest.rpartition(":")
    return source, config


def _local_files(path: Path, name: str) -> dict:
    """{split: file} of a folder of split files, or {} for a save_to_disk DatasetDict folder."""
    if path.is_dir() and (path / "dataset_dict.json").is_file():
        return {}
    if path.is_dir() and (path / "state.json").is_file():
        raise LthError(f"--dataset {name}: {path} holds one split (a Dataset); save a DatasetDict with "
                       f"train and validation splits")
    files = ({p.stem: p for p in sorted(path.iterdir()) if p.suffix in FILE_TYPES and p.is_file()}
             if path.is_dir() else {})
    if not files:
        raise LthError(f"--dataset {name}: {path} is not a dataset: give a folder written by "
                       f"DatasetDict.save_to_disk, or one holding train and validation files "
                       f"({', '.join(FILE_TYPES)})")
    return files


# ---- the raw splits ---------------------------------------------------------------------------

def _raw(name: str, data_dir: str):
    """The DatasetDict of `name` (nothing tokenised); each split's _fingerprint names its content."""
    prefix, _, rest = name.partition(":")
    if prefix == "glue":
        local = Path(data_dir).expanduser() / "glue" / rest
        return _local(local, name) if local.exists() else _hub(GLUE_HUB, rest, name)
    source, config = _source(rest)
    path = Path(source).expanduser()
    if path.exists():
        return _local(path, name)
    return _hub(source, config, name)


def _local(path: Path, name: str):
    datasets = _import()
    files = _local_files(path, name)
    if not files:
        try:
            return datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as e:
            raise LthError(f"--dataset {name}: {path} does not load: {str(e).splitlines()[0][:160]}") from None
    import pandas as pd
    splits = {}
    for split, file in files.items():
        try:
            if file.suffix == ".csv":
                frame = pd.read_csv(file)
            elif file.suffix == ".parquet":
                frame = pd.read_parquet(file)
            else:   # a JSON list of records, or JSON lines
                frame = pd.read_json(file, lines=not file.read_text().lstrip().startswith("["))
        except Exception as e:   # pandas raises many types for a malformed file
            raise LthError(f"--dataset {name}: {file} does not read: {type(e).__name__}: "
                           f"{str(e).splitlines()[0][:120] if str(e) else ''}") from None
        splits[split] = datasets.Dataset.from_pandas(frame, preserve_index=False)
        # from_pandas draws a random fingerprint: the file's content stands in (the cache key)
        splits[split]._fingerprint = hashlib.sha256(file.read_bytes()).hexdigest()[:16]
    return datasets.DatasetDict(splits)


def _hub(source: str, config: Optional[str], name: str):
    datasets = _import()
    try:
        return datasets.load_dataset(source, config)
    except Exception as e:   # network, unknown id, unknown config: many types
        raise LthError(f"--dataset {name}: cannot load {source}{' (' + config + ')' if config else ''} from the "
                       f"Hugging Face Hub: {type(e).__name__}: {str(e).strip().splitlines()[0][:160] if str(e).strip() else ''}") from None


def splits_and_columns(d, raw) -> Tuple[str, str, Tuple[str, ...]]:
    """(train split, test split, text columns) of the DataConfig `d` over the raw DatasetDict."""
    prefix, _, rest = d.dataset.partition(":")
    test = d.test_split or (GLUE[rest][1] if prefix == "glue" else
                            next((s for s in ("validation", "test") if s in raw), "validation"))
    for split, flag in ((d.train_split, "--train-split"), (test, "--test-split")):
        if split not in raw:
            raise LthError(f"--dataset {d.dataset} has no split {split!r} ({flag}); splits: {', '.join(raw)}")
    columns = raw[d.train_split].column_names
    text = tuple(d.text_columns) or (GLUE[rest][0] if prefix == "glue" else
                                     next(((c,) for c in DEFAULT_COLUMNS if c in columns), ()))
    if not text:
        raise LthError(f"--dataset {d.dataset}: no column 'sentence' or 'text'; name the text with --text-columns "
                       f"(columns: {', '.join(columns)})")
    if len(text) > 2:
        raise LthError(f"--text-columns takes one column, or two for sentence pairs, got {len(text)}")
    for split in (d.train_split, test):
        for c in (*text, d.label_column):
            if c not in raw[split].column_names:
                raise LthError(f"--dataset {d.dataset}: split {split} has no column {c!r} "
                               f"(columns: {', '.join(raw[split].column_names)})")
    if prefix == "glue" and not d.test_split:
        log.info("%s: GLUE's test labels are hidden; the %s split is the test split", d.dataset, test)
    return d.train_split, test, text


def _labels(d, raw, split: str) -> Tuple[torch.Tensor, Optional[int]]:
    """int64 labels of a split, and the class count its ClassLabel names (None: not named)."""
    feature = raw[split].features[d.label_column]
    dtype = getattr(feature, "dtype", "")
    if str(dtype).startswith("float"):
        raise LthError(f"--dataset {d.dataset}: label column {d.label_column!r} holds {dtype} values: "
                       f"a regression task, which lth's classifiers cannot train")
    try:
        y = torch.as_tensor([int(v) for v in raw[split][d.label_column]], dtype=torch.int64)
    except (TypeError, ValueError):
        raise LthError(f"--dataset {d.dataset}: label column {d.label_column!r} of split {split} must hold "
                       f"integers") from None
    if len(y) and int(y.min()) < 0:
        raise LthError(f"--dataset {d.dataset}: split {split} has hidden labels ({int(y.min())}); evaluate on a "
                       f"split with labels (--test-split validation)")
    named = getattr(feature, "num_classes", None)
    return y, named


def facts(d) -> Tuple[int, int, int, int, int]:
    """(train, test, classes, 1, max length) of the raw splits, nothing tokenised (--dry-run).
    GLUE without a local copy is not fetched: the estimate takes its official sizes instead."""
    prefix, _, rest = d.dataset.partition(":")
    if prefix == "glue" and not (Path(d.data_dir).expanduser() / "glue" / rest).exists():
        raise LthError(f"{d.dataset}: no local copy under {d.data_dir}/glue")
    raw = _raw(d.dataset, d.data_dir)
    train, test, _ = splits_and_columns(d, raw)
    named = getattr(raw[train].features[d.label_column], "num_classes", None)
    classes = named or int(max(raw[train][d.label_column])) + 1
    return raw[train].num_rows, raw[test].num_rows, classes, 1, d.max_length


def identity(d) -> dict:
    """What the run hash covers beside the DataConfig's fields: the tokenizer's content."""
    return {"tokenizer_sha256": tokenizer_sha256(d.tokenizer)}


# ---- tokenised, cached ------------------------------------------------------------------------------

def cache_dir() -> Path:
    return Path(os.environ.get("LTH_TEXT_CACHE", "~/.cache/lth/text")).expanduser()


def load(d) -> Dataset:
    """The DataConfig `d`'s text dataset: token ids (N, L) padded with 0, int64 labels."""
    raw = _raw(d.dataset, d.data_dir)
    train, test, text = splits_and_columns(d, raw)
    (train_y, named), (test_y, _) = _labels(d, raw, train), _labels(d, raw, test)
    num_classes = named or int(max(train_y.max(), test_y.max())) + 1
    key = hashlib.sha256(json.dumps([CACHE_FORMAT, raw[train]._fingerprint, raw[test]._fingerprint,
                                     tokenizer_sha256(d.tokenizer), d.max_length, text]).encode()).hexdigest()[:24]
    path = cache_dir() / f"{key}.pt"
    if path.is_file():
        log.info("%s: token ids read from %s", d.dataset, path)
        cached = torch.load(path, weights_only=True)
        xs = cached["train_x"], cached["test_x"]
    else:
        tok = tokenizer(d.tokenizer)
        xs = _encode(tok, raw[train], text, d.max_length, d.dataset), _encode(tok, raw[test], text, d.max_length, d.dataset)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"train_x": xs[0], "test_x": xs[1]}, partial)
        os.replace(partial, path)   # a reader sees the whole file or none
        log.info("%s: tokenised %d + %d sequences (longest %d tokens), cached in %s", d.dataset, len(xs[0]),
                 len(xs[1]), max(xs[0].shape[1], xs[1].shape[1]), path)
    return Dataset(d.dataset, xs[0], train_y, xs[1], test_y, num_classes)


def _encode(tok, split, columns: Tuple[str, ...], max_length: int, name: str) -> torch.Tensor:
    first = split[columns[0]]
    second = split[columns[1]] if len(columns) > 1 else None
    ids: List[List[int]] = []
    for i in range(0, len(first), ENCODE_BATCH):
        try:
            enc = tok(first[i:i + ENCODE_BATCH], second[i:i + ENCODE_BATCH] if second is not None else None,
                      truncation=True, max_length=max_length)
        except (TypeError, ValueError):
            raise LthError(f"--dataset {name}: text columns {', '.join(columns)} must hold strings "
                           f"(an empty or non-text value near row {i})") from None
        ids += enc["input_ids"]
    out = torch.zeros(len(ids), max(1, max((len(s) for s in ids), default=1)), dtype=torch.int64)   # 0: padding
    for i, s in enumerate(ids):
        out[i, :len(s)] = torch.as_tensor(s, dtype=torch.int64)
    return out
