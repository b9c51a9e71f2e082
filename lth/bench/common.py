"""The measuring side of lth.bench: sizes, the Bench context, hardware, timers, memory, tables."""
import ctypes
import gc
import logging
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from lth.bench.engine import count_training_flops
from lth.data.datasets import Dataset

log = logging.getLogger("lth.bench")

# Dense bf16 tensor-core peak in TFLOP/s by device-name substring, first match wins (vendor datasheets).
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0),
                    ("GH200", 989.0), ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0),
                    ("A10G", 70.0), ("RTX 4090", 165.0))


@dataclass(frozen=True)
class Size:
    """How big each measurement is; one per --size (small is the CPU default, full the CUDA one)."""
    step_batch: int              # masks/loader: batch of the single-model step (the setting: 128)
    train_batch: int             # train table: batch of resnet20 (and of every model on CUDA)
    big_batch: int               # train table: batch of resnet18/vgg16 (costly on a CPU)
    steps: int                   # timed steps per block
    repeats: int                 # timed blocks per measurement; medians are reported
    warmup: int                  # untimed steps first (first calls, autotuning, compilation)
    mask_repeats: int            # masks: interleaved blocks per variant (the 3 % question needs more)
    step_models: Tuple[str, ...]    # masks: models whose step cost is measured
    update_models: Tuple[str, ...]  # mask update: models measured
    train_models: Tuple[str, ...]   # train table: models measured
    loader_batches: int          # loader alone: batches per timed block
    loader_workers: Tuple[int, ...]  # torchvision DataLoader num_workers settings compared
    alphas: int                  # interpolation: points on the alpha grid (Frankle et al.: 30 intervals)
    eval_images: int             # interpolation: test images evaluated per alpha (0: the whole split)
    bn_batches: int              # interpolation: training batches that recompute BatchNorm statistics
    synthetic: Tuple[int, int]   # synthetic data: train and test images
    prune_models: Tuple[str, ...] = ("lenet300_100", "resnet20")  # prune: models whose rounds are timed
    prune_steps: int = 40        # prune: steps of a timed CIFAR round
    prune_mnist_steps: int = 0   # prune: steps of LeNet's MNIST round (0: the mnist preset's whole round)
    prune_repeats: int = 3       # prune: rounds of each variant; medians are reported


SIZES = {
    # For tests: seconds on a CPU, numbers meaningless.
    "tiny": Size(step_batch=8, train_batch=8, big_batch=4, steps=1, repeats=1, warmup=1, mask_repeats=1,
                 step_models=("resnet20",), update_models=("resnet20",), train_models=("resnet20",),
                 loader_batches=2, loader_workers=(0, 2), alphas=3, eval_images=16, bn_batches=1,
                 synthetic=(256, 64), prune_steps=3, prune_mnist_steps=5, prune_repeats=1),
    # A few minutes on 2 CPU cores for everything.
    "small": Size(step_batch=128, train_batch=64, big_batch=16, steps=2, repeats=5, warmup=1, mask_repeats=7,
                  step_models=("resnet20",), update_models=("resnet20", "resnet18"),
                  train_models=("resnet20", "resnet18", "vgg16"), loader_batches=20, loader_workers=(0, 2),
                  alphas=31, eval_images=256, bn_batches=2, synthetic=(4096, 1024),
                  prune_models=("lenet300_100", "conv2", "resnet20"), prune_steps=40, prune_repeats=3),
    # The real sizes, for a GPU.
    "full": Size(step_batch=128, train_batch=512, big_batch=512, steps=50, repeats=5, warmup=10, mask_repeats=9,
                 step_models=("resnet20", "resnet18"), update_models=("resnet20", "resnet18"),
                 train_models=("resnet18", "vgg16", "resnet20"), loader_batches=100, loader_workers=(0, 2, 8),
                 alphas=31, eval_images=0, bn_batches=4, synthetic=(50000, 10000),
                 prune_models=("lenet300_100", "conv2", "resnet20", "resnet18"), prune_steps=400, prune_repeats=5),
}


