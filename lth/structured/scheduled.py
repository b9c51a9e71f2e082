"""The toolkit's in-round schedules (lth.pruning.schedules: one_shot, iterative, agp, ocp) at channel
granularity: the FLOPs reduction rises along the schedule while the network trains.

Before step k (every --prune-interval steps) the target is schedule(k / total, 0, flops_rr);
when it rises, the global saliency cut (lth.pruning.channel_select) is recomputed with the
channels pruned so far kept pruned, and the new channels are masked (whole coupled slices,
shapes kept; their optimizer state zeroed). After the last step the target is the schedule's
value at t = 1, exactly --flops-rr, and the masked channels are removed physically: the
masked and the shrunk network compute the same function, so no fine-tuning follows.
"""
from typing import List, Optional

import torch

from lth.pruning import schedules
from lth.structured.config import StructuredConfig
from lth.structured.context import ChannelContext
from lth.structured.methods import Method, as_lists, as_tensors


def schedule_fn(settings: StructuredConfig):
    """The chosen schedule from 0 to --flops-rr, with its resolved parameters (paper defaults)."""
    return schedules.bind(settings.method, settings.schedule_params, 0.0, settings.flops_rr)


class Scheduled(Method):
    def __init__(self, ctx: ChannelContext, settings: StructuredConfig):
        self.ctx, self.s = ctx, settings
        self.target = schedule_fn(settings)
        self.masks = ctx.groups.masker()
        self.pruned: List[torch.Tensor] = [torch.zeros(0, dtype=torch.long) for _ in ctx.groups.groups]
        self.reached, self.scheduled = 0.0, -1.0   # achieved FLOPs reduction; last target acted on
        self.updates = 0

    def update(self, t: float, optimizer) -> None:
        target = self.target(t)
        if target <= self.scheduled:
            return
        self.scheduled = target
        if target <= 0.0:
            return
        sel = self.ctx.select(target, already=self.pruned)
        if sum(map(len, sel.pruned)) > sum(map(len, self.pruned)):
            self.pruned, self.reached = sel.pruned, sel.flops_rr
            self.ctx.groups.mask(self.masks, self.pruned)
            if optimizer is not None:
                self.masks.zero_optimizer_state(optimizer)
            self.updates += 1

    def before_step(self, step: int, total: int, optimizer) -> None:
        if step % self.s.prune_interval == 0:
            self.update(step / total, optimizer)

    def end_epoch(self, epoch: int) -> dict:
        return {"scheduled_rr": max(self.scheduled, 0.0), "masked_rr": self.reached,
                "kept": [g.size - len(p) for g, p in zip(self.ctx.groups.groups, self.pruned)]}

    def final_selection(self) -> Optional[List[torch.Tensor]]:
        self.update(1.0, None)
        return self.pruned

    def selection(self) -> List[torch.Tensor]:
        return self.pruned

    def summary(self) -> dict:
        return {"mask_updates": self.updates}

    def state_dict(self) -> dict:
        return {"pruned": as_lists(self.pruned), "reached": self.reached, "scheduled": self.scheduled,
                "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.pruned = as_tensors(state["pruned"])
        self.reached, self.scheduled, self.updates = state["reached"], state["scheduled"], state["updates"]
        if sum(map(len, self.pruned)):
            self.ctx.groups.mask(self.masks, self.pruned)
