"""The main job: iterative magnitude pruning with an in-round schedule.

    python -m lth.run --schedule ocp --rounds 14                 # the paper's setting (GPU)
    python -m lth.run --preset quick --schedule ocp --rounds 14  # offline, minutes on a CPU
    python -m lth.run --rounds 1 --final-sparsity 0.9            # Experiment A: prune in one run
    python -m lth.run --resume runs/<name>                       # continue a killed run

Running the same command again resumes: finished rounds are skipped, an unfinished round
continues from its last epoch checkpoint. `--help` lists every flag with its default.
"""
import logging
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

import lth
from lth import config as config_mod
from lth import data, imp
from lth.errors import EXIT_INTERRUPTED, LthError, cli_main
from lth.store import RunStore, open_run
from lth.train import pick_device

log = logging.getLogger("lth.run")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(lth.__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_metadata(cfg: config_mod.RunConfig, device: torch.device) -> dict:
    return {"config": cfg.to_dict(), "hash": cfg.hash(), "name": cfg.run_name(),
            "versions": {"lth": lth.__version__, "torch": torch.__version__, "python": platform.python_version()},
            "git_commit": git_commit(), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def differing_fields(a: dict, b: dict) -> list:
    return sorted(f"{s}.{k}" for s in set(a) | set(b) for k in set(a.get(s, {})) | set(b.get(s, {}))
                  if a.get(s, {}).get(k) != b.get(s, {}).get(k))


def parser():
    p = config_mod.build_parser("python -m lth.run", __doc__.split("\n\n")[0])
    p.add_argument("--run-dir", default=None, help="use this run directory instead of RUNS_ROOT/<name>")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR with its saved config (runtime flags may change)")
    return p


def resolve_config(argv):
    """The resolved, validated config and the run directory, from the flags (and --resume)."""
    cfg, args = config_mod.from_args(argv, parser())
    if args.resume:
        store = open_run(args.resume)
        saved = store.run_config()
        explicit = {k: v for k, v in vars(args).items() if k not in ("preset", "config", "run_dir", "resume")}
        explicit = {k: tuple(v) if isinstance(v, list) else v for k, v in explicit.items()}
        config_mod.apply_overrides(saved, explicit, "flags")
        cfg = saved
    cfg = cfg.resolved()
    config_mod.validate(cfg)
    run_dir = Path(args.resume or args.run_dir or Path(cfg.runtime.runs_root) / cfg.run_name())
    return cfg, run_dir


def main(argv=None) -> int:
    cfg, run_dir = resolve_config(argv)
    device = pick_device(cfg.runtime.device)
    dataset = data.load(cfg.data.dataset, cfg.data.data_dir, cfg.data.download, cfg.data.split_seed)
    imp.check_budget(cfg, dataset)
    imp.check_model_fits(cfg, dataset)
    store = RunStore(run_dir)
    if store.is_run():
        saved = store.run_config()
        if saved.experiment_dict() != cfg.experiment_dict():
            fields = ", ".join(differing_fields(saved.experiment_dict(), cfg.experiment_dict())[:6])
            raise LthError(f"{run_dir} holds a run with a different config (differs in {fields}); "
                           f"nothing was changed; pick another --run-dir or drop the differing flags")
    store.create(run_metadata(cfg, device))
    with store.lock():
        for path in store.remove_stale_temp_files():
            log.info("removed %s, left by a writer that was killed mid-write", path)
        done = len(store.finished_rounds())
        log.info("run %s: %s on %s, %d of %d rounds done", run_dir, cfg.prune.schedule, device, done, cfg.prune.rounds)
        try:
            summaries = imp.run(cfg, store, dataset, device, progress=cfg.runtime.progress)
        except KeyboardInterrupt:
            finished = len(store.finished_rounds())
            print(f"interrupted: {finished} of {cfg.prune.rounds} rounds kept in {run_dir}; "
                  f"run the same command again (or python -m lth.run --resume {run_dir}) to continue",
                  file=sys.stderr)
            return EXIT_INTERRUPTED
    print(f"{'round':>5}  {'sparsity':>8}  {'test acc':>8}  {'best@fin':>8}  {'time s':>7}")
    for s in summaries:
        print(f"{s['round']:>5}  {s['sparsity']:>8.4f}  {s['test_acc']:>8.4f}  {s.get('best_acc_at_final_sparsity', float('nan')):>8.4f}  "
              f"{s['wall_time_s']:>7.1f}")
    print(f"run directory: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
