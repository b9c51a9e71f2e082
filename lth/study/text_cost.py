"""The training cost of a text model, for --dry-run and a study's estimate (lth.study.estimate).

    flops, how = text_cost.training_flops("hf:bert", num_classes=2, seq_len=128)   # per sequence

FLOP per sequence (Kaplan et al. 2020, 'Scaling Laws for Neural Language Models', table 1):
    forward per token  ~ 2 N + 2 n_layer n_ctx d_model
    training           ~ 3 x forward (the backward pass costs about twice the forward)
    per sequence       = n_ctx tokens, n_ctx = --max-length
N counts the parameters outside embedding tables (a lookup multiplies nothing); the second
term is attention's scores and weighted sum, which grow with the context. n_ctx is the
maximum length because lth pads each split to its longest sequence, which truncation caps at
--max-length (a GLUE training split always has sequences that reach it): an upper bound when
every sequence is short. BERT-base at 128 tokens: 85 M non-embedding parameters, 6.6e10 FLOP
per sequence trained.

The model is built on the meta device from its config (no weights are read or downloaded).
A Hub model's config comes from the Hub or its cache; for a few well-known checkpoints
(OFFLINE_CONFIGS) the cache or else their published architecture, without network, and the
estimate says which.
"""
from typing import Tuple

import torch
from torch import nn

from lth.errors import LthError

# Architectures of well-known checkpoints (their config.json), for an estimate without network.
BERT_LARGE = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096}
OFFLINE_CONFIGS = {"bert-base-uncased": ("bert", {}), "google-bert/bert-base-uncased": ("bert", {}),
                   "bert-base-cased": ("bert", {"vocab_size": 28996}),
                   "google-bert/bert-base-cased": ("bert", {"vocab_size": 28996}),
                   "bert-large-uncased": ("bert", BERT_LARGE), "google-bert/bert-large-uncased": ("bert", BERT_LARGE)}
TRAIN_OVER_FORWARD = 3.0   # forward + backward over forward (backward ~ 2x forward)


def text_config(model: str, num_classes: int):
    """(config, note) of an hf: spec without weights: the note says when it stood in offline."""
    from lth.models import external, hf_pretrained
    name = external.parse(model).name
    if name not in OFFLINE_CONFIGS:
        return external.hf_config(model, num_classes), ""
    try:   # the cache first: a well-known checkpoint needs no network (offline, the Hub retries for ~20 s)
        return hf_pretrained.config_of(name, num_classes, local_only=True), ""
    except LthError:
        import transformers
        model_type, values = OFFLINE_CONFIGS[name]
        config = transformers.AutoConfig.for_model(model_type, num_labels=num_classes, **values)
        return config, f"{name}'s published architecture (lth's table; not in the local Hugging Face cache)"


def build_for_cost(model: str, num_classes: int, seq_len: int, device="meta") -> Tuple[nn.Module, object, str]:
    """(model at random init, its hf config or None, note) on `device`: meta to count, cpu to time."""
    from lth import models
    from lth.models import external
    if model.startswith("hf:"):
        config, note = text_config(model, num_classes)
        with torch.device(device):
            return external.HFClassifier(config), config, note
    with torch.device(device):
        return models.build(model, num_classes, 1, seq_len), None, ""


def training_flops(model: str, num_classes: int, seq_len: int) -> Tuple[float, str]:
    """(training FLOP per sequence of seq_len tokens, how it was counted)."""
    net, config, note = build_for_cost(model, num_classes, seq_len)
    embedded = {id(p) for m in net.modules() if isinstance(m, nn.Embedding) for p in m.parameters(recurse=False)}
    n = sum(p.numel() for p in net.parameters() if id(p) not in embedded)
    layers = getattr(config, "num_hidden_layers", 0) or 0
    width = getattr(config, "hidden_size", 0) or 0
    forward_per_token = 2 * n + 2 * layers * seq_len * width
    flops = TRAIN_OVER_FORWARD * forward_per_token * seq_len
    how = f"{n / 1e6:.1f} M non-embedding parameters x {seq_len} tokens" + (f"; {note}" if note else "")
    return flops, how


def random_tokens(config, batch: int, seq_len: int) -> torch.Tensor:
    """Token ids for timing (never the padding id 0)."""
    vocab = getattr(config, "vocab_size", None) or 1000
    return torch.randint(1, vocab, (batch, seq_len))
