"""OCSPruner's stability indicator (related-methods.md A3): how much the candidate sub-network
still changes from epoch to epoch.

    tracker = StabilityTracker(gap=2, window=3)
    tracker.push(kept)          # each epoch: the kept channel indices of every group
    psi = tracker.update()      # J_t = mean over groups of Jaccard(K_{t-gap}, K_t); psi_t = mean of the last 3 J

J_t is 0 until `gap + 1` candidates exist (epochs before monitoring also count 0), as in the
official code, so psi starts low and rises towards 1 as the kept sets stop changing.

    >>> jaccard([0, 1, 2], [1, 2, 3])
    0.5
"""
from typing import List, Optional, Sequence

import torch


def jaccard(a: Sequence[int], b: Sequence[int]) -> float:
    """|a & b| / |a | b| of two index sets (1.0 for two empty sets)."""
    sa, sb = {int(i) for i in a}, {int(i) for i in b}
    union = sa | sb
    return len(sa & sb) / len(union) if union else 1.0


def net_similarity(earlier: Sequence[Sequence[int]], later: Sequence[Sequence[int]]) -> float:
    """Mean per-group Jaccard similarity of two candidates' kept channels."""
    if len(earlier) != len(later) or not earlier:
        raise ValueError(f"candidates with {len(earlier)} and {len(later)} groups cannot be compared")
    return sum(jaccard(a, b) for a, b in zip(earlier, later)) / len(earlier)


class StabilityTracker:
    """The candidates of the last `gap + 1` epochs, the raw scores J and the smoothed psi."""

    def __init__(self, gap: int = 2, window: int = 3):
        self.gap, self.window = gap, window
        self.history: List[List[List[int]]] = []
        self.raw: List[float] = []
        self.psi: List[float] = []

    def push(self, kept: Sequence[torch.Tensor]) -> None:
        self.history = (self.history + [[sorted(int(i) for i in k) for k in kept]])[-(self.gap + 1):]

    def score(self) -> float:
        """J_t: the newest candidate against the one `gap` epochs older, 0 before there is one."""
        if len(self.history) <= self.gap:
            return 0.0
        return net_similarity(self.history[0], self.history[-1])

    def update(self, monitored: bool = True) -> float:
        """Record this epoch's J (0 when not monitored yet) and return psi_t."""
        self.raw.append(self.score() if monitored else 0.0)
        recent = self.raw[-self.window:]
        self.psi.append(sum(recent) / len(recent))
        return self.psi[-1]

    def plateaued(self, delta: float, min_epochs: int = 3) -> bool:
        """psi_t - psi_(t-2) <= delta at an epoch t > min_epochs (OCSPruner's automatic t_sl-start)."""
        t = len(self.psi) - 1
        return t > min_epochs and self.psi[t] - self.psi[t - 2] <= delta

    def state_dict(self) -> dict:
        return {"gap": self.gap, "window": self.window, "history": self.history, "raw": self.raw, "psi": self.psi}

    def load_state_dict(self, state: dict) -> None:
        self.gap, self.window = int(state["gap"]), int(state["window"])
        self.history = [[list(map(int, k)) for k in cand] for cand in state["history"]]
        self.raw, self.psi = list(map(float, state["raw"])), list(map(float, state["psi"]))


def reg_lambda(epoch: int, reg_start: Optional[int], reg0: float, delta: float, interval: int) -> float:
    """lambda_t: 0 before t_sl-start, then reg0 growing by `delta` every `interval` epochs."""
    if reg_start is None or epoch < reg_start:
        return 0.0
    return reg0 + delta * ((epoch - reg_start) // interval)
