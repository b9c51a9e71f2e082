"""The main job: iterative magnitude pruning with an in-round schedule.

    python -m lth.run --schedule ocp --rounds 14                 # the paper's setting (GPU)
    python -m lth.run --preset quick --schedule ocp --rounds 14  # offline, seconds on a CPU
    python -m lth.run --rounds 1 --final-sparsity 0.9            # Experiment A: prune in one run
    python -m lth.run --resume runs/<name>                       # continue a killed run
    python -m lth.run --nproc-per-node 2 --preset quick          # 2 data-parallel ranks (docs/distributed.md)

Running the same command again resumes: finished rounds are skipped, an unfinished round
continues from its last epoch checkpoint. `--help` lists every flag with its default and range.
This module only parses flags and prints; the run itself is `lth.execute` (lth/lottery/execution.py).
"""
import sys
from pathlib import Path

from lth import config as config_mod
from lth.training import launch
from lth.errors import EXIT_INTERRUPTED, LthError
from lth.knobs import number
from lth.lottery.execution import execute
from lth.runs.store import open_run, run_name
from lth.training import distributed


def parser():
    p = config_mod.build_parser("python -m lth.run", __doc__.split("\n\n")[0])
    p.add_argument("--run-dir", default=None, help="use this run directory instead of RUNS_ROOT/<name>")
    p.add_argument("--layers-list", action="store_true",
                   help="print the model's prunable layers (kind, shape, output layer, pruned by --layers/--exclude) and exit")
    p.add_argument("--dry-run", action="store_true",
                   help="print what the run would train, the preset's source and the estimated device-hours; write nothing")
    p.add_argument("--assume-tflops", type=number(float, "assume_tflops", gt=0), default=100.0,
                   help="--dry-run on CUDA: sustained training TFLOP/s assumed [default: 100]")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR with its saved config (only runtime flags may change)")
    p.add_argument("--nproc-per-node", type=number(int, "nproc_per_node", ge=1), default=None, metavar="N",
                   help="train with N data-parallel ranks on this node (torchrun's launcher; lth.training.launch)")
    return p


def resolve_config(argv, with_run_dir: bool = True):
    """The resolved, validated config and the run directory (None unless with_run_dir), from the
    flags (and --resume)."""
    cfg, args = config_mod.from_args(argv, parser())
    if args.resume:
        if args.preset or args.config:
            raise LthError("--resume continues a run with its saved config; --preset and --config "
                           "cannot change it (drop them, or start a new run without --resume)")
        saved = open_run(args.resume).run_config()
        config_mod.apply_overrides(saved, config_mod.explicit_flags(args), "flags")
        cfg = saved
    cfg = config_mod.resolve(cfg)
    return cfg, run_dir_of(cfg, args) if with_run_dir else None


def run_dir_of(cfg, args) -> Path:
    """--resume, --run-dir, or runs_root/<name with the config's hash>: the hash reads a Hub
    model's or tokenizer's content (network), so --dry-run and --layers-list never ask for it."""
    return Path(args.resume or args.run_dir or Path(cfg.runtime.runs_root) / run_name(cfg))


def main(argv=None) -> int:
    nproc, rest = launch.split(list(sys.argv[1:] if argv is None else argv))
    args = parser().parse_args(rest)   # the flags resolve_config reads: what to do with the config
    cfg, run_dir = resolve_config(rest, with_run_dir=not (args.dry_run or args.layers_list))
    if args.layers_list:   # issue 21: inspect, write nothing
        from lth.lottery.layer_list import print_layers
        return print_layers(cfg)
    if args.dry_run:       # issue 21: what it would cost, write nothing
        from lth.study.dry_run import estimate_lines
        kind = "cpu" if cfg.runtime.device == "cpu" else "cuda"   # auto: the estimate is for a GPU (paper scale)
        for line in estimate_lines(cfg, args.preset, kind, args.assume_tflops):
            print(line)
        return 0
    if nproc is not None and not distributed.launched():  # issue 22: start the ranks (lth.training.launch)
        distributed.check_batch(cfg.train.batch_size, nproc)
        return launch.launch(nproc, rest)
    try:
        result = execute(cfg, run_dir=run_dir, device=cfg.runtime.device, progress=cfg.runtime.progress)
        if not distributed.is_main():  # issue 22: under torchrun rank 0 alone reports
            return 0
    except RuntimeError as e:
        error = distributed.peer_lost_error(e, launch.RUN_KEPT)
        if error is None:
            raise
        raise error from None
    except KeyboardInterrupt:
        finished = len(open_run(run_dir).finished_rounds()) if (run_dir / "config.json").exists() else 0
        print(f"interrupted: {finished} of {cfg.prune.rounds} rounds kept in {run_dir}; "
              f"run the same command again (or python -m lth.run --resume {run_dir}) to continue",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"{'round':>5}  {'sparsity':>8}  {'test acc':>8}  {'best@fin':>8}  {'time s':>7}")
    for s in result.summaries:
        best = s.get("best_acc_at_final_sparsity", float("nan"))   # nan: a round saved before issue 10
        print(f"{s['round']:>5}  {s['sparsity']:>8.4f}  {s['test_acc']:>8.4f}  {best:>8.4f}  {s['wall_time_s']:>7.1f}")
    print(f"run directory: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(distributed.cli_main_then_leave(main))  # torchrun: every rank leaves the process group
