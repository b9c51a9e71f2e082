"""Structured pruning in one training cycle: `python -m lth.structured`.

    python -m lth.structured --data-dir ~/data                      # OCSPruner, ResNet-20, CIFAR-10, 50 % FLOPs, 300 epochs
    python -m lth.structured --method ocp --flops-rr 0.5            # one-cycle schedule on the same channel groups
    python -m lth.structured --prune-at 0                           # ablation: prune the initial weights
    python -m lth.structured --prune-at end                         # ablation: prune after training
    python -m lth.structured --method dense                         # the unpruned reference
    python -m lth.structured --dataset digits --model conv2 --augment none --lr 0.02 --epochs 8 --milestones 0.75 \
        --monitor-start 1 --sl-start 1 --sl-end 3                # offline, 15 s on a CPU: about 95 % accuracy

The digits example needs its own recipe: CIFAR's crop+flip (4 px padding) erases 8 px digits,
and at CIFAR's LR 0.1 conv2 does not learn (9 % after 6 epochs). tests/test_examples_run.py
runs these examples. Running the same command again resumes after the last finished epoch; a
finished run (its summary.json exists) is reported, never overwritten. `--help` lists every
flag and default. Not under torchrun: started by it, every rank stops with one line (exit 2).
"""
import logging
import sys
import time
from pathlib import Path

from lth.data import sources
from lth.runs import provenance
from lth.errors import EXIT_INTERRUPTED, LthError
from lth.structured import config, loop
from lth.structured.store import StructuredStore
from lth.training import distributed
from lth.training.device import pick_device

log = logging.getLogger("lth.structured")


def parser():
    return config.build_parser("python -m lth.structured", __doc__.split("\n\n")[0])


def _table(summary: dict, run_dir: Path) -> None:
    lat = summary["latency_ms"]
    print(f"{'network':>8}  {'test acc':>8}  {'MFLOPs':>8}  {'params':>8}  "
          + "  ".join(f"{'ms@' + b:>8}" for b in lat["dense"]))
    print(f"{'dense':>8}  {'':>8}  {summary['dense_flops'] / 1e6:>8.2f}  {summary['dense_params']:>8d}  "
          + "  ".join(f"{v:>8.2f}" for v in lat["dense"].values()))
    print(f"{summary['method']:>8}  {summary['test_acc']:>8.4f}  {summary['flops'] / 1e6:>8.2f}  "
          f"{summary['params']:>8d}  " + "  ".join(f"{v:>8.2f}" for v in lat["pruned"].values()))
    extra = f", stable epoch {summary['stable_epoch']} ({summary['trigger']})" if summary.get("trigger") else ""
    print(f"FLOPs reduction {summary['flops_rr']:.4f}, pruned at epoch {summary['pruned_epoch']}{extra}")
    print(f"run directory: {run_dir}")


def main(argv=None) -> int:
    cfg, args = config.from_args(argv, parser())
    if distributed.launched():   # issue 22: before anything is read or written, on every rank alike
        raise LthError("python -m lth.structured does not run under torchrun: it removes channels while training, "
                       "and the data-parallel wrapper and the ranks' agreement on the channels are not built for "
                       "that yet; run it in one process (docs/distributed.md)")
    run_dir = Path(args.run_dir or Path(cfg.base.runtime.runs_root) / cfg.run_name())
    store = StructuredStore(run_dir)
    if store.exists():
        saved = config.StructuredRun.from_dict(store.meta()["config"], str(store.meta_path))
        a, b = saved.experiment_dict(), cfg.experiment_dict()
        if a != b:
            differ = config.base_config.differing_fields(a, b)
            raise LthError(f"{run_dir} holds a run with a different config (differs in {', '.join(differ[:6])}); "
                           f"nothing was changed; pick another --run-dir or drop the differing flags")
        if store.done():
            log.info("%s is finished; its results are kept as they are", run_dir)
            _table(store.summary(), run_dir)
            return 0
    device = pick_device(cfg.base.runtime.device)
    dataset = sources.load_config(cfg.base)   # issue 21: folders, imagenet, factories too
    job = loop.prepare(cfg, dataset, device)    # every check before the first write
    prov = provenance.collect()
    store.create({"config": cfg.to_dict(), "hash": cfg.hash(), "name": cfg.run_name(),
                  "num_classes": dataset.num_classes, "in_channels": dataset.in_channels,
                  "image_size": job.image_size, "epochs": job.epochs, **prov.meta,
                  "device": str(device), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                 provenance_diff=prov.diff)
    with store.lock():
        log.info("run %s: %s on %s, %d epochs", run_dir, cfg.structured.method, device, job.epochs)
        try:
            summary = loop.run(job, store, progress=cfg.base.runtime.progress)
        except KeyboardInterrupt:
            print(f"interrupted: run the same command again to continue {run_dir} after its last epoch",
                  file=sys.stderr)
            return EXIT_INTERRUPTED
    _table(summary, run_dir)
    return 0
