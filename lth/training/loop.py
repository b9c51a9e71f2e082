"""One training run: LR schedule, pruning while training, mask enforcement, evaluation, metrics.

The IMP driver (lth.lottery.imp) and the stability analysis (analysis.stability) both call `train`.

    result = train(model, masks, dataset, cfg.train, device=device, image_size=32,
                   augment="crop_flip", order_seed=1, augment_seed=2,
                   pruning=MaskUpdater(masks, lambda t: schedules.ocp(t, 0.0, 0.9)))

Each step: (mask update when the schedule's target has risen) -> forward under autocast ->
backward -> zero pruned gradients -> optimizer step -> zero pruned weights. The mask is updated
before step k with t = k / total, and once more after the last step with t = 1, so a round
always ends at exactly its final sparsity (one-shot with start=1.0 is classic IMP: train, then
prune). Statistics stay on the device and are read once an epoch: no host sync per step.
"""
import contextlib
import logging
import math
import sys
import time
from types import SimpleNamespace
from typing import Callable, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lth.config import TrainConfig
from lth.data.datasets import Dataset
from lth.data.loader import DeviceLoader
from lth.errors import LthError
from lth.training.lr_schedules import LR_SCHEDULES, MOMENTUM_SCHEDULES
from lth.pruning.masks import Masks
from lth.training.optimizers import KEEPS_PRUNED_ZERO, OPTIMIZERS
from lth.pruning import MaskUpdater
from lth.training.retrain_lr import LrContext, context_needs
from lth.training.callbacks import Callback

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
    fn = LR_SCHEDULES.get(cfg.lr_schedule).fn
    if context_needs(fn) is None:
        return fn(step / total, cfg.lr, **cfg.lr_schedule_params)
    if context is None:
        raise LthError(f"--lr-schedule {cfg.lr_schedule} retrains after pruning and needs the dense run's LR "
                       f"history: use it with --restart continue --from-run DIR")
    return fn(step / total, cfg.lr, context, **cfg.lr_schedule_params)


def momentum_at(step: int, total: int, cfg: TrainConfig) -> Optional[float]:
    """The scheduled momentum (AdamW beta1, SGD momentum) for step `step`, or None when the LR
    schedule leaves it to the optimizer (lth.training.lr_schedules.MOMENTUM_SCHEDULES)."""
    schedule = MOMENTUM_SCHEDULES.get(cfg.lr_schedule)
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


