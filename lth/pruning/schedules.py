"""In-round sparsity schedules: pure functions of progress t in [0, 1].

Every schedule has the signature `f(t, s_i, s_f, **params) -> sparsity`, is monotone
non-decreasing in t, is affine in (s_i, s_f), and returns exactly `s_f` at t = 1. Each is a
registry entry whose parameter dataclass gives the paper's defaults (Hubens et al., "One-Cycle
Pruning", section 4: starts found by grid search) and the allowed ranges:

    one_shot(t, s_i, s_f, start=0.4)                      all at once at `start`
    imp(t, s_i, s_f)                                      all at once at the end (original IMP)
    dense(t, s_i, s_f)                                    no pruning: the unpruned reference run
    iterative(t, s_i, s_f, start=0.2, end=1.0, prune_steps=3)   equal jumps in [start, end)
    agp(t, s_i, s_f, start=0.2, end=1.0)                  Zhu & Gupta cubic
    ocp(t, s_i, s_f, alpha=14.0, beta=5.0)                paper eq. 1, the whole round

    >>> import lth.pruning.schedules as s
    >>> round(s.ocp(0.5, 0.0, 0.9), 6)
    0.792815
    >>> s.get("agp")(1.0, 0.2, 0.36)
    0.36

Adding a schedule is one decorated function (docs/DESIGN.md §3 has the formulas):

    @SCHEDULES.register("linear")
    def linear(t, s_i, s_f):
        return s_i + (s_f - s_i) * t
"""
import functools
import math
from dataclasses import dataclass
from typing import Callable

from lth.errors import LthError
from lth.knobs import knob
from lth.registry import Registry

Schedule = Callable[..., float]
# Traits: prunes (False: the unpruned reference; its run is one round at sparsity 0 whatever the
# pruning flags, and a --restart continue run takes such a run as its --from-run); label, its
# name in figures and tables (analysis; None: the entry's name).
SCHEDULES = Registry("schedule", traits={"prunes": True, "label": None})


def get(name: str) -> Schedule:
    """The schedule function of `name` (an LthError naming the choices otherwise)."""
    return SCHEDULES.get(name).fn


def bind(name: str, params: dict, s_i: float, s_f: float) -> Callable[[float], float]:
    """The schedule `name` with its parameters (a resolved config dict), bound to a round's start and end: t -> s."""
    entry = SCHEDULES.get(name)
    return functools.partial(entry.fn, s_i=s_i, s_f=s_f, **params)


@dataclass
class OneShotParams:
    start: float = knob(0.4, "progress where the one pruning step happens (paper: 0.4)", ge=0, le=1)


@dataclass
class WindowParams:
    start: float = knob(0.2, "progress where pruning starts (paper: 0.2)", ge=0, le=1)
    end: float = knob(1.0, "progress where pruning ends", gt=0, le=1)

    def check(self):
        if self.start >= self.end:
            raise LthError(f"--start ({self.start:g}) must be below --end ({self.end:g})")


@dataclass
class IterativeParams(WindowParams):
    prune_steps: int = knob(3, "number of equal pruning steps (paper: 3)", ge=1)


@dataclass
class OcpParams:
    alpha: float = knob(14.0, "steepness (paper: 14)", gt=0)
    beta: float = knob(5.0, "horizontal offset (paper: 5; fasterai's code: 6); bounded so that "
                                  "exp(beta) stays a finite float", ge=-50, le=50)


def _window(t: float, start: float, end: float) -> float:
    """Progress inside [start, end], clipped to [0, 1]."""
    if t >= end:
        return 1.0
    if t <= start:
        return 0.0
    return (t - start) / (end - start)


@SCHEDULES.register("one_shot", OneShotParams, label="One-Shot (40 %)")
def one_shot(t: float, s_i: float, s_f: float, start: float = 0.4) -> float:
    """All of the increase at once when t reaches `start` (paper: 0.4; classic IMP: 1.0)."""
    return s_f if t >= start else s_i


@SCHEDULES.register("iterative", IterativeParams, label="Iterative")
def iterative(t: float, s_i: float, s_f: float, start: float = 0.2, end: float = 1.0,
              prune_steps: int = 3) -> float:
    """`prune_steps` equal jumps at start + k*(end-start)/prune_steps, k = 0..prune_steps-1
    (paper start: 0.2). The last jump comes before `end`, so every step is followed by fine-tuning.
    """
    if t >= 1.0 or t >= end:
        return s_f
    if t < start:
        return s_i
    done = min(prune_steps, math.floor(_window(t, start, end) * prune_steps) + 1)
    return s_i + (s_f - s_i) * done / prune_steps


@SCHEDULES.register("agp", WindowParams, label="AGP")
def agp(t: float, s_i: float, s_f: float, start: float = 0.2, end: float = 1.0) -> float:
    """Automated Gradual Pruning (Zhu & Gupta 2018): s_f + (s_i - s_f)(1 - tau)^3 (paper start: 0.2)."""
    if t >= 1.0:
        return s_f
    tau = _window(t, start, end)
    return s_f + (s_i - s_f) * (1.0 - tau) ** 3


@SCHEDULES.register("ocp", OcpParams, label="One-Cycle")
def ocp(t: float, s_i: float, s_f: float, alpha: float = 14.0, beta: float = 5.0) -> float:
    """One-Cycle Pruning, paper eq. 1: s_i + (s_f - s_i)(1 + e^(-a+b)) / (1 + e^(-a t + b)).

    alpha sets the steepness, beta the horizontal offset. The paper's grid search (Table 1)
    found alpha=14, beta=5; fasterai's code uses beta=6. Applies from the round's first step.
    """
    if t >= 1.0:
        return s_f
    return s_i + (s_f - s_i) * (1.0 + math.exp(-alpha + beta)) / (1.0 + math.exp(-alpha * t + beta))


@SCHEDULES.register("dense", prunes=False, label="Dense")
def dense(t: float, s_i: float, s_f: float) -> float:
    """No pruning: the unpruned reference run (one round at sparsity 0, whatever the flags)."""
    return s_i


@SCHEDULES.register("imp", label="IMP (end of round)")
def imp(t: float, s_i: float, s_f: float) -> float:
    """Original IMP (Frankle & Carbin): train the whole round, prune once at its end."""
    return s_f if t >= 1.0 else s_i


def round_sparsities(rounds: int, rate: float) -> list:
    """Sparsity reached at the end of each IMP round: s_r = 1 - (1 - p)^r, r = 1..rounds."""
    return [1.0 - (1.0 - rate) ** r for r in range(1, rounds + 1)]


def rate_for(final_sparsity: float, rounds: int) -> float:
    """The per-round rate p that reaches `final_sparsity` after `rounds` rounds."""
    return 1.0 - (1.0 - final_sparsity) ** (1.0 / rounds)
