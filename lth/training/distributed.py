"""Data-parallel training on torch.distributed: one process per device, launched by torchrun.

    torchrun --nproc_per_node 2 -m lth.run --preset quick --dataset digits --device cpu   # gloo, 2 CPU ranks
    torchrun --nproc_per_node 8 -m lth.run --schedule ocp --rounds 14                     # NCCL, 8 GPUs

`setup(device)` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT),
starts the process group (NCCL on CUDA, gloo on the CPU) and returns this rank's device
(cuda:LOCAL_RANK on GPUs). Without torchrun (WORLD_SIZE unset or 1) nothing is started and
every helper answers as a single process does, so the single-process path is unchanged.

What N ranks share and what they do not (docs/distributed.md):
- The config defines the global batch, the LR schedule and the data order, never N: every rank
  draws the same global order and the same augmentation draws for the whole global batch and
  takes its slice of batch_size / N images (lth.data.loader.DeviceLoader, `shard`).
  DistributedDataParallel averages the gradients, so each step's gradient is the global batch's
  mean gradient; the LR is the config's (no scaling with N).
- Masks are computed by every rank from identical weights; `DistributedCheck` all-reduces a
  checksum of them at each mask update and at the start and end of training.
- Only rank 0 writes (lth.runs.follower.FollowerStore for the others; store writes refuse on
  a non-zero rank); ranks meet at a barrier after each write that another rank reads.
  `decided` gives every rank rank 0's look at the files, `agreed` stops every rank when any
  finds bad input (the stability analysis: analysis.ranks).
- Evaluation is split over the ranks (lth.training.loop.evaluate): accuracy identical to N = 1.
- Not identical to N = 1: BatchNorm batch statistics are per rank (each normalises its slice;
  running statistics are rank 0's, broadcast every step by DDP), unless --sync-bn (CUDA); and
  the float summation order of the gradient average differs, so weights agree to rounding.
"""
import datetime
import gc
import hashlib
import json
import logging
import os
from typing import Callable, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn

from lth.errors import LthError
from lth.training.callbacks import Callback

log = logging.getLogger(__name__)

# How long a collective waits for the other ranks before failing (a rank that died mid-step
# is normally seen sooner: torchrun stops the others when one exits).
TIMEOUT_S = int(os.environ.get("LTH_DIST_TIMEOUT_S", "600"))
CHECKSUM_PRIME = 1_000_000_007  # the weighted index sum of a mask is taken modulo this


def launched() -> bool:
    """Whether this process is one of several ranks started by torchrun (or an equivalent)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes and prints."""
    return rank() == 0


def shard() -> Optional[Tuple[int, int]]:
    """(rank, world size) for DeviceLoader's batch slicing; None in a single process."""
    return (rank(), world_size()) if active() else None


def setup(device: str) -> torch.device:
    """Start the process group from torchrun's environment (once per process) and return this
    rank's device; in a single process, the device `device` names (lth.training.device.pick_device)."""
    from lth.training.device import pick_device
    if not launched():
        return pick_device(device)
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise LthError(f"WORLD_SIZE is set but {name} is not: start data-parallel runs with torchrun "
                           f"(torchrun --nproc_per_node N -m lth.run ...)")
    local = int(os.environ["LOCAL_RANK"])
    if device not in ("auto", "cpu", "cuda"):
        raise LthError(f"--device {device} pins one device, but torchrun started {os.environ['WORLD_SIZE']} ranks: "
                       f"use --device cuda (rank r takes cuda:LOCAL_RANK) or --device cpu")
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise LthError("--device cuda requested but CUDA is not available here; use --device cpu")
        if local >= torch.cuda.device_count():
            raise LthError(f"local rank {local} has no GPU: this node has {torch.cuda.device_count()}; "
                           f"use --nproc_per_node {torch.cuda.device_count()} or fewer")
        torch_device, backend = torch.device("cuda", local), "nccl"
        torch.cuda.set_device(torch_device)
    else:
        torch_device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=TIMEOUT_S),
                                **({"device_id": torch_device} if backend == "nccl" else {}))
        log.info("rank %d of %d on %s (%s)", rank(), world_size(), torch_device, backend)
    if not is_main():  # the others' progress lines would repeat rank 0's
        logging.getLogger().setLevel(logging.WARNING)
    return torch_device


