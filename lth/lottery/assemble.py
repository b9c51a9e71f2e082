"""Run assembly: the model, data, masks and rewind state that a config describes.

The IMP driver, the stability analysis and lth.bench build their pieces here, so a run, its
ticket copies and a benchmark are made the same way (docs/DESIGN.md §1).

    dataset = assemble.load_data(cfg)
    model = assemble.build_model(cfg, dataset, cfg.seeds.init_seed, device)
    masks = assemble.make_masks(cfg, model)
    updater = assemble.mask_updater(cfg, masks, s_i, s_f, r)   # pruning while training, round r
"""
from typing import Callable, List, Optional

import torch
from torch import nn

from lth.data import sources
from lth import models
from lth.config import RunConfig
from lth.data.datasets import Dataset
from lth.errors import LthError
from lth.training.lr_schedules import LR_SCHEDULES
from lth.pruning.masks import Masks, prunable_weights
from lth.pruning import MaskUpdater
from lth.pruning.criteria import CRITERIA
from lth.pruning.layers import check_output
from lth.pruning.schedules import SCHEDULES
from lth.pruning.targets import OUTPUT, Target, in_round_target, layer_rates, round_rate, round_targets
from lth.lottery.restart import policy
from lth.runs.store import open_run
from lth.training.retrain_lr import DenseHistory, LrContext, context_needs
from lth.training.loop import Loop, lr_at, make_loaders, total_steps


def load_data(cfg: RunConfig) -> Dataset:
    """The built-in datasets, image folders, ImageNet and factories (lth.data.sources; issue 21)."""
    return sources.load_config(cfg)


def image_size(cfg: RunConfig, dataset: Dataset) -> int:
    return cfg.data.image_size or dataset.native_size


def build_model(cfg: RunConfig, dataset: Dataset, seed: int, device) -> nn.Module:
    """The model of `cfg`, initialised from `seed` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = models.build(cfg.model.model, dataset.num_classes, dataset.in_channels, image_size(cfg, dataset),
                                 init=cfg.model.init)
        except ValueError as e:
            raise LthError(str(e)) from None
    if hasattr(model, "sep_token_id") and sources.is_text(cfg.data.dataset):
        model.sep_token_id = sources.sep_token_id(cfg.data)    # sentence pairs' token types (HFClassifier)
    model = model.to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def make_masks(cfg: RunConfig, model: nn.Module) -> Masks:
    return Masks.for_model(model, cfg.prune.exclude, cfg.prune.layers)


def sparsity_targets(cfg: RunConfig, masks: Masks) -> List[Target]:
    """[s_0, s_1, ..., s_R]: floats, or per-layer lists with --layer-rate."""
    p = cfg.prune
    if not SCHEDULES.get(p.schedule).traits["prunes"]:
        return [0.0] * (p.rounds + 1)
    rate = round_rate(p.rate, p.final_sparsity, p.rounds)
    if not p.layer_rate:
        return round_targets(p.rounds, rate)
    per_layer = [round_targets(p.rounds, r) for r in layer_rates(masks.names, rate, p.layer_rate)]
    return [[layer[r] for layer in per_layer] for r in range(p.rounds + 1)]


def mask_updater(cfg: RunConfig, masks: Masks, s_i: Target, s_f: Target, r: int,
                 on_prune: Optional[Callable[[float, float], None]] = None) -> MaskUpdater:
    """The in-round schedule of round r bound to `masks` (what lth.training.loop calls; lth.bench times it).
    on_prune: MaskUpdater's callback (lth.lottery.imp.context_recorder for the retraining LR schedules)."""
    p = cfg.prune
    seeded = CRITERIA.get(p.criterion).traits["seeded"]
    generator = torch.Generator().manual_seed(cfg.seeds.prune_seed * 1000 + r) if seeded else None
    return MaskUpdater(masks, in_round_target(p.schedule, p.schedule_params, s_i, s_f), p.criterion, p.scope,
                       p.prune_interval, generator, on_prune, tolerance=p.prune_tolerance)


def check_model_fits(cfg: RunConfig, dataset: Dataset) -> None:
    """Fail early, with one line, when the model cannot take the dataset's images or the layer
    choice (--layers, --exclude, --layer-rate) leaves it nothing to prune."""
    p = cfg.prune
    model = build_model(cfg, dataset, cfg.seeds.init_seed, "cpu").eval()
    names = list(prunable_weights(model, p.exclude, p.layers))
    if p.layers == "all_but_output" or any(rule.startswith(OUTPUT + "=") for rule in p.layer_rate):
        check_output(model, dataset.num_classes, cfg.model.model)   # issue 21: the head must be found to be named
    if SCHEDULES.get(p.schedule).traits["prunes"]:
        layer_rates(names, round_rate(p.rate, p.final_sparsity, p.rounds), p.layer_rate)
    size = image_size(cfg, dataset)
    is_text = torch.is_tensor(dataset.train_x) and dataset.train_x.dim() == 2   # token ids
    if is_text:
        check_tokens_fit(cfg, dataset, model)
    example = dataset.train_x[:1] if is_text else torch.zeros(1, dataset.in_channels, size, size)
    try:
        with torch.inference_mode():
            model(example)
    except RuntimeError as e:
        raise LthError(f"model {cfg.model.model} cannot take {size}x{size} images of {dataset.name}; "
                       f"raise --image-size or pick another model ({str(e).splitlines()[0][:100]})") from None


