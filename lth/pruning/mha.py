"""nn.MultiheadAttention with heads removed (lth.pruning.heads replaces the module with this).

    small = PrunedMultiheadAttention(mha, keep=[0, 2, 3])   # the kept heads' q/k/v rows, out_proj columns

Why a module of its own: nn.MultiheadAttention ties the attention width to embed_dim (the model's
width; head_dim = embed_dim / num_heads), so it cannot hold fewer heads than embed_dim / head_dim
while the residual stream stays as wide. This module keeps nn.MultiheadAttention's parameter
names (in_proj_weight, in_proj_bias, out_proj.*), its call signature and its (output, weights)
result, with an attention width of num_heads x head_dim. torch-pruning's FLOPs counter matches
modules by exact type: `count_hook` counts it as its counter counts nn.MultiheadAttention, with
the smaller attention width, so a network without removed heads counts the same either way.
"""
import math
from typing import List, Optional

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn


class PrunedMultiheadAttention(nn.Module):
    def __init__(self, mha: nn.MultiheadAttention, keep: List[int]):
        super().__init__()
        e, d = mha.embed_dim, mha.head_dim
        self.embed_dim, self.num_heads, self.head_dim = e, len(keep), d
        self.batch_first, self.dropout = mha.batch_first, mha.dropout
        self.kdim = self.vdim = None           # as nn.MultiheadAttention with key/value width embed_dim
        # False keeps nn.TransformerEncoderLayer off its fused fast path, which assumes an attention
        # width of embed_dim; it then calls this module like any attention
        self._qkv_same_embed_dim = False
        rows = torch.tensor([p * e + h * d + i for p in range(3) for h in keep for i in range(d)],
                            device=mha.in_proj_weight.device)
        cols = rows[:len(keep) * d]
        self.in_proj_weight = nn.Parameter(mha.in_proj_weight.detach().index_select(0, rows).clone())
        bias = mha.in_proj_bias
        self.in_proj_bias = None if bias is None else nn.Parameter(bias.detach().index_select(0, rows).clone())
        out = mha.out_proj
        self.out_proj = nn.Linear(len(cols), e, bias=out.bias is not None, device=out.weight.device,
                                  dtype=out.weight.dtype)
        with torch.no_grad():
            self.out_proj.weight.copy_(out.weight.index_select(1, cols))
            if out.bias is not None:
                self.out_proj.bias.copy_(out.bias)

    def forward(self, query, key, value, key_padding_mask: Optional[torch.Tensor] = None, need_weights: bool = True,
                attn_mask: Optional[torch.Tensor] = None, average_attn_weights: bool = True, is_causal: bool = False):
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
        if not self.batch_first or unbatched:   # to (batch, length, width)
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        b, lq, lk, h, d = query.shape[0], query.shape[1], key.shape[1], self.num_heads, self.head_dim
        w = self.in_proj_weight.split(h * d)
        bq, bk, bv = self.in_proj_bias.split(h * d) if self.in_proj_bias is not None else (None, None, None)
        q = F.linear(query, w[0], bq).view(b, lq, h, d).transpose(1, 2)
        k = F.linear(key, w[1], bk).view(b, lk, h, d).transpose(1, 2)
        v = F.linear(value, w[2], bv).view(b, lk, h, d).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)
        scores = scores + _additive(attn_mask, scores, lq, lk, b, h)
        if key_padding_mask is not None:
            scores = scores + _additive(key_padding_mask.view(b, 1, 1, lk), scores, lq, lk, b, h)
        if is_causal and attn_mask is None:
            scores = scores.masked_fill(torch.ones(lq, lk, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
        attn = scores.softmax(-1)
        if self.training and self.dropout > 0:   # the weights returned are after dropout, as torch's
            attn = F.dropout(attn, self.dropout)
        out = self.out_proj((attn @ v).transpose(1, 2).reshape(b, lq, h * d))
        if not self.batch_first or unbatched:
            out = out.transpose(0, 1)
        if unbatched:
            out = out.squeeze(1)
        weights = None
        if need_weights:
            weights = attn.mean(1) if average_attn_weights else attn
            weights = weights.squeeze(0) if unbatched else weights
        return out, weights


def _additive(mask: Optional[torch.Tensor], like: torch.Tensor, lq: int, lk: int, b: int, h: int):
    """A boolean (True = not allowed) or additive float mask as an additive float mask."""
    if mask is None:
        return torch.zeros((), dtype=like.dtype, device=like.device)
    if mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=like.dtype, device=like.device).masked_fill(mask, float("-inf"))
    if mask.dim() == 3:                        # (batch x heads, lq, lk), as nn.MultiheadAttention takes it
        mask = mask.view(b, h, lq, lk)
    return mask.to(like.dtype)


def count_hook(module: PrunedMultiheadAttention, inputs, output) -> None:
    """torch-pruning's nn.MultiheadAttention count with attention width a = heads x head_dim:
    q scaling, the three projections (width -> a) and their biases, per head QK^T, softmax and
    AV, and the output projection (a -> width, bias)."""
    q, k, v = inputs[0], inputs[1], inputs[2]
    batch, len_idx = (q.shape[0], 1) if module.batch_first else (q.shape[1], 0)
    if q.dim() == 2:
        batch, len_idx = 1, 0
    width, a, d = module.embed_dim, module.num_heads * module.head_dim, module.head_dim
    qlen, klen, vlen = q.shape[len_idx], k.shape[len_idx], v.shape[len_idx]
    flops = qlen * a + (qlen + klen + vlen) * width * a
    if module.in_proj_bias is not None:
        flops += (qlen + klen + vlen) * a
    flops += module.num_heads * (qlen * klen * d + qlen * klen + qlen * klen * d)
    flops += qlen * width * (a + 1)
    module.__flops__ += int(flops * batch)


# torch-pruning looks modules up by exact type; register the count once, when this module loads
tp.utils.op_counter.MODULES_MAPPING[PrunedMultiheadAttention] = count_hook
