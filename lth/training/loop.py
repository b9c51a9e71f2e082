"""The one training loop and the run state it advances; every side job is a callback.

IMP rounds (lth.lottery.imp), ticket copies (analysis), the dense phase of late rewinding
(lth.lottery.rewinding), structured runs (lth.structured.loop) and lth.bench all train here.

    loop = Loop(model, cfg.train, *make_loaders(dataset, cfg.train, device, 32, "crop_flip", 1, 2),
                masks=masks)
    result = fit(loop, pruning=MaskUpdater(masks, lambda t: schedules.ocp(t, 0.0, 0.9)))
    train(loop, [MyCallback()])          # the bare loop: no evaluation, no checkpoints

Each step: callbacks' before_step (the mask update when the schedule's target has risen) ->
forward under autocast -> backward -> zero pruned gradients -> optimizer step -> zero pruned
weights (only under an optimizer that could move a zero weight: `enforces_after_step`; the
others keep pruned weights zero by their arithmetic, checked once an epoch) -> callbacks'
after_step. A non-finite loss or weight stops the run before that epoch is saved
(lth.training.divergence). The mask is updated
before step k with t = k / total, and once more after the last step with t = 1, so a round
always ends at exactly its final sparsity (one-shot with start=1.0 is classic IMP: train, then
prune). Statistics stay on the device and are read once an epoch: no host sync per step.
"""
import contextlib
import itertools
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from lth.config import TrainConfig
from lth.data.datasets import Dataset
from lth.data.loader import DeviceLoader
from lth.data.streaming import make_loader
from lth.errors import LthError
from lth.training import distributed  # issue 22: data-parallel ranks
from lth.training.lr_schedules import LR_SCHEDULES
from lth.pruning.masks import Masks
from lth.training.optimizers import OPTIMIZERS
from lth.training import callbacks as cbs
from lth.training.callbacks import Callback
from lth.training.divergence import Divergence
from lth.training.retrain_lr import LrContext

log = logging.getLogger(__name__)


