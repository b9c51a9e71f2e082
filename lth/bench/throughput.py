"""`python -m lth.bench train`: training images/s and peak memory, and the cost of an interpolation sweep.

Training rows (end to end: lth's DeviceLoader + lth's training step, timed in blocks):
  dense / masked 90 %   x   eager / torch.compile   x   fp32 / bf16 autocast (CUDA only)
and a naive baseline written the way most research code is: torchvision DataLoader with CPU
transforms (2 workers, as in PyTorch's CIFAR tutorial), fp32, eager, masks through
torch.nn.utils.prune.l1_unstructured (forward hooks), the default torch.optim.AdamW, batches
moved with .to(device), and loss.item() every step for the running loss (a host sync: part of
the baseline, deliberately).
Interpolation sweep: 31 alphas between two networks, torch._foreach_lerp_ into a probe model,
evaluation of the test split with lth.training.loop.evaluate, with and without recomputing BatchNorm
statistics (a few training batches in train mode with momentum=None).
"""
import functools
import itertools
import logging
import time
from typing import Callable, List

import torch
import torch.nn.functional as F

from lth import models
from lth.lottery import assemble
from lth.bench.common import Bench, Spec, format_table, measure_rows, sync
from lth.bench.engine import (EngineStep, build_model, cycle, masked, model_maker, prune_with_hooks, run_config,
                              train_loader)
from lth.bench.loading import torchvision_loader
from lth.data.loader import DeviceLoader
from lth.lmc.probe import floating_tensors, lerp_into, recompute_batchnorm
from lth.training.loop import evaluate

log = logging.getLogger("lth.bench")

BIG_MODELS = ("resnet18", "vgg16")  # take Size.big_batch (costly on a CPU)
NAIVE_WORKERS = 2                   # naive baseline: DataLoader workers (PyTorch's CIFAR tutorial)
INTERP_MODEL = {"cpu": "resnet20", "cuda": "resnet18"}  # the model of the interpolation sweep


class NaiveStep:
    """One training step of the naive baseline (see the module docstring)."""

    def __init__(self, name: str, bench: Bench, cfg, batch: int):
        self.device = bench.device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seeds.init_seed)
            model = models.build(name, bench.dataset.num_classes, bench.dataset.in_channels, 32)
        self.model = model.to(self.device)
        prune_with_hooks(self.model)  # prune.l1_unstructured, amount 0.9, every conv/linear
        t, o = cfg.train, cfg.train.optimizer_params
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=t.lr, betas=(o["beta1"], o["beta2"]),
                                           eps=o["eps"], weight_decay=t.weight_decay)
        self.batches = cycle(torchvision_loader(bench.dataset, batch, NAIVE_WORKERS, cfg.seeds.order_seed,
                                                pin_memory=False))
        self.running_loss = 0.0
        self.model.train()

    def __call__(self) -> None:
        x, y = next(self.batches)
        x, y = x.to(self.device), y.to(self.device)
        self.optimizer.zero_grad()
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        self.running_loss += loss.item()


def _specs(bench: Bench, name: str) -> List[Spec]:
    """The rows of one model (lth's engine in every mode, then the naive baseline) and their steps.

    On CUDA the rows run one after another and share one model and one torch.compile of it;
    on a CPU the rows are timed interleaved, so each builds (and compiles) its own.
    """
    device = bench.device
    batch = bench.size.big_batch if name in BIG_MODELS else bench.size.train_batch
    precisions = ("fp32", "bf16") if bench.is_cuda() else ("fp32",)
    modes = ("eager", "compiled") if bench.compile else ("eager",)
    make_model = model_maker(run_config(name, batch), bench.dataset, device, shared=bench.is_cuda(),
                             compile=bench.compile)

    def engine(variant: str, mode: str, precision: str) -> Callable[[], None]:
        cfg = run_config(name, batch, bf16=precision == "bf16")
        model, forward = make_model(mode)
        step = EngineStep(model, cfg, device, masked(model) if variant != "dense" else None, forward)
        batches = cycle(train_loader(cfg, bench.dataset.to(device), device))
        return lambda: step(*next(batches))

    specs: List[Spec] = []
    for mode, variant, precision in itertools.product(modes, ("dense", "masked 90%"), precisions):
        row = {"model": name, "variant": variant, "mode": mode, "precision": precision, "batch": batch}
        specs.append((row, functools.partial(engine, variant, mode, precision)))
    row = {"model": name, "variant": "naive baseline", "mode": "eager", "precision": "fp32", "batch": batch}
    specs.append((row, lambda: NaiveStep(name, bench, run_config(name, batch), batch)))
    return specs


