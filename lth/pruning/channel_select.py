"""Which channels to prune: a global cut over group saliencies, found by binary search to a
target FLOPs reduction (OCSPruner's selection: Ghimire et al., arXiv 2501.13439, and its official code's group-norm saliency).

    flops = FlopsModel(model, groups, example_input)     # FLOPs as a function of kept counts
    sel = select(groups.saliency(), flops, target=0.5)   # sel.pruned[g]: indices in group g
    sel.flops_rr                                         # within 5e-4 of 0.5 when reachable

Selection: every group keeps its top `floor_keep(C)` channels (the per-layer floor,
C - int(C * limit * (1 - e^-C))); the other channels of all groups are sorted together by
score (optionally discounted by the FLOPs one channel of the group costs) and the k lowest
are pruned, k found by binary search so that the FLOPs reduction is within `tolerance` of the
target (when no k is, because one channel of some group costs more than that: the k closest to
it). Channels already pruned (`already`) stay pruned: they sort first.
"""
import copy
import logging
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from lth.errors import LthError
from lth.pruning.channels import ChannelGroups, count, shrink

log = logging.getLogger(__name__)

LAYER_LIMIT = 0.75        # OCSPruner --layer-prune-limit: a layer loses at most ~75 % of its channels
TOLERANCE = 5e-4          # OCSPruner's binary search stops within this of the target FLOPs reduction
COST_SCALE = 1e6          # FLOPs-aware discount: softmax over groups of cost / 1e6 (OCSPruner cost.py)


def floor_keep(size: int, limit: float = LAYER_LIMIT) -> int:
    """Channels a group of `size` always keeps: size - int(size * limit * (1 - e^-size))."""
    return size - int(size * limit * (1.0 - math.exp(-size)))


class FlopsModel:
    """The network's FLOPs (torch-pruning's counter) as a function of each group's kept count.

    Every counted op is at most bilinear in the channel counts of its input and output, so
    FLOPs are a quadratic polynomial in the removed counts d: F(d) = F0 + sum b_g d_g +
    sum_{g<=h} q_gh d_g d_h, where q_gh can be non-zero only when a layer reads group g and
    writes group h (or both are one group). Those coefficients come from exact counts of
    physically shrunk copies (resnet20: 12 + 11 counts, about 0.7 s on one core) and are
    checked against one more exact count at a random cut; if that check fails (or a group has
    fewer than 3 channels) every query is counted exactly instead (about 26 ms for resnet20).
    """

    def __init__(self, model: torch.nn.Module, groups: ChannelGroups, example_input: torch.Tensor):
        self.template = copy.deepcopy(model).cpu().float().eval()
        example = example_input[:1].detach().cpu()
        self.example = example.float() if example.is_floating_point() else example   # token ids stay ids
        self.names, self.sizes = groups.names, groups.sizes
        self.dense_flops, self.dense_params = count(self.template, self.example)
        self._cache: Dict[Tuple[int, ...], int] = {}
        self.exact_only = min(self.sizes) < 3
        if not self.exact_only:
            self._fit(groups)

    def exact(self, removed: Sequence[int]) -> int:
        """FLOPs with the first removed[g] channels of every group physically removed."""
        key = tuple(int(d) for d in removed)
        if key not in self._cache:
            pruned = {n: list(range(d)) for n, d in zip(self.names, key) if d > 0}
            self._cache[key] = count(shrink(copy.deepcopy(self.template), pruned, self.example), self.example)[0]
        return self._cache[key]

    def _fit(self, groups: ChannelGroups) -> None:
        G, f0 = len(self.sizes), self.dense_flops
        unit = lambda *gs: [sum(1 for x in gs if x == g) for g in range(G)]  # noqa: E731
        writes, reads = {}, {}                              # module name -> groups on each side
        for g, grp in enumerate(groups.groups):
            for m in grp.members:
                (writes if m.out else reads).setdefault(m.name, set()).add(g)
        coupled = {tuple(sorted((g, h))) for name in reads for g in reads[name] for h in writes.get(name, ())}
        f1 = [self.exact(unit(g)) for g in range(G)]
        self.quad = torch.zeros(G, G, dtype=torch.float64)
        for g, h in sorted(coupled):
            if g == h:
                self.quad[g, g] = (self.exact(unit(g, g)) - 2 * f1[g] + f0) / 2
        self.lin = torch.tensor([f1[g] - f0 - self.quad[g, g].item() for g in range(G)], dtype=torch.float64)
        for g, h in sorted(coupled):
            if g != h:
                self.quad[g, h] = self.exact(unit(g, h)) - f1[g] - f1[h] + f0
        gen = torch.Generator().manual_seed(0)
        probe = [int(torch.randint(0, s - floor_keep(s) + 1, (), generator=gen)) for s in self.sizes]
        if abs(self._poly(probe) - self.exact(probe)) > 0.5:
            log.warning("FLOPs are not quadratic in the channel counts for this model; counting every query exactly")
            self.exact_only = True

    def _poly(self, removed: Sequence[int]) -> float:
        d = torch.tensor(removed, dtype=torch.float64)
        return self.dense_flops + float(self.lin @ d) + float(d @ torch.triu(self.quad) @ d)

    def flops(self, kept: Sequence[int]) -> float:
        removed = [s - k for s, k in zip(self.sizes, kept)]
        return float(self.exact(removed)) if self.exact_only else self._poly(removed)

    def reduction(self, kept: Sequence[int]) -> float:
        return 1.0 - self.flops(kept) / self.dense_flops

    def channel_costs(self) -> List[float]:
        """FLOPs saved by removing one channel of each group (the FLOPs-aware discount's cost)."""
        return [self.dense_flops - self.flops([s - (i == g) for i, s in enumerate(self.sizes)])
                for g in range(len(self.sizes))]


