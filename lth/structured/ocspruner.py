"""OCSPruner (Ghimire et al., arXiv 2501.13439; related-methods.md A3-A5) as a loop method:
one training cycle, the sub-network found while training.

  epoch < monitor_start     warm-up: plain training
  every epoch from then     candidate = global saliency cut at the target FLOPs reduction;
                            J_t = mean per-group Jaccard of kept channels vs 2 epochs earlier;
                            psi_t = mean of the last 3 J
  from t_sl-start           after every step w <- w * (1 - lambda * lr) on the candidate's
                            to-be-pruned channels; lambda = reg, + reg_delta every reg_interval
                            epochs (fixed t_sl-start, or 'auto': first t > 3 with psi_t - psi_(t-2) <= 1e-4)
  first epoch with psi >= tau (or the epoch --sl-end)
                            after that epoch's training the candidate is removed physically; the
                            loop makes a fresh optimizer, the LR schedule continues, and the
                            smaller network trains to the end of the budget.

--prune-at E (an epoch) or 'end' replaces the trigger: the paper's "prune at epoch e" ablation.
E = 0 prunes the initial weights by saliency; 'end' prunes after the last epoch (no fine-tuning).
With a fixed t_sl-start the first regularized epoch is t_sl-start + 2 and its lambda is already
--reg + --reg-delta, as in the CIFAR code (--reg-timing start: from t_sl-start at --reg), and the
cap fires at the first epoch > --sl-end, as that code's `epoch > sl_end` (--cap-rule at: at
--sl-end itself). 'auto' starts at the detected epoch with lambda --reg (the ImageNet code).
"""
import logging
from typing import List, Optional

import torch

from lth.pruning.channels import TargetedShrink
from lth.structured.config import StructuredConfig
from lth.structured.context import ChannelContext
from lth.structured.methods import Method, as_lists, as_tensors
from lth.structured.stability import StabilityTracker, reg_lambda

log = logging.getLogger(__name__)


class OcsPruner(Method):
    def __init__(self, ctx: ChannelContext, settings: StructuredConfig, epochs: int):
        self.ctx, self.s, self.epochs = ctx, settings, epochs
        self.tracker = StabilityTracker(settings.gap, settings.window)
        self.candidate: Optional[List[torch.Tensor]] = None   # channels to prune, per group
        self.candidate_rr: Optional[float] = None
        self.reg_start: Optional[int] = None if settings.sl_start == "auto" else int(settings.sl_start)
        # CIFAR code: regularization from epoch > sl_start + 1, lambda incremented before its first use
        self.reg_offset, self.reg_first = ((2, settings.reg_delta) if settings.sl_start != "auto"
                                           and settings.reg_timing == "code" else (0, 0.0))
        self.fixed_epoch: Optional[int] = int(settings.prune_at) if settings.prune_at.isdigit() else None
        self.lam, self.shrink = 0.0, None
        self.stable_epoch: Optional[int] = None
        self.trigger: Optional[str] = None   # tau, cap, fixed or end
        self.pending = False

    # ---- per epoch ---------------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> dict:
        monitored = epoch >= self.s.monitor_start
        if monitored and not self.pending:
            sel = self.ctx.select(self.s.flops_rr)
            self.candidate, self.candidate_rr = sel.pruned, sel.flops_rr
            self.tracker.push(self.ctx.groups.kept(sel.pruned))
        psi = self.tracker.update(monitored)
        if self.s.sl_start == "auto" and self.reg_start is None and self.tracker.plateaued(self.s.plateau_delta):
            self.reg_start = epoch
            log.info("automatic t_sl-start = %d (psi %.4f)", epoch, psi)
        self.lam = 0.0
        if self.candidate is not None:
            start = None if self.reg_start is None else self.reg_start + self.reg_offset
            self.lam = reg_lambda(epoch, start, self.s.reg + self.reg_first, self.s.reg_delta, self.s.reg_interval)
        self.shrink = TargetedShrink(self.ctx.groups, self.candidate) if self.lam > 0 else None
        record = {"J": self.tracker.raw[-1], "psi": psi, "lambda": self.lam}
        if self.candidate is not None:
            record["candidate_rr"] = self.candidate_rr
            record["kept"] = [g.size - len(p) for g, p in zip(self.ctx.groups.groups, self.candidate)]
            record["kept_idx"] = as_lists(self.ctx.groups.kept(self.candidate))
        return record

    def after_step(self, lr: float) -> None:
        if self.shrink is not None:
            self.shrink.apply(self.lam, lr)

    def end_epoch(self, epoch: int) -> dict:
        if self.s.prune_at != "stable" or self.pending or self.candidate is None:
            return {}
        psi = self.tracker.psi[-1]
        capped = epoch > self.s.sl_end if self.s.cap_rule == "after" else epoch >= self.s.sl_end
        if psi >= self.s.tau or capped:
            self.trigger = "tau" if psi >= self.s.tau else "cap"
            self.stable_epoch, self.pending = epoch, True
            log.info("epoch %d: psi %.4f %s tau %.4f: removing the candidate's channels next", epoch, psi,
                     ">=" if self.trigger == "tau" else "< (cap reached),", self.s.tau)
            return {"trigger": self.trigger}
        return {}

    # ---- pruning -----------------------------------------------------------------------
    def prune_due(self, epoch: int) -> bool:
        if self.fixed_epoch is not None:
            due = epoch == self.fixed_epoch
            self.trigger = "fixed" if due else self.trigger
            return due
        return self.pending

    def final_selection(self) -> Optional[List[torch.Tensor]]:
        """After the last epoch: 'end', --prune-at equal to the budget, a trigger at the very
        last epoch, or a budget that ended before psi reached tau (logged)."""
        if self.fixed_epoch is not None and self.fixed_epoch < self.epochs:
            return None
        if self.s.prune_at == "stable" and not self.pending:
            log.warning("psi never reached tau = %.4f within the budget: pruning after the last epoch", self.s.tau)
            self.trigger = "budget"
        self.trigger = self.trigger or ("end" if self.s.prune_at == "end" else "fixed")
        return self.selection()

    def selection(self) -> List[torch.Tensor]:
        """The candidate the shrink acted on; a fresh cut when none was computed (epoch 0)."""
        if self.candidate is None:
            sel = self.ctx.select(self.s.flops_rr)
            self.candidate, self.candidate_rr = sel.pruned, sel.flops_rr
        return self.candidate

    def summary(self) -> dict:
        return {"stable_epoch": self.stable_epoch, "trigger": self.trigger, "reg_start": self.reg_start,
                "final_psi": self.tracker.psi[-1] if self.tracker.psi else None}

    def state_dict(self) -> dict:
        return {"tracker": self.tracker.state_dict(), "candidate": None if self.candidate is None else as_lists(self.candidate),
                "candidate_rr": self.candidate_rr, "reg_start": self.reg_start, "stable_epoch": self.stable_epoch,
                "trigger": self.trigger, "pending": self.pending}

    def load_state_dict(self, state: dict) -> None:
        self.tracker.load_state_dict(state["tracker"])
        self.candidate = None if state["candidate"] is None else as_tensors(state["candidate"])
        self.candidate_rr, self.reg_start = state["candidate_rr"], state["reg_start"]
        self.stable_epoch, self.trigger, self.pending = state["stable_epoch"], state["trigger"], state["pending"]
