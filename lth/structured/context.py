"""What every channel-pruning method shares: the model's channel groups, its FLOPs model, the
FLOPs-aware discount and the selection call with the run's settings.

    ctx = ChannelContext(model, example_input, num_classes, cfg.structured)
    sel = ctx.select(0.5)                       # lth.pruning.channel_select.Selection
    sel = ctx.select(0.6, already=sel.pruned)   # monotone: earlier channels stay pruned
"""
import logging
import time
from typing import Optional, Sequence

import torch
from torch import nn

from lth.pruning.channel_select import FlopsModel, Selection, flops_discount, select
from lth.pruning.channels import ChannelGroups
from lth.structured.config import StructuredConfig

log = logging.getLogger(__name__)


class ChannelContext:
    def __init__(self, model: nn.Module, example_input: torch.Tensor, num_classes: int, settings: StructuredConfig):
        started = time.perf_counter()
        self.settings = settings
        self.groups = ChannelGroups(model, example_input, num_classes)
        self.flops = FlopsModel(model, self.groups, example_input)
        self.discount = flops_discount(self.flops.channel_costs()) if settings.flops_aware else None
        log.info("%d channel groups (%s channels), dense %.2f MFLOPs; FLOPs model ready in %.1f s",
                 len(self.groups.groups), "/".join(map(str, self.groups.sizes)), self.flops.dense_flops / 1e6,
                 time.perf_counter() - started)

    def select(self, target: float, already: Optional[Sequence[torch.Tensor]] = None) -> Selection:
        s = self.settings
        return select(self.groups.saliency(), self.flops, target, s.tolerance, s.layer_limit, self.discount, already)

    def check_reachable(self, target: float) -> None:
        """Raise the one-line error now, before anything is written, if the floor forbids `target`."""
        self.select(target)