def flops_discount(costs: Sequence[float]) -> torch.Tensor:
    """1 - softmax over groups of cost / 1e6: groups whose channels cost more FLOPs look less
    important, so a FLOPs target is met by removing fewer, costlier channels."""
    return 1.0 - torch.softmax(torch.tensor(costs, dtype=torch.float64) / COST_SCALE, dim=0)


@dataclass
class Selection:
    pruned: List[torch.Tensor]   # per group: sorted indices of the channels to prune
    kept_counts: List[int]
    flops_rr: float              # FLOPs reduction of the selected sub-network (FlopsModel)


@dataclass
class Ranking:
    """Every prunable channel, lowest score first: pruning the first k is the cut at k."""
    group_of: torch.Tensor       # long: the group of the i-th channel in the order
    index_of: torch.Tensor       # long: its index within the group
    sizes: List[int]
    n_already: int               # the first n_already are the channels pruned before

    def kept_for(self, k: int) -> List[int]:
        removed = torch.bincount(self.group_of[:k], minlength=len(self.sizes)).tolist()
        return [s - r for s, r in zip(self.sizes, removed)]

    def pruned_for(self, k: int) -> List[torch.Tensor]:
        head_g, head_i = self.group_of[:k], self.index_of[:k]
        return [torch.sort(head_i[head_g == g]).values for g in range(len(self.sizes))]

    def __len__(self) -> int:
        return len(self.group_of)


def rank(scores: Sequence[torch.Tensor], sizes: Sequence[int], layer_limit: float = LAYER_LIMIT,
         discount: Optional[torch.Tensor] = None, already: Optional[Sequence[torch.Tensor]] = None,
         names: Optional[Sequence[str]] = None) -> Ranking:
    """The global order of the channels outside every group's floor (see the module docstring)."""
    if len(scores) != len(sizes):
        raise LthError(f"{len(scores)} score vectors for {len(sizes)} channel groups")
    cand_scores, cand_group, cand_index = [], [], []
    for g, (s, size) in enumerate(zip(scores, sizes)):
        s = s.double().clone() * (discount[g] if discount is not None else 1.0)
        if already is not None and len(already[g]):
            s[torch.as_tensor(already[g], dtype=torch.long)] = -math.inf
        order = torch.sort(-s, stable=True).indices          # best first, lower index first on ties
        free = torch.sort(order[floor_keep(size, layer_limit):]).values
        if already is not None and s[free].eq(-math.inf).sum() < len(already[g]):
            raise LthError(f"group {names[g] if names else g}: {len(already[g])} channels already pruned exceed "
                           f"the layer floor of {floor_keep(size, layer_limit)} kept of {size}")
        cand_scores.append(s[free])
        cand_group.append(torch.full((len(free),), g, dtype=torch.long))
        cand_index.append(free)
    order = torch.sort(torch.cat(cand_scores), stable=True).indices
    n_already = sum(len(a) for a in already) if already is not None else 0
    return Ranking(torch.cat(cand_group)[order], torch.cat(cand_index)[order], list(sizes), n_already)


def select(scores: Sequence[torch.Tensor], flops: FlopsModel, target: float, tolerance: float = TOLERANCE,
           layer_limit: float = LAYER_LIMIT, discount: Optional[torch.Tensor] = None,
           already: Optional[Sequence[torch.Tensor]] = None) -> Selection:
    """The global cut reaching FLOPs reduction `target` (see the module docstring)."""
    if not 0.0 <= target < 1.0:
        raise LthError(f"target FLOPs reduction {target} is outside [0, 1)")
    ranking = rank(scores, flops.sizes, layer_limit, discount, already, flops.names)

    def rr(k: int) -> float:
        return flops.reduction(ranking.kept_for(k))

    top = len(ranking)
    if rr(top) < target - tolerance:
        raise LthError(f"a FLOPs reduction of {target} is out of reach: the layer floor (layer limit "
                       f"{layer_limit}) allows at most {rr(top):.4f}")
    k = ranking.n_already
    if rr(k) < target - tolerance:
        lo, hi, above, below = ranking.n_already, top, top, ranking.n_already
        k = None
        while lo <= hi:                    # rr is non-decreasing in k
            mid = (lo + hi) // 2
            r = rr(mid)
            if abs(r - target) <= tolerance:
                k = mid
                break
            if r < target:
                lo, below = mid + 1, mid
            else:
                hi, above = mid - 1, mid
        if k is None:                      # no cut within tolerance: the closer of the two around it
            k = below if target - rr(below) < rr(above) - target else above
    return Selection(ranking.pruned_for(k), ranking.kept_for(k), rr(k))
