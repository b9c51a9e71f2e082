"""`python -m lth.run --nproc-per-node N ...`: torchrun's launcher, with lth's one-line errors.

    python -m lth.run --nproc-per-node 2 --preset quick --rounds 3 --device cpu
    python -m analysis.stability --nproc-per-node 2 runs/<name>        # the same for the analysis

starts N ranks of `python -m lth.run ...` (the same flags, without --nproc-per-node) on this node,
as `torchrun --standalone --nproc_per_node N -m lth.run ...` does, through torch's own launcher
(torch.distributed.launcher.api.elastic_launch). What it adds (issue 22, docs/distributed.md):
- the config is checked here first, world size included, so bad input (a world size that does
  not divide the batch, an unknown flag) is one line and exit 2 before any rank starts;
- a rank's failure ends in one line and lth's exit code instead of torchrun's ChildFailedError
  report: exit 2 when a rank stopped on bad input (each rank printed its one line), else a line
  naming the rank and how it ended, exit 1; the run resumes when the command is run again.
"""
import logging
import os
import signal
import sys
import uuid
from typing import List, Optional, Tuple

from lth.errors import EXIT_USAGE, LthError

FLAG = "--nproc-per-node"


def split(argv: List[str]) -> Tuple[Optional[int], List[str]]:
    """(N, the other flags) from `--nproc-per-node N` or `--nproc-per-node=N`; N is None without it."""
    n, rest, i = None, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == FLAG or arg.startswith(FLAG + "="):
            text = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            i += 1 if "=" in arg else 2
            if not text.isdigit() or int(text) < 1:
                raise LthError(f"{FLAG} must be a whole number of ranks >= 1, got {text!r}")
            n = int(text)
            continue
        rest.append(arg)
        i += 1
    return n, rest


RUN_KEPT = "finished rounds and the last epoch checkpoint are kept"


def launch(n: int, argv: List[str], module: str = "lth.run", kept: str = RUN_KEPT) -> int:
    """Run `python -m MODULE argv` as n ranks on this node; returns lth's exit code. kept: what
    a rerun finds after a rank died (the one-line report says it)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch
    # torch's launcher logs every rank's end and the failure report as warnings and errors:
    # lth says it in one line below (the ranks' own output is untouched).
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=n, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                          monitor_interval=0.1, start_method="spawn")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default too: one thread per rank
    try:
        elastic_launch(config, sys.executable)("-m", module, *argv)
    except ChildFailedError as e:
        rank, failure = _cause(e)
        if failure.exitcode == EXIT_USAGE:
            return EXIT_USAGE  # the ranks printed their one-line error
        how = f"was killed by signal {-failure.exitcode}" if failure.exitcode < 0 else f"exited with code {failure.exitcode}"
        print(f"error: rank {rank} {how}; the other ranks were stopped; {kept}: run the same command again "
              f"to resume", file=sys.stderr)
        return 1
    return 0


def _cause(e) -> tuple:
    """(rank, failure) of the rank whose end started it: a rank killed by a signal other than
    SIGTERM (the launcher stopping the rest) or SIGABRT (gloo aborting when a peer's connection
    closes, which can come first); else the earliest failure."""
    consequences = (-signal.SIGTERM, -signal.SIGABRT)
    killed = [(r, f) for r, f in e.failures.items() if f.exitcode < 0 and f.exitcode not in consequences]
    return min(killed, key=lambda rf: rf[1].timestamp) if killed else e.get_first_failure()