def check_tokens_fit(cfg: RunConfig, dataset: Dataset, model: nn.Module) -> None:
    """Token ids within the model's vocabulary and sequences within its positions (a Hugging
    Face model's embedding would fail mid-run with an index error otherwise)."""
    net = getattr(model, "net", model)    # lth.models.external.HFClassifier wraps the library's model
    top = int(max(dataset.train_x.max(), dataset.test_x.max()))
    length = max(dataset.train_x.shape[1], dataset.test_x.shape[1])
    table = net.get_input_embeddings() if hasattr(net, "get_input_embeddings") else None
    if table is not None and top >= table.num_embeddings:
        raise LthError(f"{dataset.name} holds token id {top}, beyond the {table.num_embeddings}-token vocabulary of "
                       f"{cfg.model.model}: the tokenizer is not the model's (give the model's --tokenizer, or "
                       f"vocab_size=N in an hf:TYPE spec)")
    positions = getattr(getattr(net, "config", None), "max_position_embeddings", None)
    if positions and length > positions:
        raise LthError(f"{dataset.name} has sequences of {length} tokens, more than the {positions} positions of "
                       f"{cfg.model.model}: lower --max-length to {positions}")


def check_budget(cfg: RunConfig, dataset: Dataset, what: str = "the round's budget") -> int:
    """The round budget in steps; refuses a rewind step that leaves no step of it to train."""
    steps = total_steps(cfg.train, len(dataset.train_y))
    k = restart_policy(cfg).start_step
    if k >= steps:
        raise LthError(f"--rewind-step {k} is beyond {what} of {steps} steps (training continues from step k "
                       f"to the end of the budget: use at most {steps - 1})")
    return steps


def restart_policy(cfg: RunConfig):
    return policy(cfg.prune.restart, cfg.prune.restart_params, open_run)


def rewind_state(store, cfg: RunConfig) -> dict:
    """The weights a ticket of this run starts from (W0, or W_k with late rewinding)."""
    return restart_policy(cfg).ticket_state(store)


def check_restart(cfg: RunConfig, dataset: Dataset) -> None:
    """What the restart policy needs from the disk (a continue run's dense run), and the LR
    context built from it: one-line errors before anything is written."""
    restart_policy(cfg).check(cfg)
    dense_history(cfg)


def dense_history(cfg: RunConfig) -> Optional[DenseHistory]:
    """The LR history of the dense run this run continues from (None for rewinding runs):
    its schedule step by step through lth.training.loop.lr_at, so eta_max, eta_min and T are what
    it actually trained with (docs/DESIGN.md §10)."""
    store = restart_policy(cfg).reference()
    if store is None:
        return None
    dense = store.run_config().resolved()
    t = dense.train
    fn = LR_SCHEDULES.get(t.lr_schedule).fn
    if context_needs(t.lr_schedule) is not None:
        raise LthError(f"--from-run {store.root} retrained with --lr-schedule {t.lr_schedule}; "
                       f"--from-run takes a dense run trained with a plain LR schedule")
    summary = store.load_summary(dense.prune.rounds)
    steps, per_epoch = summary["steps"], summary["steps_per_epoch"]
    lrs = [lr_at(k, steps, t) for k in range(steps)]
    params = dict(t.lr_schedule_params)
    eta_max = max(lrs)
    return DenseHistory(lr=lambda progress: fn(progress, t.lr, **params), steps=steps,
                        steps_per_epoch=per_epoch, eta_max=eta_max, eta_min=lrs[-1],
                        peak_at=lrs.index(eta_max) / steps)


def lr_context(cfg: RunConfig, dataset: Dataset, history: Optional[DenseHistory]) -> Optional[LrContext]:
    """A fresh context for one round (phase) of this run, or None without a dense history."""
    if history is None:
        return None
    return LrContext(history, total_steps(cfg.train, len(dataset.train_y)), len(dataset.train_y) // cfg.train.batch_size)


def loop(cfg: RunConfig, dataset: Dataset, device, model: nn.Module, masks: Optional[Masks],
         forward: Optional[Callable] = None, *, order_seed: Optional[int] = None, augment_seed: Optional[int] = None,
         start_step: int = 0, start_loader: Optional[dict] = None, lr_context: Optional[LrContext] = None,
         stop_step: Optional[int] = None) -> Loop:
    """The training loop's state for a run of `cfg`: its loaders from the run's seeds (or the
    given ones: ticket copies), its image size and augmentation (lth.training.loop.Loop)."""
    train_loader, test_loader = make_loaders(
        dataset, cfg.train, torch.device(device), image_size(cfg, dataset), cfg.data.augment,
        cfg.seeds.order_seed if order_seed is None else order_seed,
        cfg.seeds.augment_seed if augment_seed is None else augment_seed)
    return Loop(model, cfg.train, train_loader, test_loader, masks=masks, forward=forward, lr_context=lr_context,
                start_step=start_step, start_loader=start_loader, stop_step=stop_step)
