"""Retraining LR schedules of prune-retrain pipelines (Zimmer, Spiegel, Pokutta, "How I Learned
To Stop Worrying And Love Retraining", ICLR 2023), registered in lth.training.lr_schedules.LR_SCHEDULES.

    ft    constant eta_min: the last LR of dense training               (Han et al. 2015)
    lrw   the last T_rt epochs of the dense schedule, replayed           (Renda et al. 2020)
    slr   warm-up 0 -> eta_max, then the dense schedule compressed       (Le & Hua 2021)
    clr   warm-up 0 -> eta_max, then cosine eta_max -> eta_min           (Le & Hua 2021)
    llr   warm-up 0 -> eta_max, then linear eta_max -> 0                 (Zimmer et al.)
    allr  warm-up 0 -> eta_0,   then linear eta_0 -> 0                   (Zimmer et al.)
          eta_0 = clip((d / sqrt(s)) * eta_max, min(T_rt / T, 1) * eta_max, eta_max)
          d = ||theta - theta_pruned|| / ||theta|| over all parameters, s = the fraction of the
          remaining weights pruned in this phase

Unlike the training schedules, these need what a dense run did and what this phase's pruning
did: an `LrContext` (the dense run's LR history, this phase's budget, d and s) that the IMP
driver builds for each phase of a `--restart continue` run and that `lth.training.loop.lr_at` passes
to every schedule whose entry declares the trait `needs_context`. eta_max is the largest LR of
the dense run, eta_min its last LR, T its budget in epochs (all from its config through lth.training.loop.lr_at, step by step).
Every schedule steps per optimizer step (u = step / total). The warm-up is 10 % of the phase
(`--retrain-warmup`), a half-cosine ramp by default as in the official code (its
CosineAnnealingLR from 0); `--warmup-shape linear` is a straight ramp. Formulas: docs/DESIGN.md §10.
"""
import math
from dataclasses import dataclass
from typing import Callable, Optional

from lth.errors import LthError
from lth.knobs import knob
from lth.training.lr_schedules import LR_SCHEDULES
from lth.registry import NoParams

# What a schedule needs from its context (its entry's trait needs_context):
DENSE = "dense"        # the dense run's LR history and this phase's budget
PRUNING = "pruning"    # also d and s of this phase's pruning, which must come before its first step


def context_needs(name: str) -> Optional[str]:
    """None for a plain LR schedule, else DENSE or PRUNING (the trait of the entry `name`)."""
    return LR_SCHEDULES.get(name).traits["needs_context"]


@dataclass
class DenseHistory:
    """The LR schedule a dense run trained with, as retraining schedules refer to it."""
    lr: Callable[[float], float]   # progress p in [0, 1] of the dense run -> its LR (lth.training.loop.lr_at)
    steps: int                     # T in optimizer steps
    steps_per_epoch: int
    eta_max: float                 # the largest LR of the run (after its warm-up)
    eta_min: float                 # the LR of its last step (FT's constant)
    peak_at: float = 0.0           # progress where the run first reaches eta_max (the end of its warm-up)

    @property
    def epochs(self) -> float:
        return self.steps / self.steps_per_epoch


@dataclass
class LrContext:
    """What a retraining schedule reads: the dense history, this phase's budget, and (after the
    phase's pruning) d and s. Saved in epoch checkpoints, so a resumed phase keeps its eta_0."""
    dense: DenseHistory
    steps: int                               # this phase's budget in optimizer steps
    steps_per_epoch: int
    pruned_fraction: Optional[float] = None  # s: of the weights remaining before, the fraction pruned
    norm_drop: Optional[float] = None        # d = ||theta - theta_pruned|| / ||theta||, all parameters

    @property
    def epochs(self) -> float:
        """T_rt in epochs."""
        return self.steps / self.steps_per_epoch

    def record_pruning(self, pruned_fraction: float, removed_sq: float, kept_sq: float) -> None:
        """One pruning of this phase: s, and the squared norms of the removed and of the kept
        parameters (||theta||^2 = kept + removed, since masking only zeroes entries)."""
        total = removed_sq + kept_sq
        self.pruned_fraction = pruned_fraction
        self.norm_drop = math.sqrt(removed_sq / total) if total > 0 else 0.0

    def state_dict(self) -> dict:
        return {"pruned_fraction": self.pruned_fraction, "norm_drop": self.norm_drop}

    def load_state_dict(self, state: dict) -> None:
        self.pruned_fraction, self.norm_drop = state["pruned_fraction"], state["norm_drop"]

    def summary(self) -> dict:
        """The numbers a round's summary.json records."""
        out = {"eta_max": self.dense.eta_max, "eta_min": self.dense.eta_min, "dense_epochs": self.dense.epochs,
               "retrain_epochs": self.epochs, "pruned_fraction": self.pruned_fraction, "norm_drop": self.norm_drop}
        if self.norm_drop is not None:
            out["allr_eta0"] = allr_eta0(self)
        return out