def shutdown(clean: bool = False) -> None:
    """Leave the process group. clean (the rank finished without an error): meet the other ranks
    at a barrier first (a rank that stopped on an error skips it: its peers may be gone; a peer
    that stopped makes the barrier fail at once, which is ignored). Then free what still holds
    the group (a DDP module's reducer) before destroying it. Without that, a rank that had
    destroyed its group and exited could leave a slower peer's gloo threads to die in interpreter
    shutdown ('terminate called without an active exception', SIGABRT after a finished run).
    Measured: `torchrun --nproc_per_node 2 -m lth.run --preset quick --rounds 2 --steps 30` beside two
    busy loops on 2 cores failed so in 2 of 20 runs before, 0 of 40 with the barrier and collection."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if clean:
        try:
            dist.barrier()
        except RuntimeError:   # a peer died: nothing to wait for
            pass
    gc.collect()
    dist.destroy_process_group()


def cli_main_then_leave(main) -> int:
    """lth.errors.cli_main(main), then shutdown: what a command's `__main__` runs, so that under
    torchrun every rank leaves the process group (cleanly when its command succeeded)."""
    from lth.errors import cli_main
    code = 1
    try:
        code = cli_main(main)
    finally:
        shutdown(clean=code == 0)
    return code


def lost_peer(e: BaseException) -> bool:
    """Whether `e` is a collective failing because another rank died or hung (gloo's "Connection
    reset by peer", NCCL's errors, torch.distributed's own error types), in a data-parallel run."""
    if not active():
        return False
    if isinstance(e, getattr(dist, "DistError", ())):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and any(k in text for k in ("gloo", "NCCL", "Connection reset", "Connection closed"))


def peer_lost_error(e: BaseException, kept: str) -> Optional[LthError]:
    """The one line for a collective that failed because another rank died (lost_peer), naming
    what a rerun finds (`kept`); None for any other error, which the caller re-raises."""
    if not lost_peer(e):
        return None
    first = " ".join(str(e).split())[:160]
    return LthError(f"rank {rank()} stopped: a collective failed ({first}); another rank probably died; {kept}: "
                    f"run the same command again to resume")


def barrier() -> None:
    """Wait for every rank (no-op in a single process): after rank 0 wrote what others read."""
    if active():
        dist.barrier()


def check_batch(batch_size: int, ranks: Optional[int] = None) -> None:
    """The global batch must split into equal slices: one per rank (`ranks`: a world about to start)."""
    n = ranks or (world_size() if active() else int(os.environ.get("WORLD_SIZE", "1")))
    if batch_size % n:
        raise LthError(f"--batch-size {batch_size} does not split over {n} ranks: the global batch must be a "
                       f"multiple of the world size (e.g. {batch_size - batch_size % n or n})")


def check_same(what: dict) -> None:
    """Fail on every rank, with one line, when the ranks were started with different settings
    (`what`: the config hash, run directory, ...): all-gather their digests at start."""
    if not active():
        return
    text = json.dumps(what, sort_keys=True, default=str)
    mine = hashlib.sha256(text.encode()).hexdigest()[:12]
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, (mine, what))
    if len({g[0] for g in gathered}) > 1:
        other = next(i for i, g in enumerate(gathered) if g[0] != gathered[0][0])
        keys = sorted(k for k in what if gathered[other][1].get(k) != gathered[0][1].get(k))
        raise LthError(f"ranks 0 and {other} were started with different settings ({', '.join(keys)}: "
                       f"{[gathered[0][1].get(k) for k in keys]} vs {[gathered[other][1].get(k) for k in keys]}); "
                       f"start every rank with the same command")


def agreed(fn: Callable):
    """fn() on every rank (checks of the input that each rank can make itself); an LthError on
    any rank is raised on all, with the lowest failing rank's message, so that bad input stops
    every rank with the same one line and none is left waiting in a later collective. Returns
    this rank's own value. In a single process: fn()."""
    if not active():
        return fn()
    try:
        value, error = fn(), None
    except LthError as e:
        value, error = None, str(e)
    errors = [None] * world_size()
    dist.all_gather_object(errors, error)
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise LthError(first)
    return value


def decided(fn: Callable):
    """Rank 0's fn() on every rank (the others do not call it): for what the file system says
    (does this result exist yet? is the lock free?), which could change between two ranks'
    looks while another process works on the same folder. An LthError on rank 0 is raised on
    every rank. The value must pickle. In a single process: fn()."""
    if not active():
        return fn()
    box = [None]
    if is_main():
        try:
            box = [("value", fn())]
        except LthError as e:
            box = [("error", str(e))]
    dist.broadcast_object_list(box, 0)
    kind, value = box[0]
    if kind == "error":
        raise LthError(value)
    return value


