"""lth.bench: how fast lth's engine trains, masks, loads and interpolates, against the usual ways.

    python -m lth.bench                    # everything (CPU: --size small, a few minutes on 2 cores)
    python -m lth.bench masks              # step cost of masking (dense, lth, prune hooks) + mask updates
    python -m lth.bench loader             # lth's DeviceLoader vs torchvision's DataLoader
    python -m lth.bench train              # img/s and peak memory table, interpolation sweep, mask update
    python -m lth.bench prune              # a round's time per schedule against a dense round, trajectory gap
    python -m lth.bench ddp --ranks 1 2    # data-parallel img/s per rank, scaling efficiency (torchrun)
    python -m lth.bench train --device cuda --json bench.json   # real sizes, compiled, bf16
    python -m lth.bench --help             # every flag

Results print as tables (hardware at the top); --json PATH also writes them as JSON.
From Python: `lth.bench.run(["masks", "--size", "tiny"])` returns the same results as a dict.

Modules: engine (what is measured: data, lth's training step, the naive alternatives), common
(how: sizes, timers, memory, tables), masking (masks), loading (loader), throughput (train and
interpolation), pruning (prune), ddp (data-parallel scaling), cli (flags and output).
"""
import argparse
import dataclasses
import json
import logging
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from lth import models, plugins
from lth.knobs import number
from lth.bench import loading, masking, pruning, throughput
from lth.bench.common import SIZES, Bench, device_name, hardware, peak_for
from lth.training.device import pick_device
from lth.bench.engine import load_data
from lth.errors import LthError, OneLineParser

log = logging.getLogger("lth.bench")

SEED = 0  # the global RNG, for anything not seeded on its own generator

# section name -> (measure, render)
SECTIONS: Dict[str, Tuple[Callable[[Bench], dict], Callable[[str, dict], str]]] = {
    "mask_step": (masking.step_cost, masking.render),
    "mask_update": (masking.mask_update, masking.render),
    "mask_profile": (masking.profile_masking, masking.render),
    "loader": (loading.loader_throughput, loading.render),
    "train": (throughput.training, throughput.render),
    "interpolation": (throughput.interpolation, throughput.render),
    "prune": (pruning.prune_cost, pruning.render),
}
COMMANDS = {
    "masks": ("mask_step", "mask_update"),
    "loader": ("loader",),
    "train": ("train", "interpolation", "mask_update"),
    "prune": ("prune",),
    "all": ("mask_step", "mask_update", "loader", "train", "interpolation", "prune"),
}


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m lth.bench", description=__doc__.split("\n\n")[0],
                epilog="examples:\n" + __doc__.split("\n\n")[1],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", default="all", choices=sorted(COMMANDS) + ["ddp"],
                   help="what to measure [default: all]; ddp: data-parallel scaling over --ranks (lth.bench.ddp)")
    p.add_argument("--ranks", type=number(int, "ranks", ge=1), nargs="+", default=None, metavar="N",
                   help="ddp: the world sizes to measure [default: 1 2]")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto [default: auto]")
    p.add_argument("--size", choices=sorted(SIZES), default=None,
                   help="how big (lth.bench.common.SIZES) [default: full on CUDA, small on CPU]")
    p.add_argument("--models", nargs="+", default=None, metavar="MODEL",
                   help="models of the masks and train measurements [default: the size's]; the loader and "
                        "interpolation use resnet20 on a CPU, resnet18 on CUDA")
    p.add_argument("--steps", type=number(int, "steps", ge=1), default=None,
                   help="timed steps per block; prune: steps of a round [default: the size's]")
    p.add_argument("--batch-size", type=number(int, "batch_size", ge=1), default=None,
                   help="training batch of every model [default: the size's; >= 1]")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="also measure torch.compile'd models [default: on for CUDA, off on CPU]")
    p.add_argument("--threads", type=number(int, "threads", ge=0), default=None,
                   help="CPU intra-op threads [default: 1 on CPU for steadier numbers; torch's own on CUDA]")
    p.add_argument("--peak-tflops", type=number(float, "peak_tflops", gt=0), default=None,
                   help="dense bf16 peak of the device for the %% peak column [default: from the device name]")
    p.add_argument("--data-dir", default=None,
                   help="folder holding cifar-10-batches-py [default: data, else synthetic]")
    p.add_argument("--synthetic", action="store_true", help="use seeded synthetic CIFAR-sized data")
    p.add_argument("--profile", action="store_true",
                   help="masks: also profile a dense and an lth-masked step (torch.profiler), ops that differ most")
    p.add_argument("--json", default=None, metavar="PATH", help="also write every result to this JSON file")
    return p