def allr_eta0(ctx: LrContext) -> float:
    """ALLR's peak: clip((d / sqrt(s)) * eta_max, min(T_rt / T, 1) * eta_max, eta_max).
    A phase that pruned nothing (s = 0) did no damage: d / sqrt(s) counts as 0 (the floor)."""
    if ctx.norm_drop is None or ctx.pruned_fraction is None:
        raise LthError("allr needs this phase's pruning before its first step (use --schedule one_shot --start 0)")
    eta_max = ctx.dense.eta_max
    ratio = ctx.norm_drop / math.sqrt(ctx.pruned_fraction) if ctx.pruned_fraction > 0 else 0.0
    floor = min(ctx.epochs / ctx.dense.epochs, 1.0) * eta_max
    return min(max(ratio * eta_max, floor), eta_max)


@dataclass
class RetrainWarmupParams:
    retrain_warmup: float = knob(0.1, "fraction of the retraining phase spent warming the LR up from 0 "
                                      "(Zimmer et al.: 0.1)", ge=0, lt=1)
    warmup_shape: str = knob("cosine", "warm-up ramp: cosine (the half-cosine of Zimmer et al.'s code), or linear",
                             choices=("linear", "cosine"))


def _warmup(u: float, peak: float, w: float, shape: str) -> Optional[float]:
    """The warm-up LR 0 -> peak at u < w (None once it is over): linear or half-cosine."""
    if u >= w:
        return None
    x = u / w
    return peak * (x if shape == "linear" else (1 - math.cos(math.pi * x)) / 2)


def _after(u: float, w: float) -> float:
    """Progress through the part after the warm-up, in [0, 1]."""
    return (u - w) / (1 - w)


@LR_SCHEDULES.register("ft", NoParams, needs_context=DENSE)
def ft(t: float, lr: float, ctx: LrContext) -> float:
    """FT (Han et al.): constant eta_min, the last LR of dense training."""
    return ctx.dense.eta_min


@LR_SCHEDULES.register("lrw", NoParams, needs_context=DENSE)
def lrw(t: float, lr: float, ctx: LrContext) -> float:
    """LRW (Renda et al.): the last T_rt epochs of the dense schedule, replayed (from its first
    step when T_rt exceeds T)."""
    k = round(t * ctx.steps)  # t = k / steps exactly: recover k, so the replay is step-exact
    # dense progress 1 - (T_rt / T)(1 - k / n), as one division of integers
    num = ctx.steps_per_epoch * ctx.dense.steps - (ctx.steps - k) * ctx.dense.steps_per_epoch
    return ctx.dense.lr(max(0.0, num / (ctx.steps_per_epoch * ctx.dense.steps)))


@LR_SCHEDULES.register("slr", RetrainWarmupParams, needs_context=DENSE)
def slr(t: float, lr: float, ctx: LrContext, retrain_warmup: float = 0.1, warmup_shape: str = "cosine") -> float:
    """SLR (Le & Hua): warm-up to eta_max, then the whole dense schedule compressed. The dense
    run's own warm-up is not replayed after this one: it reads as eta_max (Zimmer et al.'s code)."""
    warm = _warmup(t, ctx.dense.eta_max, retrain_warmup, warmup_shape)
    if warm is not None:
        return warm
    p = _after(t, retrain_warmup)
    return ctx.dense.eta_max if p < ctx.dense.peak_at else ctx.dense.lr(p)


@LR_SCHEDULES.register("clr", RetrainWarmupParams, needs_context=DENSE)
def clr(t: float, lr: float, ctx: LrContext, retrain_warmup: float = 0.1, warmup_shape: str = "cosine") -> float:
    """CLR (Le & Hua): warm-up to eta_max, then cosine from eta_max down to eta_min."""
    hi, lo = ctx.dense.eta_max, ctx.dense.eta_min
    warm = _warmup(t, hi, retrain_warmup, warmup_shape)
    return warm if warm is not None else lo + (hi - lo) * (1 + math.cos(math.pi * _after(t, retrain_warmup))) / 2


def _linear_from(t: float, peak: float, w: float, shape: str) -> float:
    warm = _warmup(t, peak, w, shape)
    return warm if warm is not None else peak * (1 - _after(t, w))


@LR_SCHEDULES.register("llr", RetrainWarmupParams, needs_context=DENSE)
def llr(t: float, lr: float, ctx: LrContext, retrain_warmup: float = 0.1, warmup_shape: str = "cosine") -> float:
    """LLR (Zimmer et al.): warm-up to eta_max, then linear down to 0."""
    return _linear_from(t, ctx.dense.eta_max, retrain_warmup, warmup_shape)


@LR_SCHEDULES.register("allr", RetrainWarmupParams, needs_context=PRUNING)
def allr(t: float, lr: float, ctx: LrContext, retrain_warmup: float = 0.1, warmup_shape: str = "cosine") -> float:
    """ALLR (Zimmer et al.): LLR with the peak eta_0 set by this phase's pruning (allr_eta0)."""
    return _linear_from(t, allr_eta0(ctx), retrain_warmup, warmup_shape)
