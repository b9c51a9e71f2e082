"""The pruning methods a structured run can use, behind one small interface the loop calls:

    begin_epoch(epoch) -> dict      record fields; computes candidates (OCSPruner)
    before_step(step, total, opt)   mask updates (the in-round schedules)
    after_step(lr)                  the targeted shrink (OCSPruner)
    end_epoch(epoch) -> dict        record fields; the stability trigger (OCSPruner)
    prune_due(epoch) -> bool        remove channels physically at the start of this epoch?
    final_selection() -> list|None  channels to remove after the last epoch (None: nothing)
    selection() -> list             the channels to remove now (per group)

`masks` is the lth.pruning.masks.Masks that train_step enforces (None when nothing is masked).
Dense trains the whole network; OCSPruner (ocspruner.py) and the schedules (scheduled.py)
act on the channel groups of lth.pruning.channels.
"""
from typing import List, Optional

import torch

from lth.pruning.masks import Masks


class Method:
    """No pruning: the dense baseline."""
    masks: Optional[Masks] = None

    def begin_epoch(self, epoch: int) -> dict:
        return {}

    def before_step(self, step: int, total: int, optimizer) -> None:
        pass

    def after_step(self, lr: float) -> None:
        pass

    def end_epoch(self, epoch: int) -> dict:
        return {}

    def prune_due(self, epoch: int) -> bool:
        return False

    def final_selection(self) -> Optional[List[torch.Tensor]]:
        return None

    def selection(self) -> List[torch.Tensor]:
        raise NotImplementedError

    def summary(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def as_lists(pruned) -> List[List[int]]:
    return [[int(i) for i in p] for p in pruned]


def as_tensors(pruned) -> List[torch.Tensor]:
    return [torch.tensor(p, dtype=torch.long) for p in pruned]