def training(bench: Bench) -> dict:
    size = bench.size
    rows: List[dict] = []
    for name in bench.models or size.train_models:
        specs = _specs(bench, name)
        measure_rows(bench, specs, size.steps, interleave=not bench.is_cuda())
        for row, _ in specs:
            if row.get("images_per_s"):
                row["tflops"] = row["images_per_s"] * bench.flop_per_image(name) / 1e12
                if bench.peak_tflops:
                    row["peak_fraction"] = row["tflops"] / bench.peak_tflops
            rows.append(row)
    for row in rows:  # relative to the naive baseline of the same model
        naive = next(r for r in rows if r["model"] == row["model"] and r["variant"] == "naive baseline")
        if row.get("images_per_s") and naive.get("images_per_s"):
            row["vs_naive"] = row["images_per_s"] / naive["images_per_s"]
    notes = [f"img/s end to end (loader + step); medians of {size.repeats} blocks of {size.steps} steps after "
             f"{size.warmup} untimed" + ("" if bench.is_cuda() else ", the rows of a model taken in turn")
             + "; masked = lth's 90 % local masks (mask_grads + enforce every step)",
             "peak = " + ("torch.cuda.max_memory_allocated during the row (its dataset copy on the device included)"
                          if bench.is_cuda() else "growth of the process's peak RSS while the row was built and "
                          "warmed up (approximate)"),
             "TFLOP/s from torch.utils.flop_counter (dense FLOP of forward + backward per image: "
             + ", ".join(f"{n} {bench.flop_per_image(n) / 1e9:.2f} GFLOP"
                         for n in dict.fromkeys(r["model"] for r in rows))
             + ")"]
    if bench.peak_tflops:
        notes.append(f"% peak: of {bench.peak_tflops:g} TFLOP/s dense bf16")
    if not bench.compile:
        notes.append("torch.compile rows skipped (opt-in on CPU: --compile)")
    return {"rows": rows, "notes": notes}


# ---- interpolation ------------------------------------------------------------------------

def interpolation(bench: Bench) -> dict:
    size, device = bench.size, bench.device
    name = INTERP_MODEL[device.type]
    batch = size.train_batch if bench.is_cuda() else size.step_batch
    cfg = run_config(name, batch)
    dataset = bench.dataset.to(device)
    a = build_model(cfg, dataset, device)
    b = assemble.build_model(cfg, dataset, cfg.seeds.init_seed + 1, device)
    probe = build_model(cfg, dataset, device)
    channels_last = cfg.train.channels_last
    n = size.eval_images or len(dataset.test_y)
    test = DeviceLoader(dataset.test_x[:n], dataset.test_y[:n], dataset, cfg.train.eval_batch_size, device,
                        train=False, channels_last=channels_last)
    bn_loader = DeviceLoader(dataset.train_x, dataset.train_y, dataset, batch, device, train=False,
                             channels_last=channels_last)
    bn_batches = list(itertools.islice(iter(bn_loader), size.bn_batches))
    ta, tb, tp = floating_tensors(a), floating_tensors(b), floating_tensors(probe)
    alphas = torch.linspace(0, 1, size.alphas).tolist()

    def sweep(lerp_only: bool, bn_reset: bool) -> float:
        sync(device)
        start = time.perf_counter()
        for alpha in alphas:
            lerp_into(tp, tb, ta, alpha)
            if lerp_only:
                continue
            if bn_reset:
                recompute_batchnorm(probe, probe, bn_batches, device, cfg.train.bf16)
            evaluate(probe, probe, test, cfg.train.bf16)  # reads its result: one host sync per alpha
        sync(device)
        return time.perf_counter() - start

    evaluate(probe, probe, test, cfg.train.bf16)  # warm-up (first calls, autotuning)
    rows = []
    for label, lerp_only, bn_reset in (("lerp only", True, False), ("lerp + evaluate", False, False),
                                       ("lerp + BN reset + evaluate", False, True)):
        log.info("interpolation: %s, %d alphas", label, len(alphas))
        seconds = sweep(lerp_only, bn_reset)
        rows.append({"model": name, "sweep": label, "alphas": len(alphas), "eval_images": 0 if lerp_only else n,
                     "bn_images": len(bn_batches) * batch if bn_reset else 0, "seconds": seconds,
                     "ms_per_alpha": seconds / len(alphas) * 1e3})
    notes = [f"{sum(t.numel() for t in tp):,} interpolated values (parameters and BatchNorm statistics); "
             f"evaluation under inference_mode at batch {cfg.train.eval_batch_size}"
             + (", bf16" if bench.is_cuda() and cfg.train.bf16 else "")]
    return {"rows": rows, "notes": notes}


TRAIN_COLUMNS = [("model", "model", ""), ("variant", "variant", ""), ("mode", "mode", ""),
                 ("precision", "precision", ""), ("batch", "batch", "d"), ("images_per_s", "img/s", ".0f"),
                 ("ms_per_step", "ms/step", ".1f"), ("peak_mib", "peak MiB", ".0f"), ("tflops", "TFLOP/s", ".3f"),
                 ("peak_fraction", "% peak", ".1%"), ("vs_naive", "x naive", ".2f"), ("error", "error", "")]
INTERP_COLUMNS = [("model", "model", ""), ("sweep", "sweep", ""), ("alphas", "alphas", "d"),
                  ("eval_images", "eval images", "d"), ("bn_images", "BN images", "d"), ("seconds", "total s", ".2f"),
                  ("ms_per_alpha", "ms/alpha", ".1f")]


def render(section: str, result: dict) -> str:
    rows = result["rows"]
    if section == "interpolation":
        return format_table("Interpolation sweep", INTERP_COLUMNS, rows, result["notes"])
    columns = [c for c in TRAIN_COLUMNS if c[0] not in ("error", "peak_fraction") or any(c[0] in r for r in rows)]
    return format_table("Training throughput and peak memory", columns, rows, result["notes"])
