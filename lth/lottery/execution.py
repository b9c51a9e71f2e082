"""A whole IMP run as one library call: what `python -m lth.run`, the studies and scripts use.

    from lth import config, execute          # execute is lth.lottery.execution.execute
    cfg = config.from_overrides({"schedule": "ocp", "rounds": 14}, preset="quick")
    result = execute(cfg, runs_root="runs", device="cpu")
    result.run_dir, result.summaries[-1]["test_acc"]

Order of work (docs/DESIGN.md §7, "Never overwrite" and "Locks"): check the config and the data (nothing written yet), take
the run's lock, refuse a run directory that holds another config, write config.json, then run
or resume the rounds. Raises LthError for anything the user can fix; KeyboardInterrupt passes
through with every finished round and the last epoch checkpoint kept.
"""
import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import torch

from lth.runs import provenance
from lth.lottery import imp
from lth.lottery import assemble
from lth.config import RunConfig, differing_fields, resolve
from lth.errors import LthError
from lth.runs.follower import FollowerStore
from lth.runs.store import RunStore, run_name
from lth.training import distributed
from lth.training.device import set_threads

log = logging.getLogger("lth.lottery.execution")


@dataclass
class RunResult:
    run_dir: Path
    summaries: List[dict]   # one per round, as round_NN/summary.json holds them


def run_metadata(cfg: RunConfig, device: torch.device, prov: Optional[provenance.Provenance] = None) -> dict:
    """config.json: the resolved config, its hash and name, versions, git state, device."""
    prov = prov or provenance.collect()
    meta = {"config": cfg.to_dict(), "hash": cfg.hash(), "name": run_name(cfg), **prov.meta, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
            "threads": torch.get_num_threads(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if ":" in cfg.model.model:   # issue 21: an external model's library, and a factory's source file hash
        from lth.models import external
        meta["model_source"] = external.provenance(cfg.model.model)
    if distributed.active():  # issue 22: how many ranks trained it (not hashed: N ranks train the same run)
        meta["world_size"] = distributed.world_size()
    return meta


def check_same_config(store: RunStore, cfg: RunConfig) -> None:
    """Refuse a run directory that holds a run of another config, naming the differing fields."""
    if not store.is_run():
        return
    saved, wanted = store.run_config().resolved().experiment_dict(), cfg.experiment_dict()
    if saved != wanted:
        fields = ", ".join(differing_fields(saved, wanted)[:6])
        raise LthError(f"{store.root} holds a run with a different config (differs in {fields}); "
                       f"nothing was changed; pick another --run-dir or drop the differing flags")


def execute(cfg: RunConfig, runs_root: Optional[str] = None, run_dir: Optional[str] = None, device: str = "auto",
            progress: bool = False) -> RunResult:
    """Run, or resume, the IMP run of `cfg` (resolved here if it is not yet) in
    `run_dir`, or `runs_root/<dataset>-<model>-<schedule>-<hash8>` (runs_root defaults to
    cfg.runtime.runs_root)."""
    cfg = resolve(cfg)   # a no-op for a ResolvedConfig (the command line resolved it)
    set_threads(cfg.runtime.threads)  # before any torch work (cfg.runtime.threads: README "Performance")
    run_dir = Path(run_dir) if run_dir is not None else Path(runs_root or cfg.runtime.runs_root) / run_name(cfg)
    torch_device = distributed.setup(device)  # issue 22: under torchrun, this rank's device and the process group
    distributed.check_batch(cfg.train.batch_size)
    distributed.check_same({"config hash": cfg.hash(), "run directory": str(run_dir.resolve()),
                            "sync_bn": cfg.runtime.sync_bn, "device type": torch_device.type})
    dataset = assemble.load_data(cfg)
    assemble.check_budget(cfg, dataset)
    assemble.check_model_fits(cfg, dataset)
    assemble.check_restart(cfg, dataset)
    store = RunStore(run_dir) if distributed.is_main() else FollowerStore(run_dir)  # only rank 0 writes
    check_same_config(store, cfg)  # refuse before touching anything (not even the lock file)
    store.make_root()
    with store.lock():
        check_same_config(store, cfg)  # again, now that no other process can write config.json
        if not store.is_run():
            prov = provenance.collect()
            store.create(run_metadata(cfg, torch_device, prov), provenance_diff=prov.diff)
        for path in store.remove_stale_temp_files():
            log.info("removed %s, left by a writer that was killed mid-write", path)
        distributed.barrier()  # the other ranks read config.json and the rounds only after rank 0's cleanup
        log.info("run %s: %s on %s, %d of %d rounds done", run_dir, cfg.prune.schedule, torch_device,
                 len(store.finished_rounds()), cfg.prune.rounds)
        summaries = imp.run(cfg, store, dataset, torch_device, progress=progress)
    return RunResult(run_dir, summaries)
