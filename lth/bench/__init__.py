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
from lth.bench.cli import main, run

__all__ = ["main", "run"]
