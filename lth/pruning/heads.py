"""Attention heads as channel groups (issue 21): structured pruning of a ViT removes whole heads.

    blocks = attention_blocks(model)          # qkv layer name -> Block (timm's Attention layout)
    group = channels.head_group("blocks.0.attn.qkv", blocks["blocks.0.attn.qkv"])   # size = num_heads

A block is a module with a fused `qkv` Linear (3 x heads x head_dim outputs), a `proj` Linear
reading heads x head_dim inputs and an integer `num_heads` (timm's ViT/DeiT Attention). Head h
is the rows p*E + h*d .. p*E + (h+1)*d - 1 of qkv for p = q, k, v (E = heads x d) and the columns
h*d .. (h+1)*d - 1 of proj. Masking a head zeroes its q, k and v (and biases): its attention
output is exactly 0, so removing it (`remove_heads`: torch-pruning on those qkv rows, which
DepGraph carries to proj's columns; num_heads and attn_dim updated) changes no output
(tests/test_structured_heads.py). The residual stream of a transformer (LayerNorm, token and
position embeddings coupled through every block) is left dense (`is_residual_stream`).
"""
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
import torch_pruning as tp
from torch import nn

from lth.errors import LthError


@dataclass
class Block:
    name: str          # the attention module's name
    module: nn.Module
    qkv: nn.Linear
    proj: nn.Linear
    heads: int
    head_dim: int


def _block(name: str, m: nn.Module) -> Optional[Block]:
    qkv, proj, heads = getattr(m, "qkv", None), getattr(m, "proj", None), getattr(m, "num_heads", None)
    if not (isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear) and isinstance(heads, int) and heads > 0):
        return None
    if proj.in_features % heads or qkv.out_features != 3 * proj.in_features:
        return None
    return Block(name, m, qkv, proj, heads, proj.in_features // heads)


def attention_blocks(model: nn.Module) -> Dict[str, Block]:
    """qkv layer name -> its block, for every attention module of timm's layout."""
    out = {}
    for name, m in model.named_modules():
        block = _block(name, m)
        if block is not None:
            out[f"{name}.qkv" if name else "qkv"] = block
    return out


def block_of(model: nn.Module, qkv_name: str) -> Optional[Block]:
    """The block whose qkv layer is `qkv_name`, or None (a plain layer)."""
    parent, _, leaf = qkv_name.rpartition(".")
    if leaf != "qkv":
        return None
    try:
        return _block(parent, model.get_submodule(parent) if parent else model)
    except AttributeError:
        return None


def head_rows(block: Block, heads: List[int]) -> List[int]:
    """The qkv rows of `heads` (query, key and value parts)."""
    e, d = block.heads * block.head_dim, block.head_dim
    return sorted(p * e + h * d + i for p in range(3) for h in heads for i in range(d))


def is_residual_stream(group, names: Dict[nn.Module, str]) -> bool:
    """A DepGraph group holding a free parameter or a LayerNorm: a transformer's width."""
    for item in group:
        module = item.dep.target.module
        if not isinstance(module, nn.Module) or isinstance(module, nn.LayerNorm):
            return True
    return False


def remove_heads(graph, block: Block, heads: List[int]) -> None:
    """Remove whole heads physically (in place): their qkv rows and proj columns."""
    if not heads:
        return
    if max(heads) >= block.heads or len(set(heads)) >= block.heads:
        raise LthError(f"cannot remove heads {heads[:5]} of {block.name}: it has {block.heads} heads (one must stay)")
    norm = getattr(block.module, "norm", None)
    if norm is not None and not isinstance(norm, nn.Identity):
        raise LthError(f"cannot remove heads of {block.name}: it normalises the heads' output ({type(norm).__name__})")
    graph.get_pruning_group(block.qkv, tp.prune_linear_out_channels, head_rows(block, sorted(set(heads)))).prune()
    block.module.num_heads = block.heads - len(set(heads))
    if hasattr(block.module, "attn_dim"):
        block.module.attn_dim = block.module.num_heads * block.head_dim
