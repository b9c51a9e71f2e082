"""The IMP driver: rounds of restart, train while pruning, save (docs/DESIGN.md §2).

    W0 = the seeded initialisation, m_0 = ones.
    --rewind-step k: first train W0 dense for k steps to W_k (lth.lottery.rewinding, rewind.pt).
    Round r = 1..R: weights <- W_start * m_{r-1} (rewind: W0, or W_k; continue: the dense run's
    final weights for r = 1, round r-1's final weights after); train steps k..T-1 of the
    round's budget T (k = 0 without late rewinding) while the in-round schedule raises
    sparsity from s_{r-1} to s_r = 1 - (1 - p)^r (per layer with --layer-rate); save m_r, the
    final weights, the metrics and a summary.

Finished rounds are skipped, and an unfinished round continues from its last epoch
checkpoint, so running the same command again after a kill finishes the same run. Library
users call `lth.execute`, which takes the lock and writes config.json first.
"""
import logging
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
from torch import nn

from lth.lottery import rewinding
from lth.lottery import assemble
from lth.config import RunConfig
from lth.data.datasets import Dataset
from lth.pruning.masks import Masks
from lth.training.retrain_lr import DenseHistory, LrContext
from lth.runs.store import RunStore
from lth.pruning.overlap import jaccard
from lth.training import distributed
from lth.training.loggers import make_logger
from lth.training.loop import fit, total_steps

log = logging.getLogger(__name__)


sparsity_targets = assemble.sparsity_targets  # [s_0, ..., s_R] (lth.bench reads them there too)


def context_recorder(context: LrContext, model: nn.Module) -> Callable[[float, float], None]:
    """The MaskUpdater callback that gives a retraining LR schedule this phase's s and d; the
    norm is over all parameters (weights, biases, BatchNorm), as Zimmer et al.'s."""
    def on_prune(pruned_fraction: float, removed_sq: float) -> None:
        kept_sq = float(sum(p.detach().float().pow(2).sum() for p in model.parameters()))
        context.record_pruning(pruned_fraction, removed_sq, kept_sq)
    return on_prune


@dataclass(eq=False)
class Rounds:
    """What every round of a run shares, built once from the resolved config (run context)."""
    cfg: RunConfig
    store: RunStore
    dataset: Dataset                  # on the device
    device: torch.device
    model: nn.Module                  # W0 on the device; every round loads its own start into it
    forward: Callable                 # the model, or its torch.compile (compiled once, reused every round)
    masks: Masks                      # one object for the run: rounds copy_ their mask into it
    targets: list                     # [s_0, ..., s_R]
    history: Optional[DenseHistory]   # the dense run's LR history (continue runs), read once
    progress: bool = True
    on_round_start: Optional[Callable[[int, nn.Module, Masks], None]] = None
    logger: Optional[object] = None   # --log (issue 23): one logger for the run, under RUN_DIR/logs

    @property
    def restart(self):
        return assemble.restart_policy(self.cfg)


def run(cfg: RunConfig, store: RunStore, dataset: Dataset, device, progress: bool = True,
        on_round_start: Optional[Callable[[int, nn.Module, Masks], None]] = None) -> List[dict]:
    """Run (or finish) every round of `cfg` in `store`. cfg must be resolved and validated,
    and the caller must hold the run's lock (lth.execute does both).

    on_round_start(r, model, masks) sees the weights each round starts from (tests use it).
    Returns the summaries of all rounds.
    """
    device = torch.device(device)
    assemble.check_budget(cfg, dataset)
    dataset = dataset.to(device)
    model = assemble.build_model(cfg, dataset, cfg.seeds.init_seed, device)
    model = distributed.prepare_model(model, cfg.runtime.sync_bn, device)  # issue 22: --sync-bn under torchrun
    masks = assemble.make_masks(cfg, model)
    if store.init_path.exists():
        model.load_state_dict(store.load_init())
    else:
        store.save_init(model.state_dict())
    distributed.barrier()  # issue 22: rank 0's init.pt exists before the dense phase (any rank) reads it
    forward = torch.compile(model) if cfg.train.compile else model
    rounds = Rounds(cfg, store, dataset, device, model, forward, masks, sparsity_targets(cfg, masks),
                    assemble.dense_history(cfg), progress, on_round_start)
    rewinding.ensure_rewind_point(cfg, store, dataset, model, device, rounds.restart.dense_steps, forward)
    distributed.barrier()  # issue 22: rank 0's rewind.pt exists before the rounds (any rank) read it
    # --log (issue 23): one logger for the whole run, under RUN_DIR/logs, made only when a round is
    # left to train, and only by the rank that writes (issue 22)
    if cfg.runtime.log != "none" and distributed.is_main() and \
            any(not store.round_done(r) for r in range(1, cfg.prune.rounds + 1)):
        rounds.logger = make_logger(cfg.runtime.log, store.root / "logs", store.root.name, cfg.to_dict())
    summaries = []
    try:
        for r in range(1, cfg.prune.rounds + 1):
            if store.round_done(r):
                store.discard_checkpoint(r)  # left if a stop came between the summary and its removal
                summaries.append(store.load_summary(r))
                continue
            summaries.append(_run_round(rounds, r))
    finally:
        if rounds.logger is not None:
            rounds.logger.close()
    return summaries