def pick_device(name: str) -> torch.device:
    """`auto` (CUDA when present), cpu, cuda or cuda:N, with a one-line error otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LthError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise LthError(f"device {name}: lth runs on cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LthError(f"device {name} requested but CUDA is not available here; use --device cpu")
    return device


def set_threads(threads: int) -> int:
    """Set this process's CPU intra-op threads (0: leave torch's default, one per core);
    returns the number in use. lth.execute and analysis.stability call it first."""
    if threads < 0:
        raise LthError(f"--threads must be >= 0 (0: torch's default), got {threads}")
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def autocast(device: torch.device, bf16: bool):
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def enforces_after_step(cfg: TrainConfig) -> bool:
    """Whether lth.training.loop multiplies the weights by the mask after every step: only under an
    optimizer that could move a zero weight (lth.training.optimizers.KEEPS_PRUNED_ZERO)."""
    return cfg.optimizer not in KEEPS_PRUNED_ZERO


def train_step(forward: Callable, optimizer: torch.optim.Optimizer, masks: Optional[Masks], x: torch.Tensor,
               y: torch.Tensor, lr: float, device: torch.device, bf16: bool, momentum: Optional[float] = None,
               enforce: bool = True):
    """One optimizer step: forward under autocast, backward, zero pruned gradients, step, zero
    pruned weights. Returns the detached loss and logits (no host sync). lth.bench times this.
    momentum: the scheduled AdamW beta1 / SGD momentum of this step (None: leave it).
    enforce: multiply the weights by the mask after the step; False only for an optimizer in
    lth.training.optimizers.KEEPS_PRUNED_ZERO whose pruned entries' state is zero (lth.training.loop)."""
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
    """Top-1 accuracy and mean cross-entropy over the loader, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device, dtype=torch.long)
    with autocast(loader.device, bf16):
        for x, y in loader:
            logits = forward(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    n = len(loader.y)
    return {"test_loss": loss_sum.item() / n, "test_acc": correct.item() / n}


def make_loaders(dataset: Dataset, cfg: TrainConfig, device, image_size: int, augment: str,
                 order_seed: int, augment_seed: int):
    channels_last = cfg.channels_last
    train_loader = DeviceLoader(dataset.train_x, dataset.train_y, dataset, cfg.batch_size, device, train=True,
                                augment=augment, image_size=image_size, order_seed=order_seed,
                                augment_seed=augment_seed, channels_last=channels_last)
    test_loader = DeviceLoader(dataset.test_x, dataset.test_y, dataset, cfg.eval_batch_size, device, train=False,
                               image_size=image_size, channels_last=channels_last)
    return train_loader, test_loader


def sparsity(masks: Optional[Masks]) -> float:
    return masks.sparsity() if masks is not None else 0.0


def train(model: nn.Module, masks: Optional[Masks], dataset: Dataset, cfg: TrainConfig, *, device, image_size: int,
          augment: str, order_seed: int, augment_seed: int, pruning: Optional[MaskUpdater] = None,
          forward: Optional[Callable] = None, resume: Optional[dict] = None,
          save_checkpoint: Optional[Callable[[dict], None]] = None,
          after_step: Optional[Callable[[int, nn.Module, Masks], None]] = None,
          start_step: int = 0, start_loader: Optional[dict] = None,
          lr_context: Optional[LrContext] = None, progress: bool = True, desc: str = "train",
          callbacks: Sequence[Callback] = ()) -> dict:
    """Train `model` in place under `masks` (cfg resolved; None: dense, no masks at all, the
    baseline lth.bench prune compares against). Returns the summary and metrics.

    forward: the callable for the forward pass (a torch.compile'd model), default `model`.
    resume: a state from `save_checkpoint` (saved after every epoch but the last) to continue.
    after_step(step, model, masks): called after each optimizer step (tests).
    start_step: late rewinding (docs/DESIGN.md §2): train steps start_step..total-1 only, the LR
    at step/total as if the first start_step steps had run, the schedule's progress
    t = (step - start_step) / (total - start_step). A fresh optimizer either way (OpenLTH).
    start_loader: the training loader's state at start_step (DeviceLoader.state_dict(position=True)
    of the dense run); None with start_step > 0: the loader seeks start_step batches into its own
    data order (ticket copies with their own seeds).
    lr_context: what a retraining LR schedule reads (lth.training.retrain_lr); checkpointed with the rest.
    callbacks: lth.training.callbacks.Callback objects (loggers: lth.training.loggers), called with
    the loop's state (`loop`: model, optimizer, masks, step, epoch, total, start_step, ...).
    """
    device = torch.device(device)
    forward = forward or model
    train_loader, test_loader = make_loaders(dataset, cfg, device, image_size, augment, order_seed, augment_seed)
    total = total_steps(cfg, len(dataset.train_y))
    steps_per_epoch = len(train_loader)
    optimizer = make_optimizer(model, cfg, device)
    step, epoch, metrics = start_step, 0, []
    window = total - start_step  # the steps this call trains; the in-round schedule spans them
    if not 0 <= start_step < total:
        raise LthError(f"start step {start_step} is outside the budget of {total} steps")
    if resume is None and start_loader is not None:
        train_loader.load_state_dict(start_loader)
    elif resume is None and start_step > 0:
        train_loader.seek(start_step)
    if resume is not None:
        model.load_state_dict(resume["model"])
        if masks is not None:
            masks.load_state_dict(resume["masks"])
        optimizer.load_state_dict(resume["optimizer"])
        train_loader.load_state_dict(resume["loader"])
        if pruning is not None:
            pruning.load_state_dict(resume)
        if lr_context is not None:
            lr_context.load_state_dict(resume["lr_context"])
        step, epoch = resume["step"], resume["epoch"]
        metrics = list(resume["metrics"])

    model.train()
    if masks is not None:
        masks.enforce()
    # issue 23 (callbacks): the loop's state as the hooks see it; step and epoch kept current below
    loop = SimpleNamespace(model=model, optimizer=optimizer, masks=masks, step=step, epoch=epoch, total=total,
                           start_step=start_step, train_loader=train_loader, device=device, metrics=metrics, cfg=cfg)
    for cb in callbacks:
        cb.on_train_start(loop)
    # Weights stay zero by the optimizer's arithmetic where it can (lth.training.optimizers), checked each epoch.
    enforce_each_step = enforces_after_step(cfg)
    bar = tqdm(total=total, initial=step, desc=desc, unit="step", leave=False,
               disable=not (progress and sys.stderr.isatty()))
    run_start = time.perf_counter()
    while step < total:
        epoch_start, seen = time.perf_counter(), 0
        lr_sum, lr_max, lr_steps = 0.0, -math.inf, 0  # the LRs actually used this epoch (metrics)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for x, y in train_loader:
            if step >= total:
                break
            if pruning is not None and pruning.due(step - start_step):
                pruning.update((step - start_step) / window, optimizer)
            lr = lr_at(step, total, cfg, lr_context)
            loop.step, loop.lr = step, lr
            for cb in callbacks:
                cb.before_step(loop)
            lr_sum, lr_max, lr_steps = lr_sum + lr, max(lr_max, lr), lr_steps + 1
            loss, logits = train_step(forward, optimizer, masks, x, y, lr, device, cfg.bf16,
                                      momentum_at(step, total, cfg), enforce=enforce_each_step)
            loss_sum += loss * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            step += 1
            bar.update(1)
            if after_step is not None:
                after_step(step, model, masks)
            loop.step = step
            for cb in callbacks:
                cb.after_step(loop, loss)
        epoch += 1
        loop.epoch = epoch
        if masks is not None and not enforce_each_step and not masks.pruned_are_zero():
            raise LthError(f"pruned weights moved off zero under optimizer {cfg.optimizer!r} in epoch {epoch}; "
                           "lth.training.optimizers.KEEPS_PRUNED_ZERO must not list it")
        line = {"epoch": epoch, "step": step, "lr": lr, "lr_max": lr_max, "lr_mean": lr_sum / max(lr_steps, 1),
                "train_loss": loss_sum.item() / max(seen, 1),
                "train_acc": correct.item() / max(seen, 1), "sparsity": sparsity(masks),
                "images_per_s": seen / (time.perf_counter() - epoch_start)}
        last = step >= total
        if not last and cfg.eval_every and epoch % cfg.eval_every == 0:
            line.update(evaluate(forward, model, test_loader, cfg.bf16))
        for cb in callbacks:
            cb.on_epoch_end(loop, line)
        metrics.append(line)
        bar.set_postfix(loss=f"{line['train_loss']:.3f}", acc=f"{line.get('test_acc', line['train_acc']):.3f}",
                        sparsity=f"{line['sparsity']:.3f}", img_s=f"{line['images_per_s']:.0f}")
        if bar.disable and progress:
            log.info("%s epoch %d (%d/%d steps): loss %.4f, train acc %.4f%s, sparsity %.4f, %.0f img/s",
                     desc, epoch, step, total, line["train_loss"], line["train_acc"],
                     f", test acc {line['test_acc']:.4f}" if "test_acc" in line else "", line["sparsity"],
                     line["images_per_s"])
        if save_checkpoint is not None and not last:
            state = {"step": step, "epoch": epoch, "metrics": list(metrics),
                     "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "masks": masks.state_dict() if masks is not None else {}, "loader": train_loader.state_dict(),
                     **(pruning.state_dict() if pruning is not None else {"pruned_target": -1.0})}
            if lr_context is not None:
                state["lr_context"] = lr_context.state_dict()
            save_checkpoint(state)
    bar.close()
    if pruning is not None:
        pruning.update(1.0, optimizer)
    loop.step = step
    for cb in callbacks:
        cb.on_train_end(loop)  # after the final mask update (t = 1), before the final evaluation
    final = evaluate(forward, model, test_loader, cfg.bf16)
    metrics.append({"epoch": epoch, "step": step, "final": True, "sparsity": sparsity(masks), **final})
    # The best accuracy counts only evaluations at the round's final sparsity (the same mask
    # count gives the same float): earlier epochs were a denser network.
    best = max(m["test_acc"] for m in metrics if "test_acc" in m and m["sparsity"] == metrics[-1]["sparsity"])
    wall = time.perf_counter() - run_start
    trained = [m for m in metrics if "images_per_s" in m]
    return {"test_acc": final["test_acc"], "test_loss": final["test_loss"], "best_acc_at_final_sparsity": best,
            "train_loss": trained[-1]["train_loss"] if trained else None, "steps": step, "epochs": epoch,
            "steps_per_epoch": steps_per_epoch, "wall_time_s": wall,
            "images_per_s": sum(m["images_per_s"] for m in trained) / max(len(trained), 1),
            "metrics": metrics}
