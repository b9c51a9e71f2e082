"""`python -m lth.bench ddp`: data-parallel training throughput, images/s per rank and scaling
efficiency for N = 1, 2, ... ranks (issue 22).

    python -m lth.bench ddp --device cpu --ranks 1 2             # gloo ranks on the CPU
    python -m lth.bench ddp --device cuda --ranks 1 2 4 8         # NCCL, one GPU per rank

For each N the command starts `torchrun --standalone --nproc_per_node N -m lth.bench.ddp`:
every rank builds the model and data as a run does (lth.lottery.assemble, seeded), takes its
slice of each global batch (lth.data.loader.DeviceLoader shard) and trains with lth's training
step under DistributedDataParallel (lth.training.distributed), a masked 90 % model as in a
pruning round. After warm-up steps the ranks meet at a barrier, run --steps timed steps, and
meet again; rank r's rate is its images (batch / N per step) over the wall time. The global
batch is the config's and stays fixed as N grows (strong scaling, as lth's runs do), so
scaling efficiency = total images/s at N / (N x images/s at N = 1). On one machine's CPU the
ranks share its cores (and here other users' processes): the figure then measures contention
as much as communication.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import torch

from lth.errors import LthError, OneLineParser
from lth.knobs import number

MARK = "LTH_BENCH_DDP "   # rank 0's result line in the torchrun output


def parser() -> OneLineParser:
    p = OneLineParser(prog="python -m lth.bench.ddp", description="one rank of lth.bench ddp (started by torchrun)")
    p.add_argument("--model", required=True)
    p.add_argument("--batch-size", type=number(int, "batch_size", ge=1), required=True)
    p.add_argument("--steps", type=number(int, "steps", ge=1), required=True)
    p.add_argument("--warmup", type=number(int, "warmup", ge=0), default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=number(int, "threads", ge=0), default=1)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--synthetic", action="store_true")
    return p


def worker(argv: Optional[Sequence[str]] = None) -> int:
    """One rank: time --steps training steps of its slice; rank 0 prints every rank's rate."""
    import torch.distributed as dist
    from lth.bench.engine import build_model, load_data, masked, run_config
    from lth.data.loader import DeviceLoader
    from lth.training import distributed
    from lth.training.loop import make_optimizer, train_step
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    device = distributed.setup(args.device)
    distributed.check_batch(args.batch_size)
    dataset, source = load_data(args.data_dir, args.synthetic, (max(4096, 4 * args.batch_size), 256))
    cfg = run_config(args.model, args.batch_size, bf16=device.type == "cuda")
    dataset = dataset.to(device)
    model = build_model(cfg, dataset, device)
    masks = masked(model)
    forward = distributed.data_parallel(model)
    optimizer = make_optimizer(model, cfg.train, device)
    loader = DeviceLoader(dataset.train_x, dataset.train_y, dataset, args.batch_size, device, train=True,
                          augment=cfg.data.augment, image_size=32, order_seed=1, augment_seed=2,
                          channels_last=cfg.train.channels_last, shard=distributed.shard())

    def batches():
        while True:
            yield from loader

    stream = batches()

    def steps(n: int) -> int:
        images = 0
        for _ in range(n):
            x, y = next(stream)
            loss, _ = train_step(forward, optimizer, masks, x, y, cfg.train.lr, device, cfg.train.bf16)
            images += len(y)
        loss.item()  # wait for the device
        return images

    steps(args.warmup)
    distributed.barrier()
    began = time.perf_counter()
    images = steps(args.steps)
    distributed.barrier()
    rate = images / (time.perf_counter() - began)
    rates = [None] * distributed.world_size()
    if distributed.active():
        dist.all_gather_object(rates, rate)
    else:
        rates = [rate]
    if distributed.is_main():
        print(MARK + json.dumps({"ranks": len(rates), "rates": rates, "data": source,
                                 "per_rank_batch": args.batch_size // len(rates)}), flush=True)
    return 0


def measure(ranks: int, model: str, batch: int, steps: int, device: str, threads: int, data_dir: Optional[str],
            synthetic: bool) -> dict:
    import lth
    code_root = str(Path(lth.__file__).resolve().parent.parent)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(p for p in (code_root, os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
           "-m", "lth.bench.ddp", "--model", model, "--batch-size", str(batch), "--steps", str(steps),
           "--device", device, "--threads", str(threads)]
    cmd += (["--data-dir", data_dir] if data_dir else []) + (["--synthetic"] if synthetic else [])
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    found = [line[len(MARK):] for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not found:
        errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("error: ")]
        raise LthError(errors[-1][len("error: "):] if errors else
                       f"{ranks} bench ranks exited with code {done.returncode}: "
                       f"{' '.join(done.stderr.split()[-30:])}")
    return json.loads(found[-1])


def run(args: argparse.Namespace, out: Callable[[str], None] = print) -> dict:
    """The `ddp` command of lth.bench: measure each N of --ranks, print the table."""
    from lth.training.device import pick_device
    device = pick_device(args.device)
    ranks: List[int] = args.ranks or [1, 2]
    if device.type == "cuda" and max(ranks) > torch.cuda.device_count():
        raise LthError(f"--ranks {max(ranks)} needs {max(ranks)} GPUs; this machine has {torch.cuda.device_count()}")
    model = (args.models or ["resnet20" if device.type == "cpu" else "resnet18"])[0]
    batch = args.batch_size or (64 if device.type == "cpu" else 256)
    steps = args.steps or (10 if device.type == "cpu" else 100)
    for n in ranks:
        if batch % n:
            raise LthError(f"--batch-size {batch} does not split over {n} ranks: use a multiple of {n}")
    threads = args.threads or 1
    kind = "cpu" if device.type == "cpu" else "cuda"
    rows = []
    for n in ranks:
        r = measure(n, model, batch, steps, kind, threads, args.data_dir, args.synthetic)
        rows.append(r)
    base = next((sum(r["rates"]) for r in rows if r["ranks"] == 1), None)
    lines = [f"lth.bench ddp: {model}, global batch {batch}, {steps} timed steps, {kind} "
             f"({'gloo' if kind == 'cpu' else 'NCCL'}), {threads} thread(s) per rank, {os.cpu_count()} CPU cores; "
             f"data: {rows[0]['data']}",
             f"{'ranks':>5}  {'batch/rank':>10}  {'img/s per rank':>24}  {'img/s total':>11}  {'scaling eff.':>12}"]
    for r in rows:
        total = sum(r["rates"])
        eff = f"{total / (r['ranks'] * base):.2f}" if base else "n/a (no N=1)"
        r.update(total=total, efficiency=total / (r["ranks"] * base) if base else None)
        per = " ".join(f"{x:.0f}" for x in r["rates"])
        lines.append(f"{r['ranks']:>5}  {r['per_rank_batch']:>10}  {per:>24}  {total:>11.0f}  {eff:>12}")
    for line in lines:
        out(line)
    return {"model": model, "batch": batch, "steps": steps, "device": kind, "rows": rows}


if __name__ == "__main__":
    from lth.training import distributed
    sys.exit(distributed.cli_main_then_leave(worker))
