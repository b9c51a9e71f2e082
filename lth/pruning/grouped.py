"""Grouped convolutions (ResNeXt) in channel groups: a prunable unit is one channel *position*
inside every conv group, so each conv group loses the same channels and the cardinality stays.

    period, members = tie(group_name, size, members)   # ChannelGroups: C channels -> `period` units
    channels = expand(units, size, period)              # shrink: unit u -> channels c with c % period == u

Why positions, not whole conv groups: torch-pruning's grouped-conv input pruning assumes it (it
keeps the first in/groups kept indices as the weight's input slice, which is right only when the
pattern repeats in every conv group), no layer's `groups` changes (the exported network rebuilds
with the library's own constructor), and ResNeXt's cardinality, which Xie et al. 2017 found
worth more than width, is kept. A unit of a group whose grouped convs have g_1, g_2, ... groups
is every channel c with c % period == u, period = C / lcm(g_i): every conv group of every member
then loses the same number of channels, so the shapes stay valid.

The input slice of a grouped conv is its weight's dim 1 (in_channels / groups entries): channel
c of the group reads weight column c % (in_channels / groups) in its conv group, so masking unit
u zeroes those columns, in every conv group at once, exactly the columns removal drops.
"""
import dataclasses
import math
from typing import List, Sequence, Tuple

import torch
from torch import nn

from lth.errors import LthError

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def is_grouped(module: nn.Module) -> bool:
    """A grouped conv that is not depthwise (depthwise channels are their own filters)."""
    return (isinstance(module, CONVS) and module.groups > 1
            and not module.groups == module.in_channels == module.out_channels)


def period(group_name: str, size: int, grouped_counts: Sequence[int]) -> int:
    """Units in a group of `size` channels read or written by convs of these group counts."""
    if not grouped_counts:
        return size
    g = math.lcm(*grouped_counts)
    if size % g:
        raise LthError(f"channel group {group_name}: its {size} channels do not split evenly into the "
                       f"lcm ({g}) of its grouped convolutions' groups {sorted(set(grouped_counts))}")
    return size // g


def tie(group_name: str, size: int, members: List) -> Tuple[int, List]:
    """(units, members re-rooted on units): see the module docstring. `members` are
    lth.pruning.channels.Member with root indices in [0, size)."""
    counts = [m.module.groups for m in members if is_grouped(m.module)]
    p = period(group_name, size, counts)
    if p == size:
        return size, members
    out = []
    for m in members:
        root = m.root % p
        target = m.target
        if is_grouped(m.module):
            if not m.out:   # the weight's input slice is the position inside the conv group
                target = target % (m.module.in_channels // m.module.groups)
            if not torch.equal(target % p, root):
                raise LthError(f"layer {m.name}: its grouped-convolution channels do not line up with channel "
                               f"group {group_name} (a concatenation before a grouped conv is not supported)")
            pairs = torch.unique(torch.stack([target, root]), dim=1)   # one weight column per position
            target, root = pairs[0], pairs[1]
        out.append(dataclasses.replace(m, target=target, root=root))
    return p, out


def expand(units: Sequence[int], size: int, p: int) -> List[int]:
    """The channel indices of `units` in a group of `size` channels with `p` units."""
    chosen = set(int(u) for u in units)
    return [c for c in range(size) if c % p in chosen]


def grouped_counts_of(pruning_group) -> List[int]:
    """The `groups` of every grouped conv in a torch-pruning group (for `period` at removal)."""
    return [item.dep.target.module.groups for item in pruning_group
            if isinstance(item.dep.target.module, nn.Module) and is_grouped(item.dep.target.module)]
