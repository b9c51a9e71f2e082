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
from typing import Callable, List, Optional

import torch
from torch import nn

from lth.lottery import rewinding
from lth.lottery import assemble
from lth.config import RunConfig
from lth.data.datasets import Dataset
from lth.pruning.masks import Masks
from lth.training.retrain_lr import LrContext
from lth.runs.store import RunStore
from lth.training.loop import total_steps, train
from lth.training.loggers import make_logger
from lth.pruning.overlap import jaccard

log = logging.getLogger(__name__)


sparsity_targets = assemble.sparsity_targets  # [s_0, ..., s_R] (lth.bench reads them there too)


def context_recorder(context: LrContext, model: nn.Module) -> Callable[[float, float], None]:
    """The MaskUpdater callback that gives a retraining LR schedule this phase's s and d; the
    norm is over all parameters (weights, biases, BatchNorm), as Zimmer et al.'s."""
    def on_prune(pruned_fraction: float, removed_sq: float) -> None:
        kept_sq = float(sum(p.detach().float().pow(2).sum() for p in model.parameters()))
        context.record_pruning(pruned_fraction, removed_sq, kept_sq)
    return on_prune


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
    masks = assemble.make_masks(cfg, model)
    if store.init_path.exists():
        model.load_state_dict(store.load_init())
    else:
        store.save_init(model.state_dict())
    forward = torch.compile(model) if cfg.train.compile else model  # compiled once, reused every round
    rewinding.ensure_rewind_point(cfg, store, dataset, model, assemble.image_size(cfg, dataset), device,
                                  assemble.restart_policy(cfg).dense_steps, forward)
    targets = sparsity_targets(cfg, masks)
    history = assemble.dense_history(cfg)  # the dense run's LR history (continue runs), read once
    summaries = []
    # --log (issue 23): one logger for the whole run, under RUN_DIR/logs; made only when a round is left
    logger = None
    if cfg.runtime.log != "none" and any(not store.round_done(r) for r in range(1, cfg.prune.rounds + 1)):
        logger = make_logger(cfg.runtime.log, store.root / "logs", store.root.name, cfg.to_dict())
    try:
        for r in range(1, cfg.prune.rounds + 1):
            if store.round_done(r):
                store.discard_checkpoint(r)  # left if a stop came between the summary and its removal
                summaries.append(store.load_summary(r))
                continue
            summaries.append(_run_round(cfg, store, dataset, device, model, forward, masks, r, targets, progress,
                                        on_round_start, history, logger))
    finally:
        if logger is not None:
            logger.close()
    return summaries


def _run_round(cfg, store, dataset, device, model, forward, masks, r, targets, progress, on_round_start,
               history, logger=None) -> dict:
    s_i, s_f = targets[r - 1], targets[r]
    restart = assemble.restart_policy(cfg)
    # Restart, then apply m_{r-1} exactly (kept weights are multiplied by 1.0).
    model.load_state_dict(restart.start_state(store, r))
    masks.load_state_dict(store.load_mask(r - 1) if r > 1 else {n: torch.ones_like(t, dtype=torch.bool)
                                                                 for n, t in masks.state_dict().items()})
    masks.enforce()
    previous_mask = masks.state_dict()  # m_{r-1}: the summary's mask overlap (issue 23)
    if on_round_start is not None:
        on_round_start(r, model, masks)
    resume = store.load_checkpoint(r)
    if resume is not None:
        log.info("round %d: resuming from the checkpoint after epoch %d", r, resume["epoch"])
    context = assemble.lr_context(cfg, dataset, history)
    updater = assemble.mask_updater(cfg, masks, s_i, s_f, r, context_recorder(context, model) if context else None)
    final = s_f if isinstance(s_f, float) else masks_total(masks, s_f)
    log.info("round %d/%d: %s to sparsity %.4f", r, cfg.prune.rounds, cfg.prune.schedule, final)
    budget = total_steps(cfg.train, len(dataset.train_y))
    if logger is not None:
        logger.start_round(r, budget)
    result = train(model, masks, dataset, cfg.train, device=device, image_size=assemble.image_size(cfg, dataset),
                   augment=cfg.data.augment, order_seed=cfg.seeds.order_seed,
                   augment_seed=cfg.seeds.augment_seed, pruning=updater, forward=forward, resume=resume,
                   save_checkpoint=lambda state: store.save_checkpoint(r, state),
                   start_step=restart.start_step, start_loader=restart.start_loader(store),
                   lr_context=context, progress=progress, desc=f"round {r}/{cfg.prune.rounds}",
                   callbacks=[logger] if logger is not None else [])
    report = masks.report()
    metrics = result.pop("metrics")
    summary = {"round": r, "schedule": cfg.prune.schedule, "start_step": restart.start_step,
               "start_sparsity": s_i, "target_sparsity": s_f,
               "sparsity": report[-1]["sparsity"], "layers": report[:-1], "restart": cfg.prune.restart,
               "lr_schedule": cfg.train.lr_schedule, **result}
    if context is not None:
        summary["lr_context"] = context.summary()
    summary["mask_overlap"] = jaccard(previous_mask, masks.state_dict())  # kept-weight Jaccard with m_{r-1}
    if logger is not None:
        logger.log_round(summary, budget)
    store.save_round(r, masks.state_dict(), model.state_dict(), metrics, summary)
    log.info("round %d/%d done: sparsity %.4f, test acc %.4f, %.1f s, %.0f img/s", r, cfg.prune.rounds,
             summary["sparsity"], summary["test_acc"], summary["wall_time_s"], summary["images_per_s"])
    return summary


def masks_total(masks: Masks, per_layer: List[float]) -> float:
    """The overall sparsity that per-layer targets amount to."""
    return sum(round(s * m.numel()) for s, m in zip(per_layer, masks.tensors)) / masks.numel()
