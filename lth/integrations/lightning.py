"""lth.Pruner as a PyTorch Lightning callback (extra: lightning).

    from lth.integrations.lightning import LthPruning
    trainer = lightning.Trainer(max_steps=T, callbacks=[LthPruning(schedule="ocp", final_sparsity=0.9)])
    trainer.fit(module)          # module.configure_optimizers: one optimizer
    callback.pruner.save_masks("mask.pt")

The pruner is made when training starts, on the LightningModule and its (single) optimizer,
with total_steps = the trainer's estimated optimizer steps unless given. Lightning passes a
closure to optimizer.step (forward and backward run inside it): the pruner masks the gradients
as backward produces them (grad_hooks), so gradient clipping sees masked gradients too. Its
state rides in Lightning's checkpoints (Callback.state_dict), so `fit(ckpt_path=...)` resumes
the schedule where it stopped. Any lth.Pruner keyword (layers, scope, tolerance, ...) passes through.
"""
from typing import Optional

from lth.integrations import require

pl = require("lightning.pytorch", "lightning")

from lth.errors import LthError  # noqa: E402
from lth.pruning.pruner import Pruner  # noqa: E402


class LthPruning(pl.Callback):
    def __init__(self, *, final_sparsity, schedule: str = "ocp", total_steps: Optional[int] = None, **pruner_kwargs):
        self.kwargs = dict(final_sparsity=final_sparsity, schedule=schedule, **pruner_kwargs)
        self.total_steps = total_steps
        self.pruner: Optional[Pruner] = None
        self._restored: Optional[dict] = None  # a checkpoint's state, applied when training starts

    def on_train_start(self, trainer, pl_module) -> None:
        if len(trainer.optimizers) != 1:
            raise LthError(f"LthPruning prunes with one optimizer; configure_optimizers gave {len(trainer.optimizers)}")
        total = self.total_steps if self.total_steps is not None else trainer.estimated_stepping_batches
        if total in (None, float("inf")):
            raise LthError("LthPruning needs the number of optimizer steps: set max_steps or max_epochs, "
                           "or pass total_steps")
        self.pruner = Pruner(pl_module, trainer.optimizers[0], total_steps=int(total), grad_hooks=True,
                             state=self._restored, **self.kwargs)

    def on_train_end(self, trainer, pl_module) -> None:
        # Not finish(): a fit stopped to be resumed must not jump to the final sparsity. After
        # early stopping, call callback.pruner.finish() to end the round at its target.
        if self.pruner is not None:
            self.pruner.remove()

    def state_dict(self) -> dict:
        return self.pruner.state_dict() if self.pruner is not None else (self._restored or {})

    def load_state_dict(self, state_dict: dict) -> None:
        self._restored = state_dict or None
