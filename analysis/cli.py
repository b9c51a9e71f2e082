"""Command-line pieces shared by `python -m analysis.stability` and `python -m analysis.figures`:
a parser whose errors are one line (exit 2), the settings flags, run and round selection.
"""
import argparse
from pathlib import Path
from typing import List, Sequence, Tuple

from analysis.settings import BN_MODES, CopySettings, ProbeSettings
from lth.config import RunConfig
from lth.errors import LthError
from lth.runs.store import RunStore, open_run
from lth.knobs import number

DEFAULTS = ProbeSettings()    # the probe flags' defaults are the dataclass's


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that name a result (analysis.settings): measuring and drawing share them."""
    parser.add_argument("--seed", type=number(int, "seed", ge=0, lt=2 ** 63 - 1), default=0,
                        help="copy a trains with order/augment seeds from SEED, copy b from SEED+1; "
                             "the controls' random init and mask draw from it too [default: 0]")
    parser.add_argument("--alphas", type=number(int, "alphas", ge=2), default=DEFAULTS.alphas,
                        help="interpolation grid points in [0, 1], endpoints included; 0.5 is always "
                             f"evaluated (Frankle et al. 2020: 30) [default: {DEFAULTS.alphas}]")
    parser.add_argument("--bn", default=DEFAULTS.bn, choices=BN_MODES,
                        help="BatchNorm statistics of an interpolated network: recomputed on training "
                             f"batches (reset) or interpolated like the weights [default: {DEFAULTS.bn}]")
    parser.add_argument("--bn-batches", type=number(int, "bn_batches", ge=1), default=DEFAULTS.bn_batches,
                        help="--bn reset: training batches (the run's batch size, no augmentation) "
                             f"used to recompute the statistics [default: {DEFAULTS.bn_batches}]")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=number(float, "epochs", gt=0), default=None,
                        help="train the copies for this many epochs instead of the run's round budget")
    budget.add_argument("--steps", type=number(int, "steps", ge=1), default=None,
                        help="train the copies for this many optimizer steps instead of the run's round budget")


def settings_from_args(args: argparse.Namespace, eval_batch_size: int = DEFAULTS.eval_batch_size
                       ) -> Tuple[CopySettings, ProbeSettings]:
    """The settings the flags name; LthError for values outside their range."""
    checks = [
        (args.seed >= 0, f"--seed must be at least 0, got {args.seed}"),
        (args.alphas >= 2, f"--alphas must be at least 2 (the two endpoints), got {args.alphas}"),
        (args.bn_batches >= 1, f"--bn-batches must be at least 1, got {args.bn_batches}"),
        (args.epochs is None or args.epochs > 0, f"--epochs must be positive, got {args.epochs}"),
        (args.steps is None or args.steps >= 1, f"--steps must be at least 1, got {args.steps}"),
        (eval_batch_size >= 1, f"--eval-batch-size must be at least 1, got {eval_batch_size}"),
    ]
    for ok, message in checks:
        if not ok:
            raise LthError(message)
    copies = CopySettings(seed=args.seed, epochs=args.epochs, steps=args.steps)
    probe = ProbeSettings(bn=args.bn, alphas=args.alphas, bn_batches=args.bn_batches,
                          eval_batch_size=eval_batch_size)
    return copies, probe


def open_runs(paths: Sequence[str]) -> List[RunStore]:
    """The runs, refusing a path that is not a run, a run with no finished round, and a mix of
    datasets (their errors are not comparable)."""
    unique = {}
    for path in paths:
        unique.setdefault(Path(path).resolve(), path)  # a run named twice counts once
    stores = [open_run(path) for path in unique.values()]
    for store in stores:
        if not store.finished_rounds():
            raise LthError(f"{store.root} has no finished round yet; finish at least one round "
                           f"(python -m lth.run --resume {store.root})")
    datasets = {store.root: run_config(store).data.dataset for store in stores}
    if len(set(datasets.values())) > 1:
        listed = ", ".join(f"{root} is {name}" for root, name in datasets.items())
        raise LthError(f"runs of different datasets cannot be mixed in one analysis ({listed}); "
                       f"analyse each dataset separately")
    return stores


def run_name(store: RunStore) -> str:
    """The run directory's own name, however the path to it was written ('.', 'runs/x/')."""
    return store.root.resolve().name


def run_config(store: RunStore) -> RunConfig:
    """The run's resolved config as config.json records it."""
    return store.run_config().resolved()


def select_rounds(spec: Sequence[str], store: RunStore, flag: str) -> List[int]:
    """Rounds named by `all`, `last` (the last finished round) or numbers; each must be finished."""
    finished = store.finished_rounds()
    if list(spec) == ["all"]:
        return finished
    if list(spec) == ["last"]:
        return finished[-1:]
    rounds = []
    for text in spec:
        if not text.isdigit() or int(text) < 1:
            raise LthError(f"{flag} takes round numbers (1, 2, ...), 'all' or 'last', got {text!r}")
        r = int(text)
        if r not in finished:
            raise LthError(f"round {r} of {store.root} is not finished (finished rounds: "
                           f"{', '.join(map(str, finished))})")
        rounds.append(r)
    return sorted(set(rounds))


def check_out_dir(out) -> Path:
    """The --out folder, refused early when a file is in the way (before any work is done)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LthError(f"--out {out} exists and is not a folder")
    return out
