"""Training one copy of a ticket with its mask fixed: lth.training.loop with pruning=None, the run's own
resolved recipe, and the copy's own data-order and augmentation seeds.

With late rewinding (--rewind-step k) a copy, like a round, trains the remaining steps k..T-1 of
the budget T: the LR continues at step k, and the copy's loader starts k batches into its own
data order (Frankle et al. 2020; OpenLTH's branches start at the level's start step).

Resumable at two levels: a finished copy (copy_a.pt) is loaded, never retrained; an unfinished
one continues from its last epoch checkpoint (copy_a.checkpoint.pt), which lth.training.loop makes
exact, so a killed analysis finishes with the same copy as one never killed.
"""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from analysis import ranks
from analysis.settings import CopySettings
from analysis.tickets import StartingPoint
from lth.lottery import assemble
from lth.lottery.rewind_api import snapshot
from lth.config import RunConfig
from lth.data.datasets import Dataset
from lth.errors import LthError
from lth.pruning.masks import Masks
from lth.runs.files import digest, load_tensors, save_tensors
from lth.training import distributed
from lth.training.loop import fit, total_steps

log = logging.getLogger(__name__)

OUTCOME_KEYS = ("test_acc", "test_loss", "best_acc_at_final_sparsity", "train_loss", "steps", "epochs")  # the results
TIMING_KEYS = ("wall_time_s", "images_per_s")  # how long it took: differs between identical runs


@dataclass
class Workspace:
    """One model of the run's architecture with its masks, reused for every copy and as the
    interpolation probe, so that a torch.compile'd forward is compiled once per process."""
    cfg: RunConfig          # the run's resolved config with the copies' budget
    dataset: Dataset        # already on `device`
    device: torch.device
    model: nn.Module
    masks: Masks
    forward: Callable       # the model, or its compiled version (--compile in the run's config)


def copy_config(cfg: RunConfig, copies: CopySettings) -> RunConfig:
    """The run's config with the copies' budget override, if any."""
    out = RunConfig.from_dict(cfg.to_dict())
    if copies.epochs is not None:
        out.train.epochs, out.train.steps = copies.epochs, 0
    if copies.steps is not None:
        out.train.steps = copies.steps
    return out


def make_workspace(cfg: RunConfig, dataset: Dataset, device: torch.device) -> Workspace:
    dataset = dataset.to(device)
    check_copy_budget(cfg, dataset)  # refuses a batch larger than the training set, or no steps after k
    model = assemble.build_model(cfg, dataset, cfg.seeds.init_seed, device)
    forward = torch.compile(model) if cfg.train.compile else model
    return Workspace(cfg, dataset, device, model, assemble.make_masks(cfg, model), forward)


def check_copy_budget(cfg: RunConfig, dataset: Dataset) -> int:
    """The copies' budget T in steps; refuses one that leaves no step after the rewind step."""
    return assemble.check_budget(cfg, dataset, what="the copies' budget")


def start_step(ws: Workspace) -> int:
    """The step every copy starts at: the run's rewind step (0 without late rewinding)."""
    return assemble.restart_policy(ws.cfg).start_step


def budget(ws: Workspace) -> dict:
    """The copies' training budget as recorded in the results (they train steps start_step..steps-1)."""
    return {"epochs": ws.cfg.train.epochs, "steps": total_steps(ws.cfg.train, len(ws.dataset.train_y)),
            "start_step": start_step(ws), "batch_size": ws.cfg.train.batch_size}


def load_copy(path: Path, start: StartingPoint) -> dict:
    """A finished copy, checked to have been trained from `start`."""
    payload = load_tensors(path)
    if payload.get("start_digest") != digest(start.state) or payload.get("mask_digest") != digest(start.mask):
        raise LthError(f"{path} was trained from other weights or another mask than this ticket; "
                       f"delete it to train it again")
    return payload


def train_copy(ws: Workspace, start: StartingPoint, seeds: dict, path: Path, checkpoint: Path,
               progress: bool, desc: str) -> dict:
    """Train one copy from `start` under its fixed mask and save it to `path`; returns the payload
    {model, outcome, timing, metrics, seeds, start_digest, mask_digest}."""
    ws.model.load_state_dict(start.state)
    ws.masks.load_state_dict(start.mask)
    ws.masks.enforce()
    # under torchrun rank 0 says whether a checkpoint is there, and every rank loads it (analysis.ranks)
    resume = load_tensors(checkpoint) if distributed.decided(checkpoint.exists) else None
    if resume is not None:
        log.info("%s: resuming from the checkpoint after epoch %d", desc, resume["epoch"])
    loop = assemble.loop(ws.cfg, ws.dataset, ws.device, ws.model, ws.masks, ws.forward,
                         order_seed=seeds["order_seed"], augment_seed=seeds["augment_seed"], start_step=start_step(ws))
    save = (lambda state: save_tensors(checkpoint, state)) if ranks.writes() else (lambda state: None)
    # distributed.callbacks(): under torchrun, the mask and weight checks and BatchNorm broadcast of lth.run
    result = fit(loop, resume=resume, save_checkpoint=save, callbacks=distributed.callbacks(),
                 progress=progress and ranks.writes(), desc=desc)
    payload = {"model": snapshot(ws.model),
               "outcome": {k: result[k] for k in OUTCOME_KEYS}, "timing": {k: result[k] for k in TIMING_KEYS},
               "metrics": result["metrics"], "seeds": dict(seeds),
               "start_digest": digest(start.state), "mask_digest": digest(start.mask)}
    if ranks.writes():   # the other ranks' payloads are the same (weights checked at the end of fit)
        save_tensors(path, payload)
        checkpoint.unlink(missing_ok=True)
    return payload
