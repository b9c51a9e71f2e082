"""The run directory as a non-zero data-parallel rank sees it: reads as RunStore, writes nothing.

    store = RunStore(run_dir) if distributed.is_main() else FollowerStore(run_dir)

Under torchrun every rank runs the same driver (lth.lottery.imp) on identical state, so every
rank would write identical files; only rank 0 does (docs/distributed.md). The others read what
rank 0 wrote (init.pt, rewind.pt, masks of finished rounds, epoch checkpoints); the driver puts
a barrier after each such write (lth.training.distributed.barrier). They take no lock either:
rank 0 holds the run's lock for all of them. As a second guard, lth.runs.store's atomic writes
refuse to run on a non-zero rank, so a write path that bypasses this class fails loudly.
"""
import contextlib
from pathlib import Path
from typing import List, Optional

from lth.runs.store import RunStore


class FollowerStore(RunStore):
    """A RunStore whose writes are no-ops: the view of ranks 1..N-1."""

    def make_root(self) -> None:
        pass

    def create(self, meta: dict, provenance_diff: Optional[bytes] = None) -> None:
        pass

    def lock(self):
        return contextlib.nullcontext()

    def remove_stale_temp_files(self) -> List[Path]:
        return []

    def save_init(self, state: dict) -> None:
        pass

    def save_rewind(self, state: dict) -> None:
        pass

    def save_checkpoint(self, r: int, state: dict) -> None:
        pass

    def save_round(self, r: int, mask: dict, final: dict, metrics: List[dict], summary: dict,
                   loader: Optional[dict] = None) -> None:
        pass

    def discard_checkpoint(self, r: int) -> None:
        pass
