"""One structured run: train for the budget while a method (methods.py) picks channels; remove
them physically when it says so (fresh optimizer, the LR schedule continues); export.

    job = prepare(cfg, dataset, device)     # builds and checks everything; writes nothing
    summary = run(job, store)               # resumes from store's checkpoint after every epoch

The one training loop (lth.training.loop.train) does the training; this file is the callback
that runs the method's hooks around it, removes channels and keeps the epoch records.
"""
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
from torch import nn

from lth.lottery import assemble
from lth.data.datasets import Dataset
from lth.errors import LthError
from lth.pruning.channels import count, shrink
from lth.structured import export
from lth.structured.config import SCHEDULE_METHODS, StructuredRun, check_epochs
from lth.structured.context import ChannelContext
from lth.structured.methods import Method
from lth.structured.ocspruner import OcsPruner
from lth.structured.scheduled import Scheduled
from lth.structured.store import StructuredStore
from lth.training.callbacks import Callback, Progress
from lth.training.divergence import Divergence
from lth.training.loop import Loop, make_loaders, total_steps, train

log = logging.getLogger(__name__)


@dataclass
class Job:
    cfg: StructuredRun
    dataset: Dataset
    device: torch.device
    model: nn.Module
    example: torch.Tensor
    image_size: int
    train_loader: object
    test_loader: object
    epochs: int
    total: int
    ctx: Optional[ChannelContext]
    method: Method
    dense_flops: int
    dense_params: int


def build_model(cfg: StructuredRun, dataset: Dataset, device) -> nn.Module:
    return assemble.build_model(cfg.base, dataset, cfg.base.seeds.init_seed, device)


def is_text(dataset: Dataset) -> bool:
    """Token ids (issue 21: int64 (N, length) sequences), not images."""
    return dataset.train_x.dim() == 2 and not dataset.train_x.is_floating_point()


def example_input(dataset: Dataset, size: int, device) -> torch.Tensor:
    """One input for tracing and counting: a training sequence for text, a zero image otherwise."""
    if is_text(dataset):
        return dataset.train_x[:1].to(device)
    return torch.zeros(1, dataset.in_channels, size, size, device=device)


def prepare(cfg: StructuredRun, dataset: Dataset, device) -> Job:
    """Everything a run needs, checked (model fits the data, target reachable); nothing written."""
    device = torch.device(device)
    b, t = cfg.base, cfg.base.train
    dataset = dataset.to(device)
    size = assemble.image_size(b, dataset)
    model = build_model(cfg, dataset, device)
    example = example_input(dataset, size, device)
    try:
        with torch.no_grad():
            model.eval()(example)
    except (RuntimeError, IndexError) as e:
        what = "token ids" if is_text(dataset) else f"{size}x{size} images"
        raise LthError(f"model {b.model.model} cannot take {what} of {dataset.name}; "
                       f"raise --image-size or pick another model ({str(e).splitlines()[0][:100]})") from None
    model.train()
    train_loader, test_loader = make_loaders(dataset, t, device, size, b.data.augment, b.seeds.order_seed,
                                             b.seeds.augment_seed)
    total = total_steps(t, len(dataset.train_y))
    epochs = math.ceil(total / len(train_loader))
    check_epochs(cfg, epochs)
    dense_flops, dense_params = count(model, example)
    ctx, method = None, Method()
    s = cfg.structured
    if s.method != "dense":
        ctx = ChannelContext(model, example, dataset.num_classes, s)
        ctx.check_reachable(s.flops_rr)
        method = OcsPruner(ctx, s, epochs) if s.method == "ocspruner" else Scheduled(ctx, s)
        assert s.method == "ocspruner" or s.method in SCHEDULE_METHODS
    return Job(cfg, dataset, device, model, example, size, train_loader, test_loader, epochs, total, ctx, method,
               dense_flops, dense_params)