def prepare_model(model: nn.Module, sync_bn: bool, device: torch.device) -> nn.Module:
    """SyncBatchNorm (--sync-bn) under torchrun; the same module otherwise. Call before the masks
    are made (they hold the conv/linear weights, which the conversion keeps)."""
    if not sync_bn:
        return model
    if device.type != "cuda":
        raise LthError("--sync-bn needs CUDA: torch's SyncBatchNorm runs on GPUs only (drop it on the CPU)")
    if not active():
        return model  # one process: SyncBatchNorm would equal BatchNorm
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def data_parallel(model: nn.Module, forward: Optional[Callable] = None) -> Callable:
    """The callable the training step runs: DistributedDataParallel around `model` under
    torchrun (gradients averaged over the ranks in backward), else `forward` or `model`."""
    if not active():
        return forward or model
    if forward is not None and forward is not model:
        raise LthError("--compile is not supported with torchrun yet: drop --compile")
    device = next(model.parameters()).device
    # DDP's default broadcasts rank 0's buffers (BatchNorm running statistics) before every forward
    return nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def mask_checksum(masks) -> torch.Tensor:
    """Per layer: the kept count and the sum of the kept flat indices squared mod a prime
    (int64, on the CPU), so that any mask differing between ranks differs here."""
    out = []
    for mask in masks.tensors:
        kept = torch.nonzero(mask.reshape(-1)).squeeze(1).cpu()
        out += [kept.numel(), int(((kept * kept + kept) % CHECKSUM_PRIME).sum())]
    return torch.tensor(out, dtype=torch.int64)


def params_checksum(model: nn.Module) -> torch.Tensor:
    """Sums of every parameter and buffer in float64: equal on every rank when weights agree."""
    values = [t.detach().double().sum() for t in list(model.parameters()) + list(model.buffers()) if t.is_floating_point()]
    return torch.stack(values).cpu() if values else torch.zeros(1, dtype=torch.float64)


def _disagree(values: torch.Tensor) -> Optional[int]:
    """Index of the first entry that differs between ranks (MIN != MAX), or None. gloo reduces
    CPU tensors; NCCL needs them on this rank's GPU."""
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    low, high = values.to(device), values.to(device).clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    differ = torch.nonzero(low != high)
    return int(differ[0]) if len(differ) else None


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's BatchNorm running statistics to every rank (they drift apart within an epoch)."""
    for buffer in model.buffers():
        dist.broadcast(buffer.data, 0)


class DistributedCheck(Callback):
    """The training loop's data-parallel duties (lth.training.loop.train(callbacks=[...])):
    - masks: a checksum all-reduce at the start, after every mask update and at the end; a
      difference between ranks is an error naming the layer and the step;
    - weights: a checksum at the start (a resume must load the same state everywhere) and end;
    - BatchNorm running statistics: rank 0's broadcast at each epoch's end, before evaluation;
    - metrics: train loss and accuracy averaged over the ranks (equal slices: the global
      batch's), images/s summed over them, the per-rank rate kept as images_per_s_per_rank."""

    def __init__(self):
        self.updates = 0
        self.mask_checks = 0  # checksum comparisons that passed (logged at the end: the evidence)

    def _check_masks(self, loop, when: str) -> None:
        if loop.masks is None:
            return
        self.mask_checks += 1
        at = _disagree(mask_checksum(loop.masks))
        if at is not None:
            raise LthError(f"masks differ between ranks {when} at step {loop.step} (layer "
                           f"{loop.masks.names[at // 2]}); the run cannot continue: rerun to resume from the last "
                           f"checkpoint")

    def _check_weights(self, loop, when: str) -> None:
        if _disagree(params_checksum(loop.model)) is not None:
            raise LthError(f"weights differ between ranks {when} (step {loop.step}); rerun to resume from the "
                           f"last checkpoint")

    def on_train_start(self, loop) -> None:
        if not active():
            return
        self.updates = getattr(loop.pruning, "updates", 0)
        self._check_masks(loop, "at the start")
        self._check_weights(loop, "at the start")

    def before_step(self, loop) -> None:
        pruning = loop.pruning
        if active() and pruning is not None and pruning.updates != self.updates:
            self.updates = pruning.updates
            self._check_masks(loop, "after a mask update")

    def after_step(self, loop, loss) -> None:
        if active() and (loop.train_loader.consumed == len(loop.train_loader) or loop.step >= loop.total):
            broadcast_buffers(loop.model)

    def on_epoch_end(self, loop, line: dict) -> None:
        if not active():
            return
        n = world_size()
        stats = torch.tensor([line["train_loss"], line["train_acc"], line["images_per_s"]], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            stats = stats.to(loop.device)
        dist.all_reduce(stats)
        line["images_per_s_per_rank"] = line["images_per_s"]
        line.update(train_loss=float(stats[0]) / n, train_acc=float(stats[1]) / n, images_per_s=float(stats[2]))

    def on_train_end(self, loop) -> None:
        if not active():
            return
        self._check_masks(loop, "at the end")
        self._check_weights(loop, "at the end")
        log.info("masks identical on all %d ranks at %d checksum checks; weights identical at the end",
                 world_size(), self.mask_checks)


def callbacks() -> list:
    """The callbacks a data-parallel run adds to lth.training.loop.train (none in one process)."""
    return [DistributedCheck()] if active() else []
