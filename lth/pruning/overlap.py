"""Mask overlap: the Jaccard index of the kept weights of two masks, per layer and overall.

    jaccard(previous_mask, mask)   # {"jaccard": 0.8, "layers": {"fc1.weight": 0.8, ...}}

J = |kept in both| / |kept in either| (1.0 when neither keeps anything). lth.lottery.imp records it
between consecutive rounds (summary "mask_overlap"); analysis.mask_overlap draws it. Under IMP
the masks are nested (m_r only loses ones of m_{r-1}), so between consecutive rounds of one run
J = |m_r| / |m_{r-1}| exactly, per layer: it shows how a layer's share moves under global scope
or --layer-rate. Between two runs' masks at the same round (other schedules or seeds) it shows
whether they settle on the same ticket.
"""
from typing import Dict

import torch

from lth.errors import LthError


def jaccard(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> dict:
    """Overlap of two masks in lth's format (name -> bool tensor, True = kept)."""
    if sorted(a) != sorted(b):
        raise LthError(f"the masks cover different layers ({sorted(set(a) ^ set(b))[:4]})")
    layers, both_total, either_total = {}, 0, 0
    for name in a:
        x, y = a[name].bool(), b[name].bool()
        if x.shape != y.shape:
            raise LthError(f"mask {name}: shapes {tuple(x.shape)} and {tuple(y.shape)} differ")
        both, either = int((x & y).sum()), int((x | y).sum())
        layers[name] = both / either if either else 1.0
        both_total, either_total = both_total + both, either_total + either
    return {"jaccard": both_total / either_total if either_total else 1.0, "layers": layers}
