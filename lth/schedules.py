"""In-round sparsity schedules: pure functions of progress t in [0, 1].

Every schedule has the signature `f(t, s_i, s_f, **params) -> sparsity`, is monotone
non-decreasing in t, and returns exactly `s_f` at t = 1. Paper defaults (Hubens et al.,
"One-Cycle Pruning", section 4: starts found by grid search) are the keyword defaults:

    one_shot(t, s_i, s_f, start=0.4)                      all at once at `start`
    iterative(t, s_i, s_f, start=0.2, end=1.0, steps=3)   `steps` equal jumps in [start, end)
    agp(t, s_i, s_f, start=0.2, end=1.0)                  Zhu & Gupta cubic
    ocp(t, s_i, s_f, alpha=14.0, beta=5.0)                paper eq. 1, the whole round

    >>> import lth.schedules as s
    >>> round(s.ocp(0.5, 0.0, 0.9), 6)
    0.792815
    >>> s.get("agp")(1.0, 0.2, 0.36)
    0.36

Adding a schedule is one decorated function:

    @register("linear")
    def linear(t, s_i, s_f):
        return s_i + (s_f - s_i) * t
"""
import math
from typing import Callable, Dict

from lth.errors import LthError

Schedule = Callable[..., float]
SCHEDULES: Dict[str, Schedule] = {}


def register(name: str):
    def add(fn: Schedule) -> Schedule:
        if name in SCHEDULES:
            raise ValueError(f"schedule {name!r} is registered twice")
        SCHEDULES[name] = fn
        return fn
    return add


def get(name: str) -> Schedule:
    try:
        return SCHEDULES[name]
    except KeyError:
        raise LthError(f"unknown schedule {name!r}; choose one of {', '.join(sorted(SCHEDULES))}") from None


def _window(t: float, start: float, end: float) -> float:
    """Progress inside [start, end], clipped to [0, 1]."""
    if t >= end:
        return 1.0
    if t <= start:
        return 0.0
    return (t - start) / (end - start)


@register("one_shot")
def one_shot(t: float, s_i: float, s_f: float, start: float = 0.4) -> float:
    """All of the increase at once when t reaches `start` (paper: 0.4; classic IMP: 1.0)."""
    return s_f if t >= start else s_i


@register("iterative")
def iterative(t: float, s_i: float, s_f: float, start: float = 0.2, end: float = 1.0,
              steps: int = 3) -> float:
    """`steps` equal jumps at start + k*(end-start)/steps, k = 0..steps-1 (paper start: 0.2).

    The last jump comes before `end`, so every step is followed by fine-tuning.
    """
    if t >= 1.0 or t >= end:
        return s_f
    if t < start:
        return s_i
    done = min(steps, math.floor(_window(t, start, end) * steps) + 1)
    return s_i + (s_f - s_i) * done / steps


@register("agp")
def agp(t: float, s_i: float, s_f: float, start: float = 0.2, end: float = 1.0) -> float:
    """Automated Gradual Pruning (Zhu & Gupta 2018): s_f + (s_i - s_f)(1 - tau)^3 (paper start: 0.2)."""
    if t >= 1.0:
        return s_f
    tau = _window(t, start, end)
    return s_f + (s_i - s_f) * (1.0 - tau) ** 3


@register("ocp")
def ocp(t: float, s_i: float, s_f: float, alpha: float = 14.0, beta: float = 5.0) -> float:
    """One-Cycle Pruning, paper eq. 1: s_i + (s_f - s_i)(1 + e^(-a+b)) / (1 + e^(-a t + b)).

    alpha sets the steepness, beta the horizontal offset. The paper's grid search (Table 1)
    found alpha=14, beta=5; fasterai's code uses beta=6. Applies from the round's first step.
    """
    if t >= 1.0:
        return s_f
    return s_i + (s_f - s_i) * (1.0 + math.exp(-alpha + beta)) / (1.0 + math.exp(-alpha * t + beta))


def round_sparsities(rounds: int, rate: float) -> list:
    """Sparsity reached at the end of each IMP round: s_r = 1 - (1 - p)^r, r = 1..rounds."""
    return [1.0 - (1.0 - rate) ** r for r in range(1, rounds + 1)]


def rate_for(final_sparsity: float, rounds: int) -> float:
    """The per-round rate p that reaches `final_sparsity` after `rounds` rounds."""
    return 1.0 - (1.0 - final_sparsity) ** (1.0 / rounds)
