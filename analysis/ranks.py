"""The stability analysis under torchrun (issue 22): rank 0 decides what the files say and
writes; every rank trains and evaluates.

    torchrun --nproc_per_node 2 -m analysis.stability runs/<name> --rounds last

Every rank runs the same analysis on the same inputs. Each copy trains data-parallel through
lth.training.loop (DistributedDataParallel, each rank its slice of the global batch) and the
interpolation's evaluations are sharded over the ranks (lth.training.loop.evaluate), so every
rank holds the same copies and the same curve. What could differ between ranks is what the
file system says at the moment each looks (a folder's lock, a finished copy, a checkpoint, a
saved result: another process may be working on the same run), so rank 0 looks and tells the
others (`decided`); and only rank 0 writes (copies, checkpoints, results, the table and the
figures), as in `lth.run` (lth.runs.follower). The others never read a file rank 0 writes in
the same session: they hold the same copies in memory, so no barrier is needed after a write.
In a single process every helper here is the plain call.
"""
import contextlib
from typing import Iterator

from lth.runs.store import RunStore
from lth.training import distributed


@contextlib.contextmanager
def stability_lock(store: RunStore, r: int, kind: str, wait: bool) -> Iterator[bool]:
    """RunStore.stability_lock, held by rank 0 for all ranks (held or not: rank 0's answer).
    With wait=True the others wait in a collective while rank 0 waits for the lock, at most
    LTH_DIST_TIMEOUT_S seconds (lth.training.distributed)."""
    if distributed.is_main():
        with store.stability_lock(r, kind, wait) as held:
            yield distributed.decided(lambda: held)
    else:
        yield distributed.decided(lambda: None)


def writes() -> bool:
    """Whether this process writes the analysis's files: rank 0, or the only process."""
    return distributed.is_main()