class _Run(Callback):
    """The mutable state of one run around the one training loop: the method's hooks, channel
    removal, the epoch records and checkpoints; `go` trains to the end."""

    def __init__(self, job: Job, store: StructuredStore, progress: bool):
        self.job, self.store, self.progress = job, store, progress
        self.t = job.cfg.base.train
        self.model = job.model
        self.active = True                         # the method still acts (nothing removed yet)
        self.loop = Loop(self.model, self.t, job.train_loader, job.test_loader, masks=job.method.masks,
                         forward=self._compiled(), enforce=True)
        self.removed: Optional[Dict[str, List[int]]] = None   # root layer -> removed channels
        self.pruned_epoch: Optional[int] = None
        self.prune_eval: dict = {}
        self.method_summary: dict = {}             # the method's summary, frozen when it stops acting
        self.records: List[dict] = []
        self.record: dict = {}

    @property
    def step(self) -> int:
        return self.loop.step

    def _compiled(self) -> Callable:
        return torch.compile(self.model) if self.t.compile else self.model

    def _format(self) -> None:
        if self.t.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def _shrunk(self) -> None:
        """After channels are removed: the method stops acting; fresh optimizer and forward."""
        self._format()
        self.active = False
        self.loop.masks = None
        self.loop.rebuild_optimizer()              # momentum reset, as OCSPruner
        self.loop.set_forward(self._compiled())

    def remove(self, pruned) -> None:
        """Remove the channels physically and continue with a fresh optimizer."""
        job = self.job
        self.removed = job.ctx.groups.by_name(pruned)
        shrink(self.model, self.removed, job.example)
        self._shrunk()
        flops, params = count(self.model, job.example)
        log.info("removed %d channels: %.2f -> %.2f MFLOPs (reduction %.4f), %d -> %d parameters",
                 sum(map(len, self.removed.values())), job.dense_flops / 1e6, flops / 1e6,
                 1 - flops / job.dense_flops, job.dense_params, params)

    # ---- resume ------------------------------------------------------------------------
    def resume(self, state: dict) -> None:
        job, loop = self.job, self.loop
        if state["removed"] is not None:
            self.removed = {k: list(v) for k, v in state["removed"].items()}
            shrink(self.model, self.removed, job.example)
            self._shrunk()
        self.model.load_state_dict(state["model"])
        if self.active:
            job.method.load_state_dict(state["method"])
        loop.optimizer.load_state_dict(state["optimizer"])
        job.train_loader.load_state_dict(state["loader"])
        loop.step, loop.epoch, self.records = state["step"], state["epoch"], list(state["records"])
        self.pruned_epoch, self.prune_eval = state["pruned_epoch"], dict(state["prune_eval"])
        self.method_summary = dict(state["method_summary"])
        log.info("resuming after epoch %d", loop.epoch)

    def checkpoint(self) -> None:
        loop = self.loop
        self.store.save_checkpoint({
            "step": loop.step, "epoch": loop.epoch, "records": self.records, "removed": self.removed,
            "model": self.model.state_dict(), "optimizer": loop.optimizer.state_dict(),
            "loader": self.job.train_loader.state_dict(), "method": self.job.method.state_dict() if self.active else {},
            "pruned_epoch": self.pruned_epoch, "prune_eval": self.prune_eval, "method_summary": self.method_summary})

    # ---- the method around the loop (Callback hooks) -------------------------------------
    def _prune_now(self, pruned, epoch: int) -> dict:
        before = self.loop.evaluate()["test_acc"]
        self.method_summary = self.job.method.summary()
        self.remove(pruned)
        after = self.loop.evaluate()["test_acc"]
        self.pruned_epoch = epoch
        self.prune_eval = {"acc_before_prune": before, "acc_after_prune": after}
        return {"pruned_now": True, **self.prune_eval}

    def on_epoch_start(self, loop, line: dict) -> None:
        epoch, method = loop.epoch, self.job.method
        self.record = {"epoch": epoch}
        if self.active and method.prune_due(epoch):
            self.record.update(self._prune_now(method.selection(), epoch))
        if self.active:
            self.record.update(method.begin_epoch(epoch))

    def before_step(self, loop) -> None:
        if self.active:
            self.job.method.before_step(loop.step, loop.total, loop.optimizer)

    def after_step(self, loop, loss) -> None:
        if self.active:
            self.job.method.after_step(loop.lr)

    def on_epoch_end(self, loop, line: dict) -> None:
        job, record, epoch = self.job, self.record, loop.epoch - 1
        record.update({k: line[k] for k in ("step", "lr", "train_loss", "train_acc", "images_per_s")})
        if self.t.eval_every and loop.epoch % self.t.eval_every == 0:
            record.update(loop.evaluate())
        if self.active:
            record.update(job.method.end_epoch(epoch))
        self.records.append(record)
        self.store.write_epochs(self.records)
        log.info("epoch %d (%d/%d): loss %.4f, train acc %.4f%s%s", epoch, loop.epoch, job.epochs, record["train_loss"],
                 record["train_acc"], f", test acc {record['test_acc']:.4f}" if "test_acc" in record else "",
                 f", psi {record['psi']:.4f}, lambda {record['lambda']:.1e}" if "psi" in record else "")
        if loop.epoch < job.epochs:
            self.checkpoint()

    def go(self) -> None:
        job = self.job
        train(self.loop, [Divergence("structured run"), self,
                          Progress(job.cfg.structured.method, self.progress, log_epochs=False)])
        if self.active:
            final = job.method.final_selection()
            if final is not None:
                self.records[-1].update(self._prune_now(final, job.epochs))
                self.store.write_epochs(self.records)


