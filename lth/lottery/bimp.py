"""BIMP (Zimmer et al., budgeted IMP) in one command, and its baselines at the same budget.

    python -m lth.bimp --preset mnist --recipe openlth --lr 0.05 --budget-epochs 20 --rounds 3 \
        --final-sparsity 0.9 --baselines ocp agp

A total budget of B optimizer steps is split into a dense phase of D steps (`--dense-lr-schedule
linear` by default, Li et al.'s budgeted training) and J = --rounds prune-retrain phases of n
steps each (global magnitude pruning at the start of each phase, `--retrain-lr-schedule allr`):

    B = round(budget_epochs * steps_per_epoch)     (or --budget-steps)
    n = floor((B - round(dense_fraction * B)) / J),   D = B - J * n   (the remainder goes to D)

so that B = D + J n exactly. Each `--baselines` schedule (ocp, agp, ...) is one round of B steps
from W0 to the same final sparsity, with the run's own LR schedule (the recipe's unless
--lr-schedule is given). The runs are ordinary lth runs (python -m lth.run would make the same
directories); the equivalent pair of commands for BIMP:

    python -m lth.run FLAGS --schedule dense --lr-schedule linear --steps D
    python -m lth.run FLAGS --restart continue --from-run runs/<the dense run> --schedule one_shot \
        --start 0 --scope global --layers all --layer-rate --final-sparsity S --rounds J \
        --lr-schedule allr --steps n

Flags that BIMP sets itself (--schedule, --restart, --steps, ...) are refused; every other flag
of lth.run applies to all runs (an LR-schedule parameter to the runs whose schedule has it).
Unless given, --rounds 3 --scope global --layers all --layer-rate (none): Zimmer et al.'s
global magnitude pruning of every conv and linear weight, for BIMP and the baselines alike.
"""
import argparse
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from lth.lottery import assemble
from lth import config as config_mod
from lth.errors import LthError
from lth.knobs import number
from lth.lottery.execution import execute
from lth.training.lr_schedules import LR_SCHEDULES
from lth.training.retrain_lr import context_needs
from lth.pruning.schedules import SCHEDULES
from lth.runs.store import run_name
from lth.training import distributed

# Set by BIMP for its runs: given on the command line they are an error.
OWNED = ("schedule", "restart", "from_run", "steps", "epochs", "start", "rate", "lr_schedule")
# Defaults where lth.run's differ (a preset's values count as not given): J = 3 phases (lth.run's
# 14 rounds are IMP's), and Zimmer et al.'s pruning: one global magnitude threshold over every
# conv and linear weight (output layer included, no per-layer rates).
ZIMMER_DEFAULTS = {"rounds": 3, "scope": "global", "layers": "all", "layer_rate": ()}


def lr_params() -> frozenset:
    """Every LR-schedule parameter, routed to the runs whose LR schedule has it (read when
    used: a plugin's LR schedule counts)."""
    return frozenset(LR_SCHEDULES.param_fields())


def parser() -> argparse.ArgumentParser:
    plain = LR_SCHEDULES.with_trait("needs_context", None)
    retrain = [n for n in LR_SCHEDULES.names() if context_needs(n) is not None]
    p = config_mod.build_parser("python -m lth.bimp", __doc__.split("\n\n")[0])
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-epochs", type=number(float, "budget_epochs", gt=0),
                        help="total budget B in epochs of the training set (> 0)")
    budget.add_argument("--budget-steps", type=number(int, "budget_steps", ge=1),
                        help="total budget B in optimizer steps (>= 1)")
    p.add_argument("--dense-fraction", type=number(float, "dense_fraction", gt=0, lt=1), default=0.5,
                   help="share of B for the dense phase (Zimmer et al.'s split was not retrieved; our choice) "
                        "[default: 0.5; > 0 and < 1]")
    p.add_argument("--dense-lr-schedule", default="linear", choices=plain,
                   help="LR schedule of the dense phase [default: linear]")
    p.add_argument("--retrain-lr-schedule", default="allr", choices=retrain,
                   help="LR schedule of each prune-retrain phase [default: allr]")
    p.add_argument("--baselines", nargs="*", default=[], choices=SCHEDULES.with_trait("prunes"),
                   help="pruning-during-training schedules run at the same budget (e.g. ocp agp)")
    p.add_argument("--baseline-lr-schedule", default=None, choices=plain,
                   help="LR schedule of the baselines [default: the recipe's]")
    return p


def split_budget(total: int, dense_fraction: float, phases: int) -> Tuple[int, int]:
    """(D, n): the dense steps and the steps of each of `phases` phases, D + phases * n = total."""
    if not 0 < dense_fraction < 1:
        raise LthError(f"--dense-fraction must be in (0, 1), got {dense_fraction}")
    per_phase = (total - round(dense_fraction * total)) // phases
    if per_phase < 1:
        raise LthError(f"a budget of {total} steps leaves no step for each of {phases} phases at --dense-fraction "
                       f"{dense_fraction}; raise the budget or lower --dense-fraction")
    return total - phases * per_phase, per_phase