def _run_round(run: Rounds, r: int) -> dict:
    cfg, store, model, masks = run.cfg, run.store, run.model, run.masks
    s_i, s_f = run.targets[r - 1], run.targets[r]
    restart = run.restart
    # Restart, then apply m_{r-1} exactly (kept weights are multiplied by 1.0).
    model.load_state_dict(restart.start_state(store, r))
    masks.load_state_dict(store.load_mask(r - 1) if r > 1 else {n: torch.ones_like(t, dtype=torch.bool)
                                                                 for n, t in masks.state_dict().items()})
    masks.enforce()
    previous_mask = masks.state_dict()  # m_{r-1} (new tensors): the summary's mask overlap (issue 23)
    if run.on_round_start is not None:
        run.on_round_start(r, model, masks)
    resume = store.load_checkpoint(r)
    if resume is not None:
        log.info("round %d: resuming from the checkpoint after epoch %d", r, resume["epoch"])
    context = assemble.lr_context(cfg, run.dataset, run.history)
    updater = assemble.mask_updater(cfg, masks, s_i, s_f, r, context_recorder(context, model) if context else None)
    final = s_f if isinstance(s_f, float) else masks_total(masks, s_f)
    log.info("round %d/%d: %s to sparsity %.4f", r, cfg.prune.rounds, cfg.prune.schedule, final)
    budget = total_steps(cfg.train, len(run.dataset.train_y))
    if run.logger is not None:
        run.logger.start_round(r, budget)
    loop = assemble.loop(cfg, run.dataset, run.device, model, masks, run.forward, start_step=restart.start_step,
                         start_loader=restart.start_loader(store, r), lr_context=context)
    result = fit(loop, pruning=updater, resume=resume, save_checkpoint=lambda state: store.save_checkpoint(r, state),
                 progress=run.progress, desc=f"round {r}/{cfg.prune.rounds}",
                 callbacks=[*distributed.callbacks(), *([run.logger] if run.logger is not None else [])])
    report = masks.report()
    metrics = result.pop("metrics")
    loader = result.pop("loader")
    summary = {"round": r, "schedule": cfg.prune.schedule, "start_step": restart.start_step,
               "start_sparsity": s_i, "target_sparsity": s_f,
               "sparsity": report[-1]["sparsity"], "layers": report[:-1], "restart": cfg.prune.restart,
               "lr_schedule": cfg.train.lr_schedule, **result}
    if context is not None:
        summary["lr_context"] = context.summary()
    summary["mask_overlap"] = jaccard(previous_mask, masks.state_dict())  # kept-weight Jaccard with m_{r-1}
    if run.logger is not None:
        run.logger.log_round(summary, budget)
    store.save_round(r, masks.state_dict(), model.state_dict(), metrics, summary,
                     loader if restart.continues_data else None)
    distributed.barrier()  # issue 22: the next round reads this round's mask from rank 0's files
    log.info("round %d/%d done: sparsity %.4f, test acc %.4f, %.1f s, %.0f img/s", r, cfg.prune.rounds,
             summary["sparsity"], summary["test_acc"], summary["wall_time_s"], summary["images_per_s"])
    return summary


def masks_total(masks: Masks, per_layer: List[float]) -> float:
    """The overall sparsity that per-layer targets amount to."""
    return sum(round(s * m.numel()) for s, m in zip(per_layer, masks.tensors)) / masks.numel()
