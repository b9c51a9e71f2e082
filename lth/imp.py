"""The IMP driver: rounds of rewind, train while pruning, save (docs/DESIGN.md §2).

    W0 = the seeded initialisation, m_0 = ones.
    Round r = 1..R: weights <- W_rewind * m_{r-1} (W0, or W_k with --rewind-step k);
    train the round's budget while the in-round schedule raises sparsity from s_{r-1} to
    s_r = 1 - (1 - p)^r; save m_r, the final weights, the metrics and a summary.

Finished rounds are skipped, and an unfinished round continues from its last epoch
checkpoint, so running the same command again after a kill finishes the same run.
"""
import functools
import logging
from typing import Callable, List, Optional

import torch
from torch import nn

from lth import models, schedules
from lth.config import RunConfig
from lth.data import Dataset
from lth.errors import LthError
from lth.masks import Masks, prunable_weights
from lth.store import RunStore
from lth.train import PruningPlan, total_steps, train

log = logging.getLogger(__name__)


def image_size(cfg: RunConfig, dataset: Dataset) -> int:
    return cfg.data.image_size or dataset.native_size


def build_model(cfg: RunConfig, dataset: Dataset, seed: int, device) -> nn.Module:
    """The model of `cfg`, initialised from `seed` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = models.build(cfg.model.model, dataset.num_classes, dataset.in_channels, image_size(cfg, dataset))
        except ValueError as e:
            raise LthError(str(e)) from None
    model = model.to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def check_model_fits(cfg: RunConfig, dataset: Dataset) -> None:
    """Fail early, with one line, when the model cannot take the dataset's images or --exclude
    leaves it nothing to prune."""
    model = build_model(cfg, dataset, cfg.seeds.init_seed, "cpu").eval()
    prunable_weights(model, cfg.prune.exclude)
    size = image_size(cfg, dataset)
    try:
        with torch.inference_mode():
            model(torch.zeros(1, dataset.in_channels, size, size))
    except RuntimeError as e:
        raise LthError(f"model {cfg.model.model} cannot take {size}x{size} images of {dataset.name}; "
                       f"raise --image-size or pick another model ({str(e).splitlines()[0][:100]})") from None


def round_targets(cfg: RunConfig) -> List[float]:
    """[s_0 = 0, s_1, ..., s_R]."""
    p = cfg.prune
    rate = schedules.rate_for(p.final_sparsity, p.rounds) if p.final_sparsity is not None else p.rate
    return [0.0] + schedules.round_sparsities(p.rounds, rate)


def in_round_schedule(cfg: RunConfig, s_i: float, s_f: float) -> Callable[[float], float]:
    """The chosen schedule bound to this round's start and final sparsity."""
    p = cfg.prune
    fn = schedules.get(p.schedule)
    params = {"ocp": {"alpha": p.alpha, "beta": p.beta},
              "iterative": {"end": p.end, "steps": p.prune_steps},
              "agp": {"end": p.end}}.get(p.schedule, {})
    if p.start is not None and p.schedule in ("one_shot", "iterative", "agp"):
        params["start"] = p.start
    return functools.partial(fn, s_i=s_i, s_f=s_f, **params)


def check_budget(cfg: RunConfig, dataset: Dataset) -> int:
    """The round budget in steps; refuses a rewind step beyond it."""
    steps = total_steps(cfg.train, len(dataset.train_y))
    if cfg.prune.rewind_step > steps:
        raise LthError(f"--rewind-step {cfg.prune.rewind_step} is beyond the round's budget of {steps} steps")
    return steps


def rewind_state(store: RunStore, cfg: RunConfig) -> dict:
    return store.load_rewind() if cfg.prune.rewind_step > 0 else store.load_init()


def run(cfg: RunConfig, store: RunStore, dataset: Dataset, device, progress: bool = True,
        on_round_start: Optional[Callable[[int, nn.Module, Masks], None]] = None) -> List[dict]:
    """Run (or finish) every round of `cfg` in `store`. cfg must be resolved and validated.

    on_round_start(r, model, masks) sees the weights each round starts from (tests use it).
    Returns the summaries of all rounds.
    """
    device = torch.device(device)
    check_budget(cfg, dataset)
    dataset = dataset.to(device)
    model = build_model(cfg, dataset, cfg.seeds.init_seed, device)
    masks = Masks.for_model(model, cfg.prune.exclude)
    if store.init_path.exists():
        model.load_state_dict(store.load_init())
    else:
        store.save_init(model.state_dict())
    forward = torch.compile(model) if cfg.train.compile else model  # compiled once, reused every round
    targets = round_targets(cfg)
    summaries = []
    for r in range(1, cfg.prune.rounds + 1):
        if store.round_done(r):
            store.discard_checkpoint(r)  # left if a stop came between the summary and its removal
            summaries.append(store.load_summary(r))
            continue
        summaries.append(_run_round(cfg, store, dataset, device, model, forward, masks, r, targets, progress,
                                    on_round_start))
    return summaries


def _run_round(cfg, store, dataset, device, model, forward, masks, r, targets, progress, on_round_start) -> dict:
    s_i, s_f = targets[r - 1], targets[r]
    # Rewind: W_rewind * m_{r-1}, exactly (kept weights are multiplied by 1.0).
    model.load_state_dict(rewind_state(store, cfg) if r > 1 else store.load_init())
    masks.load_state_dict(store.load_mask(r - 1) if r > 1 else {n: torch.ones_like(t, dtype=torch.bool)
                                                                 for n, t in masks.state_dict().items()})
    masks.enforce()
    if on_round_start is not None:
        on_round_start(r, model, masks)
    resume = store.load_checkpoint(r)
    if resume is not None:
        log.info("round %d: resuming from the checkpoint after epoch %d", r, resume["epoch"])
    generator = torch.Generator().manual_seed(cfg.seeds.prune_seed * 1000 + r) if cfg.prune.method == "random" else None
    plan = PruningPlan(in_round_schedule(cfg, s_i, s_f), cfg.prune.method, cfg.prune.prune_interval, generator)

    def after_step(step, model, masks):
        if r == 1 and step == cfg.prune.rewind_step:
            store.save_rewind(model.state_dict())

    log.info("round %d/%d: %s from sparsity %.4f to %.4f", r, cfg.prune.rounds, cfg.prune.schedule, s_i, s_f)
    result = train(model, masks, dataset, cfg.train, device=device, image_size=image_size(cfg, dataset),
                   augment=cfg.data.augment, order_seed=cfg.seeds.order_seed, augment_seed=cfg.seeds.augment_seed,
                   pruning=plan, forward=forward, resume=resume,
                   save_checkpoint=lambda state: store.save_checkpoint(r, state),
                   after_step=after_step if cfg.prune.rewind_step > 0 else None,
                   progress=progress, desc=f"round {r}/{cfg.prune.rounds}")
    report = masks.report()
    metrics = result.pop("metrics")
    summary = {"round": r, "schedule": cfg.prune.schedule, "start_sparsity": s_i, "target_sparsity": s_f,
               "sparsity": report[-1]["sparsity"], "layers": report[:-1], **result}
    store.save_round(r, masks.state_dict(), model.state_dict(), metrics, summary)
    log.info("round %d/%d done: sparsity %.4f, test acc %.4f, %.1f s, %.0f img/s", r, cfg.prune.rounds,
             summary["sparsity"], summary["test_acc"], summary["wall_time_s"], summary["images_per_s"])
    return summary