def total_steps(cfg: TrainConfig, train_size: int) -> int:
    """The run's budget in optimizer steps (--steps, else --epochs of full batches)."""
    if cfg.steps > 0:
        return cfg.steps
    if train_size < cfg.batch_size:
        raise LthError(f"batch size {cfg.batch_size} exceeds the {train_size} training images")
    return max(1, round(cfg.epochs * (train_size // cfg.batch_size)))


def lr_at(step: int, total: int, cfg: TrainConfig, context: Optional[LrContext] = None) -> float:
    """Learning rate for optimizer step `step` of `total` (cfg resolved): lth.training.lr_schedules.
    The retraining schedules (lth.training.retrain_lr) also read `context`, which they require."""
    entry = LR_SCHEDULES.get(cfg.lr_schedule)
    fn = entry.fn
    if entry.traits["needs_context"] is None:   # issue 20: the entry's trait (lth.training.lr_schedules)
        return fn(step / total, cfg.lr, **cfg.lr_schedule_params)
    if context is None:
        raise LthError(f"--lr-schedule {cfg.lr_schedule} retrains after pruning and needs the dense run's LR "
                       f"history: use it with --restart continue --from-run DIR")
    return fn(step / total, cfg.lr, context, **cfg.lr_schedule_params)


def momentum_at(step: int, total: int, cfg: TrainConfig) -> Optional[float]:
    """The scheduled momentum (AdamW beta1, SGD momentum) for step `step`, or None when the LR
    schedule leaves it to the optimizer (the entry's trait momentum, lth.training.lr_schedules)."""
    schedule = LR_SCHEDULES.get(cfg.lr_schedule).traits["momentum"]   # issue 20: a trait, not a side table
    return schedule(step / total, **cfg.lr_schedule_params) if schedule is not None else None


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """The configured optimizer (lth.training.optimizers). BatchNorm weights and biases (1-d parameters)
    get no weight decay unless cfg.decay_bn_bias."""
    matrices = [p for p in model.parameters() if p.dim() > 1]
    vectors = [p for p in model.parameters() if p.dim() <= 1]
    vector_decay = cfg.weight_decay if cfg.decay_bn_bias else 0.0
    groups = [{"params": matrices, "weight_decay": cfg.weight_decay},
              {"params": vectors, "weight_decay": vector_decay}]
    return OPTIMIZERS.get(cfg.optimizer).fn(groups, cfg.lr, **cfg.optimizer_params)


def autocast(device: torch.device, bf16: bool):
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def enforces_after_step(cfg: TrainConfig) -> bool:
    """Whether lth.training.loop multiplies the weights by the mask after every step: only under an
    optimizer that could move a zero weight (the entry's trait keeps_pruned_zero, lth.training.optimizers)."""
    return not OPTIMIZERS.get(cfg.optimizer).traits["keeps_pruned_zero"]   # issue 20: a trait, not a side table


def train_step(forward: Callable, optimizer: torch.optim.Optimizer, masks: Optional[Masks], x: torch.Tensor,
               y: torch.Tensor, lr: float, device: torch.device, bf16: bool, momentum: Optional[float] = None,
               enforce: bool = True):
    """One optimizer step: forward under autocast, backward, zero pruned gradients, step, zero
    pruned weights. Returns the detached loss and logits (no host sync). lth.bench times this.
    momentum: the scheduled AdamW beta1 / SGD momentum of this step (None: leave it).
    enforce: multiply the weights by the mask after the step; False only for an optimizer
    with the trait keeps_pruned_zero (lth.training.optimizers) whose pruned entries' state is zero (lth.training.loop)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
        if momentum is not None:
            if "betas" in group:
                group["betas"] = (momentum, group["betas"][1])
            else:
                group["momentum"] = momentum
    with autocast(device, bf16):
        logits = forward(x)
        loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if masks is not None:
        masks.mask_grads()
    optimizer.step()
    if masks is not None and enforce:
        masks.enforce()
    return loss.detach(), logits.detach()


@torch.inference_mode()
def evaluate(forward: Callable, model: nn.Module, loader: DeviceLoader, bf16: bool = True) -> Dict[str, float]:
    """Top-1 accuracy and mean cross-entropy over the loader, in eval mode.

    Under torchrun (issue 22) every rank must call it: rank r evaluates batches r, r + N, ... of
    the loader's fixed order (DeviceLoader.every_nth: the batches, by number, one process
    evaluates) and writes their loss sums and correct counts into one entry per batch, zeros
    elsewhere; one SUM all-reduce fills every entry (x + 0 is exact). In one process every entry
    is this process's. The loss sums are then added in batch order in float32, so the correct
    count, and the accuracy, are the single-process ones; the loss too wherever a batch's loss
    sum is (same device type and kernels), else equal up to float order within a batch."""
    sharded = distributed.active()
    batches = loader.every_nth(distributed.rank(), distributed.world_size()) if sharded else enumerate(loader)
    was_training = model.training
    model.eval()
    # on the loader's device: NCCL reduces GPU tensors, gloo CPU ones (a CPU run's device)
    loss_sums = torch.zeros(len(loader), device=loader.device)
    correct = torch.zeros(len(loader), device=loader.device, dtype=torch.long)
    with autocast(loader.device, bf16):
        for i, (x, y) in batches:
            logits = forward(x).float()
            loss_sums[i] = F.cross_entropy(logits, y, reduction="sum")
            correct[i] = (logits.argmax(1) == y).sum()
    model.train(was_training)
    if sharded:
        dist.all_reduce(loss_sums)
        dist.all_reduce(correct)
    loss_sum = torch.zeros((), device=loader.device)
    for value in loss_sums:   # batch order, float32
        loss_sum += value
    n = len(loader.y)
    return {"test_loss": loss_sum.item() / n, "test_acc": correct.sum().item() / n}


def make_loaders(dataset: Dataset, cfg: TrainConfig, device, image_size: int, augment: str,
                 order_seed: int, augment_seed: int):
    channels_last = cfg.channels_last
    # make_loader: a DeviceLoader, or the streaming loader for data on disk (issue 21, lth.data.streaming)
    train_loader = make_loader(dataset.train_x, dataset.train_y, dataset, cfg.batch_size, device, train=True,
                               augment=augment, image_size=image_size, order_seed=order_seed,
                               augment_seed=augment_seed, channels_last=channels_last,
                               shard=distributed.shard())  # issue 22: this rank's slice of each global batch
    test_loader = make_loader(dataset.test_x, dataset.test_y, dataset, cfg.eval_batch_size, device, train=False,
                              image_size=image_size, channels_last=channels_last)
    return train_loader, test_loader


def sparsity(masks: Optional[Masks]) -> float:
    return masks.sparsity() if masks is not None else 0.0


@dataclass(eq=False)
class Loop:
    """One training run's state: what `train` advances and what callbacks read and change.

    model, cfg (resolved), the loaders (make_loaders) and `total`, the run's budget in steps,
    describe the run; optimizer, step, epoch, lr and metrics are its progress. Late rewinding
    (docs/DESIGN.md §2) trains steps start_step..total-1 only, the LR at step/total as if the
    first start_step steps had run: start_loader is the training loader's state at start_step
    (DeviceLoader.state_dict(position=True) of the dense run); None with start_step > 0: the
    loader seeks start_step batches into its own data order (ticket copies with their own seeds).
    A fresh optimizer either way (OpenLTH). stop_step < total ends the run early (the dense phase
    of late rewinding stops at k without drawing batch k + 1, so the loader's position is exact).
    """
    model: nn.Module
    cfg: TrainConfig
    train_loader: Optional[DeviceLoader]    # None: batches come from outside (lth.bench's step harness)
    test_loader: Optional[DeviceLoader]
    masks: Optional[Masks] = None           # None: dense, no masks at all
    forward: Optional[Callable] = None      # the forward pass (a torch.compile'd model); default `model`
    lr_context: Optional[LrContext] = None  # what a retraining LR schedule reads (lth.training.retrain_lr)
    start_step: int = 0
    start_loader: Optional[dict] = None
    stop_step: Optional[int] = None
    # Weights stay zero by the optimizer's arithmetic where it can (lth.training.optimizers);
    # False: a callback checks the zeros each epoch (PrunedStayZero).
    enforce: Optional[bool] = None          # None: enforces_after_step(cfg)
    total: Optional[int] = None             # the budget in steps; None: total_steps(cfg, training images)
    pruning: Optional[object] = None        # the run's MaskUpdater, if it prunes while training (fit sets it)

    def __post_init__(self):
        self.device = self.train_loader.device if self.train_loader is not None else \
            next(self.model.parameters()).device
        self.set_forward(self.forward or self.model)
        if self.total is None:
            self.total = total_steps(self.cfg, len(self.train_loader.y))
        self.stop_step = self.total if self.stop_step is None else self.stop_step
        if not 0 <= self.start_step < self.total:
            raise LthError(f"start step {self.start_step} is outside the budget of {self.total} steps")
        if self.enforce is None:
            self.enforce = enforces_after_step(self.cfg)
        self.optimizer = make_optimizer(self.model, self.cfg, self.device)
        self.step, self.epoch, self.lr, self.metrics = self.start_step, 0, math.nan, []
        if self.start_loader is not None:
            self.train_loader.load_state_dict(self.start_loader)
        elif self.start_step > 0:
            self.train_loader.seek(self.start_step)

    @property
    def progress(self) -> float:
        """t: the fraction of this call's steps done (the in-round schedule spans them)."""
        return (self.step - self.start_step) / (self.total - self.start_step)

    def set_forward(self, forward: Callable) -> None:
        """The forward pass (the model or its compile); steps run it under DistributedDataParallel
        when this process is one rank of several (lth.training.distributed), evaluation as it is."""
        self.forward = forward
        self.step_forward = distributed.data_parallel(self.model, forward)

    def optimizer_step(self, x: torch.Tensor, y: torch.Tensor):
        """Step `self.step` on the batch (x, y), the LR and momentum from the schedule; returns the
        detached loss and logits (no host sync). lth.bench times exactly this."""
        self.lr = lr_at(self.step, self.total, self.cfg, self.lr_context)
        out = train_step(self.step_forward, self.optimizer, self.masks, x, y, self.lr, self.device, self.cfg.bf16,
                         momentum_at(self.step, self.total, self.cfg), enforce=self.enforce)
        self.step += 1
        return out

    def evaluate(self) -> Dict[str, float]:
        return evaluate(self.forward, self.model, self.test_loader, self.cfg.bf16)

    def rebuild_optimizer(self) -> None:
        """A fresh optimizer over the model's current parameters (after channels are removed)."""
        self.optimizer = make_optimizer(self.model, self.cfg, self.device)

    def state_dict(self, callbacks: Sequence[Callback] = ()) -> dict:
        """Everything a resumed run needs; the callbacks' states are merged in (distinct keys)."""
        state = {"step": self.step, "epoch": self.epoch, "metrics": list(self.metrics),
                 "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "masks": self.masks.state_dict() if self.masks is not None else {},
                 "loader": self.train_loader.state_dict()}
        for cb in callbacks:
            state.update(cb.state_dict())
        return state

    def load_state_dict(self, state: dict, callbacks: Sequence[Callback] = ()) -> None:
        self.model.load_state_dict(state["model"])
        if self.masks is not None:
            self.masks.load_state_dict(state["masks"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.train_loader.load_state_dict(state["loader"])
        for cb in callbacks:
            cb.load_state_dict(state)
        self.step, self.epoch, self.metrics = state["step"], state["epoch"], list(state["metrics"])


def train(loop: Loop, callbacks: Sequence[Callback] = ()) -> None:
    """The one training loop: forward, backward and the optimizer step; everything else is a
    callback (lth.training.callbacks). Advances `loop` to its stop step in place.

    Statistics stay on the device and are read once an epoch: no host sync per step.
    """
    loop.model.train()
    if loop.masks is not None:
        loop.masks.enforce()
    for cb in callbacks:
        cb.on_train_start(loop)
    while loop.step < loop.stop_step:
        line: dict = {}
        for cb in callbacks:
            cb.on_epoch_start(loop, line)
        epoch_start, seen = time.perf_counter(), 0
        lr_sum, lr_max, lr_steps = 0.0, -math.inf, 0  # the LRs actually used this epoch (metrics)
        loss_sum = torch.zeros((), device=loop.device)
        correct = torch.zeros((), device=loop.device, dtype=torch.long)
        # islice: the step after the stop is never drawn (no batch, no augmentation consumed)
        for x, y in itertools.islice(loop.train_loader, loop.stop_step - loop.step):
            for cb in callbacks:
                cb.before_step(loop)
            loss, logits = loop.optimizer_step(x, y)
            lr_sum, lr_max, lr_steps = lr_sum + loop.lr, max(lr_max, loop.lr), lr_steps + 1
            loss_sum += loss * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            for cb in callbacks:
                cb.after_step(loop, loss)
        loop.epoch += 1
        loop.metrics.append(line)
        line.update({"epoch": loop.epoch, "step": loop.step, "lr": loop.lr, "lr_max": lr_max,
                     "lr_mean": lr_sum / max(lr_steps, 1), "train_loss": loss_sum.item() / max(seen, 1),
                     "train_acc": correct.item() / max(seen, 1), "sparsity": sparsity(loop.masks),
                     "images_per_s": seen / (time.perf_counter() - epoch_start)})
        for cb in callbacks:
            cb.on_epoch_end(loop, line)
    for cb in callbacks:
        cb.on_train_end(loop)


def fit(loop: Loop, *, pruning=None, resume: Optional[dict] = None,
        save_checkpoint: Optional[Callable[[dict], None]] = None, callbacks: Sequence[Callback] = (),
        progress: bool = True, desc: str = "train") -> dict:
    """A whole training run as lth runs it: `train` with pruning while training (a MaskUpdater),
    epoch evaluation, epoch checkpoints, progress, then the final evaluation. Returns the summary
    and the metrics.

    resume: a state from `save_checkpoint` (saved after every epoch but the last) to continue.
    callbacks: more callbacks, run after lth's own at every hook and before the checkpoint.
    """
    stateful = ([cbs.Pruning(pruning)] if pruning is not None else []) + \
        ([cbs.LrContextState(loop.lr_context)] if loop.lr_context is not None else [])
    chain = [Divergence(desc), *stateful, cbs.PrunedStayZero(), cbs.EpochEval(), cbs.Progress(desc, progress),
             *callbacks]
    if save_checkpoint is not None:
        chain.append(cbs.Checkpoint(save_checkpoint, stateful))
    loop.pruning = pruning
    if resume is not None:
        loop.load_state_dict(resume, stateful)
    run_start = time.perf_counter()
    train(loop, chain)
    final = loop.evaluate()
    metrics = loop.metrics
    metrics.append({"epoch": loop.epoch, "step": loop.step, "final": True, "sparsity": sparsity(loop.masks), **final})
    # The best accuracy counts only evaluations at the round's final sparsity (the same mask
    # count gives the same float): earlier epochs were a denser network.
    best = max(m["test_acc"] for m in metrics if "test_acc" in m and m["sparsity"] == metrics[-1]["sparsity"])
    wall = time.perf_counter() - run_start
    trained = [m for m in metrics if "images_per_s" in m]
    return {"test_acc": final["test_acc"], "test_loss": final["test_loss"], "best_acc_at_final_sparsity": best,
            "train_loss": trained[-1]["train_loss"] if trained else None, "steps": loop.step, "epochs": loop.epoch,
            "steps_per_epoch": len(loop.train_loader), "wall_time_s": wall,
            "images_per_s": sum(m["images_per_s"] for m in trained) / max(len(trained), 1),
            "loader": loop.train_loader.state_dict(position=True),   # where a next phase continues the data stream
            "metrics": metrics}
