"""`python -m lth.bench loader`: training images/s of lth's DeviceLoader against torchvision's DataLoader.

  lth DeviceLoader    the whole split on the device as uint8; crop_flip done there in batched ops
  torchvision         a torch Dataset over the same uint8 arrays serving PIL images, CPU transforms
                      RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize (the
                      same mean/std), DataLoader with num_workers 0, 2, ... (pinned memory on CUDA)
Each pipeline is timed alone (batches delivered on the device) and feeding lth's training step:
resnet20 on a CPU; resnet18 with bf16 autocast and channels_last on CUDA, eager and compiled.
"""
import functools
import logging
from typing import Callable, Iterator, List

import numpy as np
import torch
from torch.utils.data import DataLoader

from lth.bench.common import Bench, Spec, format_table, free_memory, measure_rows, median, time_blocks
from lth.bench.engine import EngineStep, cycle, model_maker, run_config, train_loader
from lth.data.datasets import Dataset

log = logging.getLogger("lth.bench")

CPU_MODEL = "resnet20"    # the model fed on a CPU
CUDA_MODEL = "resnet18"   # the model fed on CUDA (the paper's)
LOADER_WARMUP = 2         # extra untimed batches: DataLoader workers start and fill their prefetch queue


class ArrayDataset(torch.utils.data.Dataset):
    """uint8 images served as torchvision.datasets.CIFAR10 serves them: HWC array -> PIL -> transform."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: Callable):
        self.x = np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())
        self.y = y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.x[i])), self.y[i]


def torchvision_loader(dataset: Dataset, batch: int, workers: int, seed: int, pin_memory: bool) -> DataLoader:
    from torchvision import transforms as T
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(dataset.mean.tolist(), dataset.std.tolist())])
    return DataLoader(ArrayDataset(dataset.train_x, dataset.train_y, transform), batch_size=batch, shuffle=True,
                      drop_last=True, num_workers=workers, pin_memory=pin_memory,
                      persistent_workers=workers > 0, generator=torch.Generator().manual_seed(seed))


def layout(x: torch.Tensor) -> str:
    """The memory format of an image batch (it changes what a convolution costs on a CPU)."""
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return "NHWC"
    return "NCHW" if x.is_contiguous() else "strided"


def on_device(batches: Iterator, device: torch.device, channels_last: bool) -> Iterator:
    """CPU batches moved to the device as a training loop would (non-blocking from pinned memory)."""
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        yield (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y


def pipelines(bench: Bench, cfg, batch: int):
    """(name, workers, a factory of an endless iterator of device batches) for each pipeline."""
    device, dataset = bench.device, bench.dataset
    channels_last = cfg.train.channels_last
    yield "lth DeviceLoader", None, lambda: cycle(train_loader(cfg, dataset.to(device), device))
    for workers in bench.size.loader_workers:
        yield "torchvision DataLoader", workers, lambda w=workers: on_device(
            cycle(torchvision_loader(dataset, batch, w, cfg.seeds.order_seed, bench.is_cuda())), device, channels_last)


def _time_pipeline(make: Callable[[], Iterator], use: Callable, device: torch.device, steps: int, repeats: int,
                   warmup: int) -> List[float]:
    """time_blocks of use(next batch) over a fresh pipeline, closed (workers and all) on return."""
    batches = make()
    try:
        return time_blocks(lambda: use(next(batches)), device, steps, repeats, warmup)
    finally:
        batches.close()


def loader_throughput(bench: Bench) -> dict:
    size, device = bench.size, bench.device
    model_name = CUDA_MODEL if bench.is_cuda() else CPU_MODEL
    batch = size.train_batch if bench.is_cuda() else size.step_batch
    cfg = run_config(model_name, batch)
    rows: List[dict] = []
    warmup = size.warmup + LOADER_WARMUP
    for name, workers, make in pipelines(bench, cfg, batch):
        log.info("loader: %s%s alone", name, "" if workers is None else f" workers={workers}")
        layouts = set()
        seconds = _time_pipeline(make, lambda b: layouts.add(layout(b[0])), device, size.loader_batches,
                                 size.repeats, warmup)
        rows.append({"pipeline": name, "workers": workers, "feeds": "nothing (loader alone)", "batch": batch,
                     "layout": "/".join(sorted(layouts)),
                     "images_per_s": batch / median(seconds), "ms_per_step": median(seconds) * 1e3})
        free_memory(device)

    make_model = model_maker(cfg, bench.dataset, device, shared=bench.is_cuda(), compile=bench.compile)

    def fed(make: Callable[[], Iterator], mode: str) -> Callable[[], None]:
        model, forward = make_model(mode)
        step = EngineStep(model, cfg, device, forward=forward)
        batches = make()
        return lambda: step(*next(batches))

    precision = "bf16" if bench.is_cuda() and cfg.train.bf16 else "fp32"
    specs: List[Spec] = []
    for mode in ("eager", "compiled") if bench.compile else ("eager",):
        for name, workers, make in pipelines(bench, cfg, batch):
            row = {"pipeline": name, "workers": workers, "feeds": f"{model_name} {precision} {mode}",
                   "mode": mode, "batch": batch}
            specs.append((row, functools.partial(fed, make, mode)))
    measure_rows(bench, specs, size.steps, interleave=not bench.is_cuda(), warmup=warmup)
    rows += [row for row, _ in specs]
    for row in rows:  # the same pipeline delivers the same layout, fed or not
        row.setdefault("layout", next(r["layout"] for r in rows if r["pipeline"] == row["pipeline"]
                                      and r["workers"] == row["workers"] and "layout" in r))
    for row in rows:  # relative to lth's loader feeding the same thing
        ref = next((r for r in rows if r["feeds"] == row["feeds"] and r["workers"] is None), None)
        if ref and ref.get("images_per_s") and row.get("images_per_s"):
            row["vs_lth"] = row["images_per_s"] / ref["images_per_s"]
    notes = [f"augmentation: random crop 32 after 4 px zero padding + horizontal flip, normalised; "
             f"{'bf16 autocast, channels_last; ' if bench.is_cuda() else ''}"
             f"timed {size.repeats} blocks (alone: {size.loader_batches} batches, with the model: "
             f"{size.steps} steps) after {warmup} untimed"
             + ("" if bench.is_cuda() else "; with the model, the pipelines were taken in turn")]
    if not bench.is_cuda():
        notes.append("layout: memory format of the batches, which alone changes a CPU step's time "
                     "(lth's loader yields NCHW unless channels_last is asked for)")
    if not bench.compile:
        notes.append("torch.compile rows skipped (opt-in on CPU: --compile)")
    return {"rows": rows, "notes": notes}


COLUMNS = [("pipeline", "pipeline", ""), ("workers", "workers", ""), ("feeds", "feeds", ""), ("batch", "batch", "d"),
           ("layout", "layout", ""), ("images_per_s", "img/s", ".0f"), ("ms_per_step", "ms/batch", ".1f"), ("vs_lth", "x lth", ".2f"),
           ("error", "error", "")]


def render(section: str, result: dict) -> str:
    rows = result["rows"]
    columns = [c for c in COLUMNS if c[0] != "error" or any("error" in r for r in rows)]
    return format_table("Loader throughput (training images/s)", columns, rows, result["notes"])
