"""Divergence: a loss or a weight that is no longer a finite number stops the run with one line.

A diverged run's NaN weights would otherwise surface as a confusing later failure (a pruned
weight "moved off zero", a meaningless accuracy, a NaN checkpoint that a resume reloads). The
watch keeps the first step with a non-finite loss on the device (no host sync per step) and is
checked once an epoch, before that epoch's checkpoint or the round's artefacts are written, so
what is on disk is the last good state.
"""
import torch
from torch import nn

from lth.errors import LthError
from lth.training.callbacks import Callback


class Diverged(LthError):
    """Training produced a non-finite loss or weight; nothing of the diverged epoch was saved."""


class DivergenceWatch:
    def __init__(self, device):
        self.first = torch.full((), -1, dtype=torch.long, device=device)  # first bad step, -1: none yet

    def observe(self, loss: torch.Tensor, step: int) -> None:
        """Record `step` if its loss is not finite and no earlier step's was (stays on the device)."""
        bad = ~torch.isfinite(loss) & (self.first < 0)
        self.first = torch.where(bad, torch.full_like(self.first, step), self.first)

    def check(self, model: nn.Module, where: str, epoch: int, step: int) -> None:
        """Raise Diverged naming `where` and the step if the loss or a weight is not finite."""
        first = int(self.first)
        if first >= 0:
            raise Diverged(f"{where}: training diverged: the loss is not finite from step {first} (epoch {epoch}); "
                           f"stopped before saving epoch {epoch}, the earlier checkpoints and results are kept "
                           f"(a lower --lr, or a warm-up, may help)")
        params = list(model.named_parameters())
        finite = torch.stack([torch.isfinite(p).all() for _, p in params]).tolist()  # one host sync
        bad = [name for (name, _), ok in zip(params, finite) if not ok]
        if bad:
            raise Diverged(f"{where}: training diverged: weights of {bad[0]} are not finite after step {step} "
                           f"(epoch {epoch}); stopped before saving epoch {epoch}, the earlier checkpoints and "
                           f"results are kept (a lower --lr, or a warm-up, may help)")


class Divergence(Callback):
    """The watch around the one loop: every step's loss observed on the device, the loss and
    the weights checked at each epoch's end before anything of that epoch is saved (put it
    first in the callback list: NaN weights would otherwise read as "moved off zero")."""

    def __init__(self, where: str):
        self.where, self.watch = where, None

    def on_train_start(self, loop) -> None:
        self.watch = DivergenceWatch(loop.device)

    def after_step(self, loop, loss) -> None:
        self.watch.observe(loss, loop.step - 1)   # the step that produced it (loop.step has moved on)

    def on_epoch_end(self, loop, line: dict) -> None:
        self.watch.check(loop.model, self.where, loop.epoch, loop.step)
