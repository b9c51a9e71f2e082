"""Learning-rate schedules: a registry of pure functions lr(t, peak) with t = step / total.

    one_cycle  fastai fit_one_cycle: cosine lr/div -> lr over `warmup`, cosine lr -> lr/div_final,
               and the momentum (AdamW beta1) cycled 0.95 -> 0.85 -> 0.95 in phase with it
    step       linear warm-up, then x gamma at each milestone (OpenLTH)
    constant   linear warm-up, then constant
    linear     linear warm-up, then linear decay to 0 (BIMP's budgeted dense phase, Li et al. 2020)

    ft, lrw, slr, clr, llr, allr   retraining schedules of prune-retrain runs (lth.training.retrain_lr):
               they read an LrContext (the dense run's LR history, the phase's pruning)

`lth.training.loop.lr_at(step, total, train_cfg, context)` evaluates the configured one and
`lth.training.loop.momentum_at` its momentum schedule, if it has one; docs/DESIGN.md §3 and §10 have the
formulas. Adding one is a decorated function with a parameter dataclass (lth.registry); one that
needs the context declares the trait needs_context (lth.training.retrain_lr).
"""
import math
from dataclasses import dataclass
from typing import Tuple

from lth.errors import LthError
from lth.knobs import knob
from lth.registry import Registry

# Traits: momentum, a function (t, **params) -> the scheduled momentum (AdamW beta1, SGD
# momentum) or None, for a schedule that also schedules the momentum (None: the optimizer's own
# value stays); needs_context, what a retraining schedule reads from its LrContext
# (lth.training.retrain_lr.DENSE or PRUNING; None: a plain schedule lr(t, peak, **params)).
LR_SCHEDULES = Registry("LR schedule", traits={"momentum": None, "needs_context": None})


@dataclass
class WarmupParams:
    warmup: float = knob(0.0, "fraction of the budget spent warming the LR up (linear; one_cycle: cosine)",
                         ge=0, lt=1)


@dataclass
class OneCycleParams:
    warmup: float = knob(0.25, "fraction of the budget spent warming the LR up (fastai pct_start: 0.25)",
                         ge=0, lt=1)
    div: float = knob(25.0, "the LR starts at lr/div (fastai: 25)", gt=0)
    div_final: float = knob(1e5, "the LR ends at lr/div_final (fastai: 1e5)", gt=0)
    moms: Tuple[float, ...] = knob((0.95, 0.85, 0.95), "momentum (AdamW beta1, SGD momentum) at the start, the LR "
                                   "peak and the end, cosine like the LR (fastai moms); empty: the optimizer's, fixed",
                                   ge=0, lt=1)

    def check(self):
        if len(self.moms) not in (0, 3):
            raise LthError(f"--moms takes three values (start, middle, end) or none, got {len(self.moms)}")


@dataclass
class StepParams(WarmupParams):
    milestones: Tuple[float, ...] = knob((0.5, 0.75), "fractions of the budget where the LR is multiplied by gamma",
                                         ge=0, le=1)
    gamma: float = knob(0.1, "LR factor at each milestone", gt=0)


def _combined_cos(t: float, warmup: float, start: float, middle: float, end: float) -> float:
    """fastai's combined_cos: cosine start -> middle over [0, warmup), then middle -> end."""
    if t < warmup:
        return start + (middle - start) * (1 - math.cos(math.pi * t / warmup)) / 2
    u = (t - warmup) / (1 - warmup)
    return end + (middle - end) * (1 + math.cos(math.pi * u)) / 2


def one_cycle_momentum(t: float, warmup: float = 0.25, moms: Tuple[float, ...] = (0.95, 0.85, 0.95), **_):
    """fastai fit_one_cycle's momentum: cosine moms[0] -> moms[1] over `warmup`, then -> moms[2]
    (falls while the LR rises); None when moms is empty (the optimizer's own value stays)."""
    return _combined_cos(t, warmup, *moms) if moms else None


@LR_SCHEDULES.register("one_cycle", OneCycleParams, momentum=one_cycle_momentum)
def one_cycle(t: float, lr: float, warmup: float = 0.25, div: float = 25.0, div_final: float = 1e5,
              moms: Tuple[float, ...] = (0.95, 0.85, 0.95)) -> float:
    """fastai fit_one_cycle: cosine from lr/div up to lr over `warmup`, then cosine down to
    lr/div_final (moms: see one_cycle_momentum)."""
    return _combined_cos(t, warmup, lr / div, lr, lr / div_final)


def _linear_warmup(t: float, warmup: float) -> float:
    return min(1.0, t / warmup) if warmup > 0 else 1.0


@LR_SCHEDULES.register("step", StepParams)
def step(t: float, lr: float, warmup: float = 0.0, milestones: Tuple[float, ...] = (0.5, 0.75),
         gamma: float = 0.1) -> float:
    """Linear warm-up, then lr x gamma at each milestone passed (OpenLTH's CIFAR recipe)."""
    return lr * _linear_warmup(t, warmup) * gamma ** sum(t >= m for m in milestones)


@LR_SCHEDULES.register("constant", WarmupParams)
def constant(t: float, lr: float, warmup: float = 0.0) -> float:
    """Linear warm-up, then the peak LR throughout."""
    return lr * _linear_warmup(t, warmup)


@LR_SCHEDULES.register("linear", WarmupParams)
def linear(t: float, lr: float, warmup: float = 0.0) -> float:
    """Linear warm-up, then linear decay from the peak to 0 at the end of the budget."""
    if t < warmup:
        return lr * t / warmup
    return lr * (1 - (t - warmup) / (1 - warmup))