def route_flags(flags: dict, schedules: Dict[str, str]) -> Dict[str, dict]:
    """Per run kind, the flags it takes: an LR-schedule parameter only where that run's schedule
    declares it (an error when none does), everything else everywhere."""
    out = {kind: {} for kind in schedules}
    routed_params = lr_params()
    for key, value in flags.items():
        if key in routed_params:
            takers = [kind for kind, name in schedules.items() if key in LR_SCHEDULES.get(name).param_names()]
            if not takers:
                raise LthError(f"--{key.replace('_', '-')} belongs to no LR schedule of this BIMP run "
                               f"({', '.join(sorted(set(schedules.values())))})")
            for kind in takers:
                out[kind][key] = value
        else:
            for kind in out:
                out[kind][key] = value
    return out


def make_config(args, overrides: dict) -> config_mod.ResolvedConfig:
    cfg = config_mod.load_config_file(args.config) if args.config else config_mod.RunConfig()
    if args.preset:
        config_mod.apply_overrides(cfg, config_mod.PRESETS[args.preset], f"preset {args.preset}")
    config_mod.apply_overrides(cfg, overrides, "flags")
    return config_mod.resolve(cfg)


def plan(argv=None) -> Tuple[List[Tuple[str, config_mod.RunConfig]], str]:
    """The runs in order (label, resolved config) and the budget arithmetic, all validated
    before anything runs (the continue run's disk checks wait for its dense run)."""
    p = parser()
    args = p.parse_args(argv)
    flags = config_mod.explicit_flags(args)
    given = [k for k in OWNED if k in flags]
    if given:
        raise LthError(f"--{given[0].replace('_', '-')} is set by lth.lottery.bimp itself; use --dense-lr-schedule, "
                       f"--retrain-lr-schedule, --budget-epochs/--budget-steps, --dense-fraction instead")
    if flags.get("final_sparsity") is None:
        raise LthError("lth.lottery.bimp needs --final-sparsity S with 0 < S < 1")
    for key, value in ZIMMER_DEFAULTS.items():
        flags.setdefault(key, value)
    phases = flags["rounds"]
    probe = make_config(args, {k: v for k, v in flags.items() if k not in lr_params()})
    baseline_lr = args.baseline_lr_schedule or probe.train.lr_schedule
    kinds = {"dense": args.dense_lr_schedule, "bimp": args.retrain_lr_schedule,
             **{b: baseline_lr for b in args.baselines}}
    routed = route_flags(flags, kinds)
    dataset = assemble.load_data(probe)
    per_epoch = len(dataset.train_y) // probe.train.batch_size
    if args.budget_steps is not None:
        total = args.budget_steps
    else:
        if not args.budget_epochs > 0:
            raise LthError(f"--budget-epochs must be > 0, got {args.budget_epochs}")
        total = round(args.budget_epochs * per_epoch)
    dense_steps, phase_steps = split_budget(total, args.dense_fraction, phases)
    dense = make_config(args, {**routed["dense"], "schedule": "dense", "lr_schedule": args.dense_lr_schedule,
                               "steps": dense_steps})
    dense_dir = Path(dense.runtime.runs_root) / run_name(dense)
    runs = [("dense", dense),
            ("bimp", make_config(args, {**routed["bimp"], "restart": "continue", "from_run": str(dense_dir),
                                        "schedule": "one_shot", "start": 0.0,
                                        "lr_schedule": args.retrain_lr_schedule, "steps": phase_steps}))]
    for b in args.baselines:
        runs.append((b, make_config(args, {**routed[b], "schedule": b, "rounds": 1, "steps": total,
                                           "lr_schedule": baseline_lr})))
    arithmetic = (f"budget B = {total} steps ({total / per_epoch:.2f} epochs of {per_epoch} steps) = dense D "
                  f"{dense_steps} + {phases} phases x n {phase_steps}; baselines: 1 round of {total} steps")
    return runs, arithmetic


def main(argv=None) -> int:
    """Under torchrun every run trains data-parallel (each is lth.lottery.execution.execute, which
    starts the process group once); rank 0 alone prints, as in lth.run (docs/distributed.md)."""
    runs, arithmetic = plan(argv)
    return run_all(runs, arithmetic)


def run_all(runs: List[Tuple[str, config_mod.RunConfig]], arithmetic: str) -> int:
    distributed.setup(runs[0][1].runtime.device)   # under torchrun: the process group, before any run
    for _, cfg in runs:   # a world size that does not split a batch: one line on every rank, nothing run
        distributed.check_batch(cfg.train.batch_size)
    if distributed.is_main():
        print(arithmetic, flush=True)
    rows = []
    for label, cfg in runs:
        result = execute(cfg, device=cfg.runtime.device, progress=cfg.runtime.progress)
        distributed.barrier()   # the BIMP phases read the dense run's files, which rank 0 wrote
        last = result.summaries[-1]
        steps = sum(s["steps"] for s in result.summaries)
        rows.append((label, last["sparsity"], last["test_acc"], steps, result.run_dir))
    if not distributed.is_main():
        return 0
    rows[1] = rows[1][:3] + (rows[0][3] + rows[1][3],) + rows[1][4:]   # BIMP's steps include its dense phase
    print(f"{'method':>8}  {'sparsity':>8}  {'test acc':>8}  {'steps':>6}  run directory")
    for label, sparsity, acc, steps, run_dir in rows:
        print(f"{label:>8}  {sparsity:>8.4f}  {acc:>8.4f}  {steps:>6}  {run_dir}")
    return 0

if __name__ == "__main__":
    sys.exit(distributed.cli_main_then_leave(main))  # torchrun: every rank leaves the process group
