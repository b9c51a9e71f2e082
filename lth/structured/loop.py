"""One structured run: train for the budget while a method (methods.py) picks channels; remove
them physically when it says so (fresh optimizer, the LR schedule continues); export.

    job = prepare(cfg, dataset, device)     # builds and checks everything; writes nothing
    summary = run(job, store)               # resumes from store's checkpoint after every epoch

The pieces of lth.train do the work (make_loaders, make_optimizer, lr_at, train_step,
evaluate, total_steps); this file only orders them around the method's hooks.
"""
import logging
import math
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
from torch import nn
from tqdm import tqdm

from lth import assemble
from lth.data import Dataset
from lth.divergence import DivergenceWatch
from lth.errors import LthError
from lth.pruning.channels import count, shrink
from lth.structured import export
from lth.structured.config import SCHEDULE_METHODS, StructuredRun, check_epochs
from lth.structured.context import ChannelContext
from lth.structured.methods import Method
from lth.structured.ocspruner import OcsPruner
from lth.structured.scheduled import Scheduled
from lth.structured.store import StructuredStore
from lth.train import evaluate, lr_at, make_loaders, make_optimizer, momentum_at, total_steps, train_step

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


def prepare(cfg: StructuredRun, dataset: Dataset, device) -> Job:
    """Everything a run needs, checked (model fits the data, target reachable); nothing written."""
    device = torch.device(device)
    b, t = cfg.base, cfg.base.train
    dataset = dataset.to(device)
    size = assemble.image_size(b, dataset)
    model = build_model(cfg, dataset, device)
    example = torch.zeros(1, dataset.in_channels, size, size, device=device)
    try:
        with torch.no_grad():
            model.eval()(example)
    except RuntimeError as e:
        raise LthError(f"model {b.model.model} cannot take {size}x{size} images of {dataset.name}; "
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


class _Run:
    """The mutable state of one run; `go` trains to the end."""

    def __init__(self, job: Job, store: StructuredStore, progress: bool):
        self.job, self.store, self.progress = job, store, progress
        self.t = job.cfg.base.train
        self.model = job.model
        self.optimizer = make_optimizer(self.model, self.t, job.device)
        self.forward: Callable = self._compiled()
        self.active = True                         # the method still acts (nothing removed yet)
        self.removed: Optional[Dict[str, List[int]]] = None   # root layer -> removed channels
        self.pruned_epoch: Optional[int] = None
        self.prune_eval: dict = {}
        self.method_summary: dict = {}             # the method's summary, frozen when it stops acting
        self.step, self.epoch, self.records = 0, 0, []
        self.watch = DivergenceWatch(job.device)

    def _compiled(self) -> Callable:
        return torch.compile(self.model) if self.t.compile else self.model

    def _format(self) -> None:
        if self.t.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def remove(self, pruned) -> None:
        """Remove the channels physically and continue with a fresh optimizer."""
        job = self.job
        self.removed = job.ctx.groups.by_name(pruned)
        shrink(self.model, self.removed, job.example)
        self._format()
        self.optimizer = make_optimizer(self.model, self.t, job.device)   # momentum reset, as OCSPruner
        self.forward = self._compiled()
        self.active = False
        flops, params = count(self.model, job.example)
        log.info("removed %d channels: %.2f -> %.2f MFLOPs (reduction %.4f), %d -> %d parameters",
                 sum(map(len, self.removed.values())), job.dense_flops / 1e6, flops / 1e6,
                 1 - flops / job.dense_flops, job.dense_params, params)

    # ---- resume ------------------------------------------------------------------------
    def resume(self, state: dict) -> None:
        job = self.job
        if state["removed"] is not None:
            self.removed = {k: list(v) for k, v in state["removed"].items()}
            shrink(self.model, self.removed, job.example)
            self._format()
            self.active = False
        self.model.load_state_dict(state["model"])
        if self.active:
            job.method.load_state_dict(state["method"])
        self.optimizer = make_optimizer(self.model, self.t, job.device)
        self.optimizer.load_state_dict(state["optimizer"])
        self.forward = self._compiled()
        job.train_loader.load_state_dict(state["loader"])
        self.step, self.epoch, self.records = state["step"], state["epoch"], list(state["records"])
        self.pruned_epoch, self.prune_eval = state["pruned_epoch"], dict(state["prune_eval"])
        self.method_summary = dict(state["method_summary"])
        log.info("resuming after epoch %d", self.epoch)

    def checkpoint(self) -> None:
        self.store.save_checkpoint({
            "step": self.step, "epoch": self.epoch, "records": self.records, "removed": self.removed,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "loader": self.job.train_loader.state_dict(), "method": self.job.method.state_dict() if self.active else {},
            "pruned_epoch": self.pruned_epoch, "prune_eval": self.prune_eval, "method_summary": self.method_summary})

    # ---- training ----------------------------------------------------------------------
    def _evaluate(self) -> dict:
        return evaluate(self.forward, self.model, self.job.test_loader, self.t.bf16)

    def _prune_now(self, pruned, epoch: int) -> dict:
        before = self._evaluate()["test_acc"]
        self.method_summary = self.job.method.summary()
        self.remove(pruned)
        after = self._evaluate()["test_acc"]
        self.pruned_epoch = epoch
        self.prune_eval = {"acc_before_prune": before, "acc_after_prune": after}
        return {"pruned_now": True, **self.prune_eval}

    def train_epoch(self, epoch: int, bar) -> dict:
        job, method = self.job, self.job.method
        record = {"epoch": epoch}
        if self.active and method.prune_due(epoch):
            record.update(self._prune_now(method.selection(), epoch))
        if self.active:
            record.update(method.begin_epoch(epoch))
        started, seen = time.perf_counter(), 0
        loss_sum = torch.zeros((), device=job.device)
        correct = torch.zeros((), device=job.device, dtype=torch.long)
        lr = lr_at(min(self.step, job.total - 1), job.total, self.t)
        for x, y in job.train_loader:
            if self.step >= job.total:
                break
            if self.active:
                method.before_step(self.step, job.total, self.optimizer)
            lr = lr_at(self.step, job.total, self.t)
            loss, logits = train_step(self.forward, self.optimizer, method.masks if self.active else None,
                                      x, y, lr, job.device, self.t.bf16, momentum_at(self.step, job.total, self.t))
            if self.active:
                method.after_step(lr)
            self.watch.observe(loss, self.step)
            loss_sum += loss * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            self.step += 1
            bar.update(1)
        self.watch.check(self.model, "structured run", epoch + 1, self.step)  # before this epoch is saved
        record.update({"step": self.step, "lr": lr, "train_loss": loss_sum.item() / max(seen, 1),
                       "train_acc": correct.item() / max(seen, 1),
                       "images_per_s": seen / (time.perf_counter() - started)})
        if self.t.eval_every and (epoch + 1) % self.t.eval_every == 0:
            record.update(self._evaluate())
        if self.active:
            record.update(method.end_epoch(epoch))
        return record

    def go(self) -> None:
        job = self.job
        bar = tqdm(total=job.total, initial=self.step, unit="step", leave=False,
                   desc=job.cfg.structured.method, disable=not (self.progress and sys.stderr.isatty()))
        for epoch in range(self.epoch, job.epochs):
            record = self.train_epoch(epoch, bar)
            self.records.append(record)
            self.epoch = epoch + 1
            self.store.write_epochs(self.records)
            log.info("epoch %d (%d/%d): loss %.4f, train acc %.4f%s%s", epoch, epoch + 1, job.epochs, record["train_loss"],
                     record["train_acc"], f", test acc {record['test_acc']:.4f}" if "test_acc" in record else "",
                     f", psi {record['psi']:.4f}, lambda {record['lambda']:.1e}" if "psi" in record else "")
            if self.epoch < job.epochs:
                self.checkpoint()
        bar.close()
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
    final = state._evaluate()
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
    export.save(store.export_path, model, b.model.model, job.dataset.num_classes, job.dataset.in_channels,
                job.image_size, groups)
    reloaded = export.load(store.export_path)
    x = next(iter(job.test_loader))[0][:8].float().cpu()
    with torch.inference_mode():
        was = model.training
        model.eval()
        diff = (reloaded(x) - model.cpu()(x)).abs().max().item()
        model.to(job.device).train(was)
    dense = assemble.build_model(b, job.dataset, b.seeds.init_seed, "cpu")
    shape = (job.dataset.in_channels, job.image_size, job.image_size)
    s = cfg.structured
    times = export.latency({"dense": dense, "pruned": reloaded}, shape, s.latency_batches, s.latency_repeats,
                           channels_last=b.train.channels_last)
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
