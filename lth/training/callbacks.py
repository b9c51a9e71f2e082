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
    on_epoch_start(loop, line)      line: this epoch's metrics dict, empty so far
    before_step(loop)               before each optimizer step: loop.step is the step about to run
    after_step(loop, loss)          after it (loss: a 0-d device tensor; reading it syncs the device)
    on_epoch_end(loop, line)        line (already in loop.metrics) holds the epoch's statistics;
                                    a callback may extend it
    on_train_end(loop)              after the last step, before the final evaluation
Callbacks run in list order at every hook. A callback that keeps state across a resume returns
it from `state_dict()` (a dict of tensors and plain values, merged into the epoch checkpoint:
its keys must be its own) and takes it back from the whole checkpoint in `load_state_dict()`.

The callbacks every lth run uses are below; `lth.training.loop.fit` assembles them.
"""
import logging
import sys
from typing import Callable, Sequence

from tqdm import tqdm

from lth.errors import LthError

log = logging.getLogger(__name__)


class Callback:
    """Base class: every hook does nothing, so a callback overrides only what it needs."""

    def on_train_start(self, loop) -> None:
        pass

    def on_epoch_start(self, loop, line: dict) -> None:
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


class Pruning(Callback):
    """Pruning while training (docs/DESIGN.md §2): the MaskUpdater before every step it is due
    at, with t the progress through the loop's steps, and once more at t = 1 after the last."""

    def __init__(self, updater):
        self.updater = updater   # lth.pruning.MaskUpdater

    def before_step(self, loop) -> None:
        if self.updater.due(loop.step - loop.start_step):
            self.updater.update(loop.progress, loop.optimizer)

    def on_train_end(self, loop) -> None:
        self.updater.update(1.0, loop.optimizer)

    def state_dict(self) -> dict:
        return self.updater.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.updater.load_state_dict(state)


class LrContextState(Callback):
    """Checkpoints a retraining phase's LR context (lth.training.retrain_lr.LrContext)."""

    def __init__(self, context):
        self.context = context

    def state_dict(self) -> dict:
        return {"lr_context": self.context.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.context.load_state_dict(state["lr_context"])


class PrunedStayZero(Callback):
    """Where the loop skips the weight multiply after each step (an optimizer that keeps zeros
    zero: the trait keeps_pruned_zero, lth.training.optimizers), check the pruned weights once an epoch."""

    def on_epoch_end(self, loop, line: dict) -> None:
        if loop.masks is not None and not loop.enforce and not loop.masks.pruned_are_zero():
            raise LthError(f"pruned weights moved off zero under optimizer {loop.cfg.optimizer!r} in epoch "
                           f"{loop.epoch}; its registry entry must not declare keeps_pruned_zero")


class EpochEval(Callback):
    """Test accuracy every `eval_every` epochs, except after the last (the final evaluation
    follows it)."""

    def on_epoch_end(self, loop, line: dict) -> None:
        every = loop.cfg.eval_every
        if every and loop.epoch % every == 0 and loop.step < loop.total:
            line.update(loop.evaluate())


class Progress(Callback):
    """A progress bar on a terminal; an INFO line per epoch otherwise (logs of batch jobs),
    unless `log_epochs` is False (a caller that logs its own epoch lines)."""

    def __init__(self, desc: str = "train", enabled: bool = True, log_epochs: bool = True):
        self.desc, self.enabled, self.log_epochs, self.bar = desc, enabled, log_epochs, None

    def on_train_start(self, loop) -> None:
        self.bar = tqdm(total=loop.total, initial=loop.step, desc=self.desc, unit="step", leave=False,
                        disable=not (self.enabled and sys.stderr.isatty()))

    def after_step(self, loop, loss) -> None:
        self.bar.update(1)

    def on_epoch_end(self, loop, line: dict) -> None:
        self.bar.set_postfix(loss=f"{line['train_loss']:.3f}", acc=f"{line.get('test_acc', line['train_acc']):.3f}",
                             sparsity=f"{line['sparsity']:.3f}", img_s=f"{line['images_per_s']:.0f}")
        if self.bar.disable and self.enabled and self.log_epochs:
            log.info("%s epoch %d (%d/%d steps): loss %.4f, train acc %.4f%s, sparsity %.4f, %.0f img/s",
                     self.desc, loop.epoch, loop.step, loop.total, line["train_loss"], line["train_acc"],
                     f", test acc {line['test_acc']:.4f}" if "test_acc" in line else "", line["sparsity"],
                     line["images_per_s"])

    def on_train_end(self, loop) -> None:
        self.bar.close()


class Checkpoint(Callback):
    """After every epoch but the last: `save(state)` with the loop's state and that of the
    stateful callbacks (resume: Loop.load_state_dict with the same callbacks)."""

    def __init__(self, save: Callable[[dict], None], stateful: Sequence[Callback] = ()):
        self.save, self.stateful = save, list(stateful)

    def on_epoch_end(self, loop, line: dict) -> None:
        if loop.step < loop.total:
            self.save(loop.state_dict(self.stateful))


class StepProbe(Callback):
    """fn(step, model, masks) after every optimizer step (tests, lth.bench's trajectory gap)."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def after_step(self, loop, loss) -> None:
        self.fn(loop.step, loop.model, loop.masks)