@dataclass
class Bench:
    """Everything a section needs: where it runs, how big, on what data (no global state)."""
    device: torch.device
    size: Size
    size_name: str                # the --size it started from ("small, --steps 5" when overridden)
    dataset: Dataset              # on the CPU; loaders move it to the device
    data_source: str              # what the data is, for the header
    compile: bool                 # also measure torch.compile'd models
    threads: int
    peak_tflops: Optional[float]  # dense bf16 peak of the device, for the "% peak" column
    models: Optional[Tuple[str, ...]] = None  # --models: overrides the size's model lists
    data_dir: Optional[str] = None            # --data-dir (prune also looks for MNIST there)
    synthetic: bool = False                   # --synthetic (prune: digits instead of MNIST)
    steps_override: int = 0                   # --steps (prune: the round's budget; 0: the size's)
    _flops: Dict[str, float] = field(default_factory=dict)  # training FLOP per image, by model

    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def flop_per_image(self, model_name: str) -> float:
        if model_name not in self._flops:
            self._flops[model_name] = count_training_flops(model_name, self.dataset)
        return self._flops[model_name]


# ---- hardware and environment ------------------------------------------------------------

def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_for(name: str) -> Optional[float]:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in name:
            return tflops
    return None


def hardware(bench: Bench) -> dict:
    info = {"device": str(bench.device), "device_name": device_name(bench.device), "torch": torch.__version__,
            "threads": bench.threads, "cpu_count": os.cpu_count(), "data": bench.data_source,
            "compile": bench.compile, "peak_bf16_tflops": bench.peak_tflops, "size": bench.size_name,
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    if bench.is_cuda():
        info.update(cuda=torch.version.cuda, cudnn_tf32=torch.backends.cudnn.allow_tf32,
                    matmul_tf32=torch.backends.cuda.matmul.allow_tf32)
    return info


# ---- timing and memory -------------------------------------------------------------------

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_blocks(step: Callable[[], None], device: torch.device, steps: int, repeats: int,
                warmup: int) -> List[float]:
    """Seconds per call of `step`, one value per timed block of `steps` calls, after `warmup` calls."""
    for _ in range(warmup):
        step()
    sync(device)
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        out.append((time.perf_counter() - start) / steps)
    return out


def time_interleaved(steps_by_name: Dict[str, Callable[[], None]], device: torch.device, steps: int,
                     repeats: int, warmup: int) -> Dict[str, Dict[str, List[float]]]:
    """Like time_blocks for several steps at once, blocks taken in turn (A B C A B C ...), so
    that background load drifting over the run hits every variant alike. Returns, per step,
    seconds per call by block: "wall" (perf_counter) and "cpu" (this process's CPU time: on a
    shared CPU it leaves out the time other processes held the cores)."""
    for step in steps_by_name.values():
        for _ in range(warmup):
            step()
    sync(device)
    out = {name: {"wall": [], "cpu": []} for name in steps_by_name}
    for _ in range(repeats):
        for name, step in steps_by_name.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                step()
            sync(device)
            out[name]["cpu"].append((time.process_time() - cpu) / steps)
            out[name]["wall"].append((time.perf_counter() - wall) / steps)
    return out


def paired_ratio(values: Sequence[float], reference: Sequence[float]) -> float:
    """Median over blocks of value / reference block taken in the same round (interleaved timing)."""
    return statistics.median(v / r for v, r in zip(values, reference))


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> float:
    """(max - min) / median of repeated timings: how much to trust a ratio."""
    return (max(values) - min(values)) / statistics.median(values) if len(values) > 1 else 0.0


def free_memory(device: torch.device) -> None:
    """Collect garbage and hand cached memory back (CUDA: the caching allocator; CPU: glibc's
    free heap pages, so that the process's RSS tracks live memory)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def reset_peak_memory(device: torch.device) -> None:
    """CUDA: the allocator's peak. CPU: the process's peak RSS (Linux: VmHWM, reset via clear_refs)."""
    free_memory(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _proc_status_mib(key: str) -> Optional[float]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def peak_memory_mib(device: torch.device) -> Optional[float]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return _proc_status_mib("VmHWM")


def memory_mib(device: torch.device) -> Optional[float]:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2 ** 20
    return _proc_status_mib("VmRSS")


# ---- measuring rows --------------------------------------------------------------------------

Spec = Tuple[dict, Callable[[], Callable[[], None]]]  # (table row, factory of its step: one call, one batch)


def measure_rows(bench: "Bench", specs: Sequence[Spec], steps: int, interleave: bool,
                 warmup: Optional[int] = None) -> None:
    """Time every spec's step; fill its row with ms_per_step, images_per_s (of row["batch"]), peak_mib.

    interleave=False: one row after another, each step freed before the next is built; peak =
    the device's peak memory during the row (the right mode for a dedicated GPU).
    interleave=True: every step built and warmed up first, then timed blocks in turn, so that
    load from other processes on a shared CPU hits all rows alike; peak = how much the process's
    peak RSS grew while the row was built and warmed up (after a throw-away warm-up of the first
    row, so that one-time costs land on none).
    A failure in a step whose row["mode"] is "compiled" (torch.compile) becomes row["error"],
    and the later compiled rows get the same error without trying again.
    """
    size, device = bench.size, bench.device
    warmup = size.warmup if warmup is None else warmup
    compile_error: Optional[str] = None
    live: Dict[str, Callable[[], None]] = {}
    if interleave and specs:  # one-time costs (lazy libraries, thread pools) must not land on the first row
        step = specs[0][1]()
        for _ in range(warmup):
            step()
        del step
    for i, (row, make) in enumerate(specs):
        if compile_error and row.get("mode") == "compiled":
            row["error"] = compile_error
            continue
        log.info("measuring %s", ", ".join(str(v) for v in row.values()))
        free_memory(device)
        base = memory_mib(device)
        reset_peak_memory(device)
        step = make()
        try:
            if interleave:
                for _ in range(warmup):
                    step()
                sync(device)
            else:
                _fill(row, time_blocks(step, device, steps, size.repeats, warmup))
        except Exception as e:
            if row.get("mode") != "compiled":
                raise
            compile_error = row["error"] = short_error(e)
            log.warning("torch.compile failed: %s", compile_error)
            continue
        peak = peak_memory_mib(device)
        row["peak_mib"] = peak - base if interleave and None not in (peak, base) else peak
        if interleave:
            live[str(i)] = step
        del step
    if live:
        times = time_interleaved(live, device, steps, size.repeats, warmup=0)
        for key, t in times.items():
            _fill(specs[int(key)][0], t["wall"])
    free_memory(device)


def _fill(row: dict, seconds: Sequence[float]) -> None:
    row.update(ms_per_step=median(seconds) * 1e3, images_per_s=row["batch"] / median(seconds))


def short_error(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}"[:120]


# ---- tables ------------------------------------------------------------------------------

Column = Tuple[str, str, str]  # (row key, header, format spec; "" = str)


def format_table(title: str, columns: Sequence[Column], rows: Sequence[dict], notes: Sequence[str] = ()) -> str:
    """A plain-text table; missing or None cells print as '-'."""
    def cell(row, key, spec):
        value = row.get(key)
        if value is None:
            return "-"
        return format(value, spec) if spec else str(value)
    cells = [[cell(r, k, s) for k, _, s in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h, _) in enumerate(columns)]
    left = [i == 0 or not s for i, (_, _, s) in enumerate(columns)]  # text columns left-aligned

    def line(values):
        return "  ".join(v.ljust(w) if l else v.rjust(w) for v, w, l in zip(values, widths, left)).rstrip()
    out = [title, line([h for _, h, _ in columns]), line(["-" * w for w in widths])]
    out += [line(c) for c in cells]
    out += [f"  {n}" for n in notes]
    return "\n".join(out)