def setup(args: argparse.Namespace) -> Bench:
    device = pick_device(args.device)
    size_name = args.size or ("full" if device.type == "cuda" else "small")
    size = SIZES[size_name]
    if args.steps is not None:
        size = dataclasses.replace(size, steps=args.steps)
        size_name += f", --steps {args.steps}"
    if args.batch_size is not None:
        size = dataclasses.replace(size, step_batch=args.batch_size, train_batch=args.batch_size,
                                   big_batch=args.batch_size)
        size_name += f", --batch-size {args.batch_size}"
    plugins.load()   # a plugin's models can be benchmarked too
    for name in args.models or ():
        models.MODELS.get(name)   # "unknown model 'x'; choose one of ..."
    threads = args.threads if args.threads is not None else (1 if device.type == "cpu" else None)
    if threads is not None:
        if threads < 1:
            raise LthError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    dataset, source = load_data(args.data_dir, args.synthetic, size.synthetic)
    batches = (size.step_batch, size.train_batch, size.big_batch)
    if len(dataset.train_y) < max(batches):
        raise LthError(f"batch size {max(batches)} exceeds the {len(dataset.train_y)} training images of {source}")
    peak = args.peak_tflops if args.peak_tflops is not None else (
        peak_for(device_name(device)) if device.type == "cuda" else None)
    compile_ = args.compile if args.compile is not None else device.type == "cuda"
    return Bench(device=device, size=size, size_name=size_name, dataset=dataset, data_source=source, compile=compile_,
                 threads=torch.get_num_threads(), peak_tflops=peak,
                 models=tuple(args.models) if args.models else None, data_dir=args.data_dir,
                 synthetic=args.synthetic, steps_override=args.steps or 0)


def header(command: str, hw: dict) -> str:
    load = f", load average {hw['load_average_1min']:.2f}" if hw["load_average_1min"] is not None else ""
    lines = [f"lth.bench {command} (size {hw['size']})",
             f"device: {hw['device']} ({hw['device_name']}), torch {hw['torch']}, "
             f"{hw['threads']} intra-op thread(s), {hw['cpu_count']} CPU cores{load}",
             f"data: {hw['data']}; torch.compile: {'on' if hw['compile'] else 'off'}"]
    if "cuda" in hw:
        lines.append(f"CUDA {hw['cuda']}; TF32 convolutions {hw['cudnn_tf32']}, matmuls {hw['matmul_tf32']}; "
                     f"dense bf16 peak {hw['peak_bf16_tflops'] or 'unknown (--peak-tflops)'} TFLOP/s")
    return "\n".join(lines)


def run(argv: Optional[Sequence[str]] = None, out: Callable[[str], None] = print) -> dict:
    """Run a command; print its tables through `out`; return (and with --json write) the results."""
    args = parser().parse_args(argv)
    if args.command == "ddp":  # issue 22: separate processes per world size (lth.bench.ddp)
        from lth.bench import ddp
        report = {"command": "ddp", "results": {"ddp": ddp.run(args, out)}}
        if args.json:
            _write_json(args.json, report)
        return report
    bench = setup(args)
    hw = hardware(bench)
    out(header(args.command, hw))
    results: Dict[str, dict] = {}
    sections = COMMANDS[args.command]
    if args.profile and "mask_step" in sections:
        sections += ("mask_profile",)
    for section in sections:
        measure, render = SECTIONS[section]
        results[section] = measure(bench)
        out("")
        out(render(section, results[section]))
    report = {"command": args.command, "hardware": hw, "size": dataclasses.asdict(bench.size), "results": results}
    if args.json:
        _write_json(args.json, report)
    return report


def _write_json(path: str, report: dict) -> None:
    try:
        with open(path, "w") as f:
            json.dump(report, f, indent=1)
    except OSError as e:
        raise LthError(f"cannot write {path}: {e.strerror}") from None
    log.info("results written to %s", path)


def main(argv: Optional[List[str]] = None) -> int:
    run(argv)
    return 0
