"""Attention heads as channel groups (issue 21): structured pruning of a transformer removes whole heads.

    blocks = attention_blocks(model)          # group name -> Block, for every recognised layout
    group = channels.head_group(blocks[name])          # size = the block's head count
    remove_heads(model, graph, blocks[name], [1, 3])   # physically, in place (graph: torch-pruning's)

Recognised layouts (a head h of width d is the rows p*E + h*d .. p*E + (h+1)*d - 1 of each
producer, for each of its `parts` stacked projections of E = heads x d rows, and the columns
h*d .. (h+1)*d - 1 of the consumer):
  timm    a module with a fused `qkv` Linear (3 parts), a `proj` Linear and an int `num_heads`
          (timm's ViT/DeiT Attention); the group is named by its qkv layer.
  bert    a Hugging Face BERT-style attention: `self` (older HF ViT: `attention`) with `query`,
          `key`, `value` Linears (1 part each) and `num_attention_heads`, and `output.dense`
          reading the heads (BERT, RoBERTa, ...); or HF's newer layout (ViT in transformers 5,
          Llama-style without grouped-query attention): `q_proj`, `k_proj`, `v_proj`, `o_proj` and
          `num_attention_heads` on one module. The group is named by the query layer. Removal
          follows HF's prune_heads: the rows and columns go, num_attention_heads (all_head_size,
          num_key_value_heads where present) updated.
  mha     nn.MultiheadAttention with one fused in_proj_weight (3 parts) and `out_proj`; the group
          is named by the module. Removal replaces it with lth.pruning.mha.PrunedMultiheadAttention
          (nn.MultiheadAttention cannot hold fewer heads than embed_dim / head_dim).
Masking a head zeroes its q, k and v rows (and biases): its attention output is exactly 0, so
removing it changes no output (tests/test_structured_heads.py). A block with parameters beside
its projections (Swin's relative position bias, a norm over all heads), grouped-query attention
and an nn.MultiheadAttention with kdim/vdim or add_bias_kv keep their heads (`dense`, logged):
lth would have to slice more than it knows. The residual stream (LayerNorm,
token and position embeddings coupled through every block) is left dense (`is_residual_stream`).
An attention that matches none of these (`passes_attention`) is refused in one line.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch_pruning as tp
from torch import nn

from lth.errors import LthError
from lth.pruning.mha import PrunedMultiheadAttention

# autograd ops that multiply two activations, as an attention does (q @ k^T, weights @ v)
ATTENTION_OPS = ("Bmm", "Baddbmm", "ScaledDotProduct")   # not Softmax alone: SKNet softmaxes across branches per channel


@dataclass
class Producer:
    name: str            # module name
    module: nn.Module
    weight: str          # parameter names on the module
    bias: str
    parts: int           # stacked projections of heads x head_dim rows (3 for a fused qkv)


@dataclass
class Block:
    name: str            # the group's name (see the layouts)
    layout: str          # "timm", "bert" or "mha"
    module: nn.Module    # the module whose head count changes
    producers: List[Producer]
    consumer: Tuple[str, nn.Linear]   # reads the heads' outputs (its input columns)
    heads: int
    head_dim: int
    dense: str = ""      # why its heads stay (per-head parameters lth does not slice), or ""

    def rows(self, producer: Producer, heads: List[int]) -> List[int]:
        """The producer's rows of `heads`."""
        e, d = self.heads * self.head_dim, self.head_dim
        return sorted(p * e + h * d + i for p in range(producer.parts) for h in heads for i in range(d))


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _timm(name: str, m: nn.Module) -> Optional[Block]:
    qkv, proj, heads = getattr(m, "qkv", None), getattr(m, "proj", None), getattr(m, "num_heads", None)
    if not (isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear) and isinstance(heads, int) and heads > 0):
        return None
    if proj.in_features % heads or qkv.out_features != 3 * proj.in_features:
        return None
    block = Block(_join(name, "qkv"), "timm", m, [Producer(_join(name, "qkv"), qkv, "weight", "bias", 3)],
                  (_join(name, "proj"), proj), heads, proj.in_features // heads)
    # Swin's relative position bias table, a norm over the heads' output: per-head or
    # all-heads parameters that removal would have to slice too; those heads stay
    extra = [n for n, _ in m.named_parameters(recurse=False)]
    extra += [n for n, c in m.named_children() if n not in TIMM_KNOWN and any(True for _ in c.parameters())]
    if getattr(m, "norm", None) is not None and not isinstance(m.norm, nn.Identity):
        extra.append("norm")
    block.dense = f"parameters {', '.join(extra)} beside qkv and proj" if extra else ""
    return block


def _separate(base: str, att: nn.Module, keys, consumer: Tuple[str, nn.Module]) -> Block:
    """A block of separate query, key and value Linears (`keys`, in that order) on `att`."""
    layers = [getattr(att, k, None) for k in keys]
    heads, out = att.num_attention_heads, consumer[1]
    if not all(isinstance(x, nn.Linear) for x in layers) or heads <= 0 or not isinstance(out, nn.Linear):
        raise LthError(f"attention {base or 'model'} has num_attention_heads but not the {'/'.join(keys)} Linear "
                       f"layers lth knows; lth cannot prune its heads")
    block = Block(_join(base, keys[0]), "bert", att, [Producer(_join(base, k), x, "weight", "bias", 1)
                                                      for k, x in zip(keys, layers)],
                  consumer, heads, out.in_features // heads)
    if any(x.out_features != out.in_features for x in layers) or out.in_features % heads:
        block.dense = (f"{'/'.join(keys)} widths {[x.out_features for x in layers]} unlike {consumer[0]}'s "
                       f"{out.in_features} in {heads} heads (grouped-query attention?)")
    return block


def _bert(name: str, m: nn.Module) -> Optional[Block]:
    if isinstance(getattr(m, "num_attention_heads", None), int) and hasattr(m, "q_proj"):   # HF's newer layout
        return _separate(name, m, ("q_proj", "k_proj", "v_proj"), (_join(name, "o_proj"), getattr(m, "o_proj", None)))
    key = "self" if getattr(m, "self", None) is not None else "attention"   # BERT: .self; older HF ViT: .attention
    att, out = getattr(m, key, None), getattr(getattr(m, "output", None), "dense", None)
    if att is None or not isinstance(out, nn.Linear) or not isinstance(getattr(att, "num_attention_heads", None), int):
        return None
    return _separate(_join(name, key), att, ("query", "key", "value"), (_join(name, "output", "dense"), out))


def _mha(name: str, m: nn.Module) -> Optional[Block]:
    if not isinstance(m, nn.MultiheadAttention):
        return None
    block = Block(name, "mha", m, [Producer(name, m, "in_proj_weight", "in_proj_bias", 3)],
                  (_join(name, "out_proj"), m.out_proj), m.num_heads, m.head_dim)
    if not m._qkv_same_embed_dim or m.in_proj_weight is None or m.bias_k is not None:
        block.dense = "separate key/value widths (kdim, vdim) or add_bias_kv: lth prunes the fused layout only"
    return block


LAYOUTS = (_timm, _bert, _mha)
TIMM_KNOWN = {"qkv", "proj", "q_norm", "k_norm", "norm"}   # q_norm, k_norm act within a head; norm: below


def attention_blocks(model: nn.Module) -> Dict[str, Block]:
    """Group name -> its block, for every attention module of a recognised layout."""
    out = {}
    for name, m in model.named_modules():
        for layout in LAYOUTS:
            block = layout(name, m)
            if block is not None:
                out[block.name] = block
                break
    return out


def block_of(model: nn.Module, group_name: str) -> Optional[Block]:
    """The block whose group is `group_name`, or None (a plain layer)."""
    return attention_blocks(model).get(group_name)


def is_residual_stream(group) -> bool:
    """A DepGraph group holding a free parameter or a LayerNorm: a transformer's width."""
    for item in group:
        module = item.dep.target.module
        if not isinstance(module, nn.Module) or isinstance(module, nn.LayerNorm):
            return True
    return False


def passes_attention(group) -> bool:
    """Whether a DepGraph group's channels run through an attention's products (q @ k, softmax,
    weights @ v): pruning single channels there breaks the head split."""
    return any(any(op in str(getattr(item.dep.target.module, "_grad_fn", "")) for op in ATTENTION_OPS)
               for item in group)


def _keep(module: nn.Module, attr: str, dim: int, keep: torch.Tensor) -> None:
    p = getattr(module, attr)
    if p is not None:
        setattr(module, attr, nn.Parameter(p.detach().index_select(dim, keep.to(p.device)).clone(),
                                           requires_grad=p.requires_grad))


def _check(block: Block, heads: List[int]) -> None:
    if max(heads) >= block.heads or min(heads) < 0 or len(set(heads)) >= block.heads:
        raise LthError(f"cannot remove heads {heads[:5]} of {block.name}: it has {block.heads} heads (one must stay)")
    if block.dense:
        raise LthError(f"cannot remove heads of {block.name}: it has {block.dense}")


def remove_heads(model: nn.Module, graph, block: Block, heads: List[int]) -> None:
    """Remove whole heads physically (in place): their producer rows and consumer columns."""
    if not heads:
        return
    heads = sorted(set(int(h) for h in heads))
    _check(block, heads)
    kept = [h for h in range(block.heads) if h not in heads]
    if block.layout == "timm":   # torch-pruning carries qkv's rows to proj's columns
        graph.get_pruning_group(block.producers[0].module, tp.prune_linear_out_channels,
                                block.rows(block.producers[0], heads)).prune()
        block.module.num_heads = len(kept)
        if hasattr(block.module, "attn_dim"):
            block.module.attn_dim = len(kept) * block.head_dim
    elif block.layout == "bert":   # HF's prune_heads, without its bookkeeping of pruned_heads
        for p in block.producers:
            keep = torch.tensor(block.rows(p, kept))
            _keep(p.module, p.weight, 0, keep)
            _keep(p.module, p.bias, 0, keep)
            p.module.out_features = len(keep)
        keep = torch.tensor(block.rows(block.producers[2], kept))
        _keep(block.consumer[1], "weight", 1, keep)
        block.consumer[1].in_features = len(keep)
        block.module.num_attention_heads = len(kept)
        if hasattr(block.module, "all_head_size"):
            block.module.all_head_size = len(kept) * block.head_dim
        if isinstance(getattr(block.module, "num_key_value_heads", None), int):
            block.module.num_key_value_heads = len(kept)
    else:
        parent_name, _, leaf = block.name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else None
        if parent is None:
            raise LthError("cannot remove heads of an nn.MultiheadAttention that is the whole model")
        setattr(parent, leaf, PrunedMultiheadAttention(block.module, kept))
