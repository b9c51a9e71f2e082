"""Callbacks: what happens around the one training loop (lth.training.loop.train).

The loop owns only forward, backward and the optimizer step. Everything else a run does is a
callback: pruning while training, the LR context of a retraining phase, evaluation, epoch
checkpoints, metric loggers (TensorBoard, W&B, MLflow), distributed checks, test probes.

    class PrintLoss(Callback):
        def on_epoch_end(self, loop, line):
            log.info("epoch %d: %.3f", loop.epoch, line["train_loss"])

    train(model, masks, dataset, cfg, ..., callbacks=[PrintLoss()])

Hooks, in the order the loop calls them (each gets the `Loop` state, lth.training.loop):
    on_train_start(loop)            after the optimizer exists and any resume state is loaded
    before_step(loop)               before each optimizer step: loop.step is the step about to run
    after_step(loop, loss)          after it (loss: a 0-d device tensor; reading it syncs the device)
    on_epoch_end(loop, line)        line: the epoch's metrics dict, which a callback may extend
    on_train_end(loop)              after the last step, before the final evaluation
A callback that keeps state across a resume returns it from `state_dict()` (a dict of tensors
and plain values, saved in the epoch checkpoint under its `key`) and takes it back in
`load_state_dict()`.
"""
from typing import Optional


class Callback:
    """Base class: every hook does nothing, so a callback overrides only what it needs."""

    key: Optional[str] = None  # the checkpoint entry of a stateful callback (None: no state)

    def on_train_start(self, loop) -> None:
        pass

    def before_step(self, loop) -> None:
        pass

    def after_step(self, loop, loss) -> None:
        pass

    def on_epoch_end(self, loop, line: dict) -> None:
        pass

    def on_train_end(self, loop) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