def run(job: Job, store: StructuredStore, progress: bool = True) -> dict:
    """Train (or finish) the run in `store`; export; write summary.json last. Returns it."""
    started = time.perf_counter()
    state = _Run(job, store, progress)
    saved = store.load_checkpoint()
    if saved is not None:
        state.resume(saved)
    state.go()
    final = state.loop.evaluate()
    return _finish(job, store, state, final, time.perf_counter() - started)


def _finish(job: Job, store: StructuredStore, state: _Run, final: dict, wall: float) -> dict:
    cfg, model = job.cfg, state.model
    b = cfg.base
    groups = {}
    if job.ctx is not None:
        removed = state.removed or {}
        for g in job.ctx.groups.groups:
            gone = set(removed.get(g.name, []))
            groups[g.name] = {"size": g.size, "kept": [i for i in range(g.size) if i not in gone]}
    text = is_text(job.dataset)
    export.save(store.export_path, model, b.model.model, job.dataset.num_classes, job.dataset.in_channels,
                job.image_size, groups, text_length=job.example.shape[1] if text else 0)
    reloaded = export.load(store.export_path)
    x = next(iter(job.test_loader))[0][:8].cpu()
    x = x.float() if x.is_floating_point() else x
    with torch.inference_mode():
        was = model.training
        model.eval()
        diff = (reloaded(x) - model.cpu()(x)).abs().max().item()
        model.to(job.device).train(was)
    dense = assemble.build_model(b, job.dataset, b.seeds.init_seed, "cpu")
    shape = (job.example.shape[1],) if text else (job.dataset.in_channels, job.image_size, job.image_size)
    s = cfg.structured
    times = export.latency({"dense": dense, "pruned": reloaded}, shape, s.latency_batches, s.latency_repeats,
                           channels_last=b.train.channels_last and not text,
                           vocab=int(job.dataset.train_x.max()) + 1 if text else 0)
    flops, params = count(reloaded, job.example.cpu())
    trained = [r for r in state.records if "images_per_s" in r]
    summary = {
        "method": s.method, "target_flops_rr": s.flops_rr if s.method != "dense" else 0.0,
        "test_acc": final["test_acc"], "test_loss": final["test_loss"],
        "best_test_acc": max([r.get("test_acc", 0.0) for r in state.records] + [final["test_acc"]]),
        "dense_flops": job.dense_flops, "dense_params": job.dense_params, "flops": flops, "params": params,
        "flops_rr": 1 - flops / job.dense_flops, "params_rr": 1 - params / job.dense_params,
        "pruned_epoch": state.pruned_epoch, **state.prune_eval,
        **(job.method.summary() if state.active else state.method_summary),
        "kept": {n: len(g["kept"]) for n, g in groups.items()},
        "sizes": {n: g["size"] for n, g in groups.items()},
        "export_max_abs_diff": diff, "latency_ms": times, "latency_threads": torch.get_num_threads(),
        "epochs": job.epochs, "steps": state.step, "wall_time_s": wall,
        "images_per_s": sum(r["images_per_s"] for r in trained) / max(len(trained), 1)}
    store.finish(summary)
    return summary
