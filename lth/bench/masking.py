"""`python -m lth.bench masks`: what masking costs a training step, and what a mask update costs.

Step cost (one forward + backward + optimizer step on pre-drawn CIFAR-sized batches, so the
loader is not timed; eager, bf16 autocast and channels_last on CUDA), variants timed in
interleaved blocks:
  dense          no masks at all
  lth masked     90 % local L1 masks, masks.mask_grads() before the step (and masks.enforce()
                 after it for an optimizer without the trait keeps_pruned_zero), as lth.training.loop
  lth mask ops   those calls alone: what lth adds to a dense step
  prune hooks    the same masks through torch.nn.utils.prune.custom_from_mask (forward pre-hooks)
  lth + OCP      lth masked, plus a run's per-step MaskUpdater of an OCP round (prune,
                 zero_optimizer_state, enforce whenever the target rose) at the paper's budget
--profile: torch.profiler self time per op of a dense and an lth-masked step, largest differences.
Mask update: lth.pruning.prune on a raised target (every layer: 0.80 -> 0.81; and one OCP step),
local and global, alone and with the rest of lth.training.loop's update (zero_optimizer_state + enforce).
"""
import itertools
import logging
import time
from typing import Callable, Dict

import torch

from lth.bench.common import Bench, format_table, median, paired_ratio, spread, sync, time_interleaved
from lth.bench.engine import (EngineStep, build_model, cycle, masked, prune_with_hooks, run_config,
                              train_loader)
from lth.pruning.masks import Masks
from lth.pruning import MaskUpdater, prune
from lth.pruning.targets import in_round_target
from lth.training.loop import enforces_after_step, total_steps

log = logging.getLogger("lth.bench")

PREDRAWN_BATCHES = 4         # batches drawn once and cycled through by the step-cost variants
CIFAR10_TRAIN_IMAGES = 50000  # the paper budget is counted on the full CIFAR-10 training split
OCP_ROUND = (0.0, 0.2)       # the sparsity window of IMP round 1 at the default rate 0.2
OCP_PROGRESS = 0.36          # where in the round the OCP updates are timed: its steepest part (beta/alpha)
RAISE = (0.80, 0.81)         # "raised target" update: every layer prunes 1 % more of its weights
TARGET_OVERHEAD = 0.03       # the goal: lth-masked within 3 % of dense
PROFILE_STEPS = 2            # --profile: steps of each variant under torch.profiler
PROFILE_TOP = 8              # --profile: ops listed


def ocp_target(cfg):
    """Round 1's OCP target t -> sparsity, bound as a run binds it."""
    return in_round_target("ocp", cfg.prune.schedule_params, *OCP_ROUND)


class OcpUpdate:
    """A run's MaskUpdater for one OCP round of `total` steps, called as lth.training.loop calls it
    before each step, starting at step `start`."""

    def __init__(self, cfg, masks: Masks, optimizer: torch.optim.Optimizer, scope: str, total: int, start: int):
        self.updater = MaskUpdater(masks, ocp_target(cfg), scope=scope)
        self.optimizer, self.total, self.step = optimizer, total, start

    @property
    def changes(self) -> int:
        return self.updater.updates  # calls that raised the target (and so ran the whole update)

    def __call__(self) -> None:
        self.updater.update(self.step / self.total, self.optimizer)
        self.step += 1


def paper_budget(model_name: str) -> int:
    """Steps of one round of the paper's recipe (50 epochs) on full CIFAR-10 at batch 128."""
    return total_steps(run_config(model_name, 128).train, CIFAR10_TRAIN_IMAGES)


def step_cost(bench: Bench) -> dict:
    size, device = bench.size, bench.device
    rows, notes = [], []
    for name in bench.models or size.step_models:
        cfg = run_config(name, size.step_batch)
        dataset = bench.dataset.to(device)
        batches = list(itertools.islice(cycle(train_loader(cfg, dataset, device)), PREDRAWN_BATCHES))
        variants: Dict[str, Callable[[], None]] = {}

        def feed(step: EngineStep, before: Callable[[], None] = None) -> Callable[[], None]:
            it = itertools.cycle(batches)

            def call():
                if before is not None:
                    before()
                step(*next(it))
            return call

        variants["dense"] = feed(EngineStep(build_model(cfg, dataset, device), cfg, device))
        model = build_model(cfg, dataset, device)
        lth_masks = masked(model)
        variants["lth masked"] = feed(EngineStep(model, cfg, device, lth_masks))
        # What lth adds to a dense step, alone (the gradients are the last step's).
        enforces = enforces_after_step(cfg.train)
        variants["lth mask ops alone"] = lambda: (lth_masks.mask_grads(), enforces and lth_masks.enforce())
        model = build_model(cfg, dataset, device)
        prune_with_hooks(model, masked(model))
        variants["prune hooks"] = feed(EngineStep(model, cfg, device))
        model = build_model(cfg, dataset, device)
        masks = Masks.for_model(model)
        step = EngineStep(model, cfg, device, masks)
        total = paper_budget(name)
        update = OcpUpdate(cfg, masks, step.optimizer, "local", total, start=round(OCP_PROGRESS * total))
        update()  # the mask of the round so far (not timed)
        variants["lth + OCP update"] = feed(step, update)

        log.info("masks: timing %s, batch %d, %d variants interleaved", name, size.step_batch, len(variants))
        times = time_interleaved(variants, device, size.steps, size.mask_repeats, size.warmup)
        clock = "wall" if bench.is_cuda() else "cpu"  # the clock that ratios are taken on
        dense = times["dense"][clock]
        for variant, t in times.items():
            rows.append({"model": name, "variant": variant, "batch": size.step_batch,
                         "ms_per_step": median(t["wall"]) * 1e3,
                         "cpu_ms_per_step": None if bench.is_cuda() else median(t["cpu"]) * 1e3,
                         "ratio_to_dense": paired_ratio(t[clock], dense), "spread": spread(t[clock]),
                         "images_per_s": None if variant == "lth mask ops alone" else
                         size.step_batch / median(t["wall"])})
        lth_ratio = paired_ratio(times["lth masked"][clock], dense)
        verdict = "within" if lth_ratio <= 1 + TARGET_OVERHEAD else "NOT within"
        notes.append(f"{name}: lth masked is {100 * (lth_ratio - 1):+.1f} % vs dense: {verdict} the "
                     f"{100 * TARGET_OVERHEAD:.0f} % target; its mask ops alone cost "
                     f"{100 * paired_ratio(times['lth mask ops alone'][clock], dense):.2f} % of a dense step")
        notes.append(f"{name}: x dense = median over {size.mask_repeats} rounds of interleaved {size.steps}-step "
                     f"blocks of block / dense block, on {'wall-clock' if bench.is_cuda() else 'process CPU'} "
                     f"time; spread = (max-min)/median of the blocks")
        notes.append(f"{name}: lth + OCP update = lth's train loop during round 1 of the paper budget "
                     f"({total} steps, sparsity {OCP_ROUND[0]:.2f}->{OCP_ROUND[1]:.2f}, timed at t~{OCP_PROGRESS}); "
                     f"the mask changed before {update.changes - 1} of the {step.step} steps")
    return {"rows": rows, "notes": notes}


def profile_masking(bench: Bench) -> dict:
    """Where an lth-masked step spends more than a dense one: torch.profiler self time per op."""
    from torch.profiler import ProfilerActivity, profile
    size, device = bench.size, bench.device
    name = (bench.models or size.step_models)[0]
    cfg = run_config(name, size.step_batch)
    dataset = bench.dataset.to(device)
    batches = list(itertools.islice(cycle(train_loader(cfg, dataset, device)), PREDRAWN_BATCHES))
    dense_model, masked_model = build_model(cfg, dataset, device), build_model(cfg, dataset, device)
    steps = {"dense": EngineStep(dense_model, cfg, device),
             "lth masked": EngineStep(masked_model, cfg, device, masked(masked_model))}
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if bench.is_cuda() else [])
    attribute = "self_device_time_total" if bench.is_cuda() else "self_cpu_time_total"
    ms: Dict[str, Dict[str, float]] = {}
    for label, step in steps.items():
        for x, y in batches[:size.warmup + 1]:
            step(x, y)
        sync(device)
        log.info("masks: profiling %s %s", name, label)
        with profile(activities=activities) as prof:
            for i in range(PROFILE_STEPS):
                step(*batches[i % len(batches)])
            sync(device)
        ms[label] = {e.key: getattr(e, attribute) / PROFILE_STEPS / 1e3 for e in prof.key_averages()}
    dense, lth = ms["dense"], ms["lth masked"]
    ops = sorted(set(dense) | set(lth), key=lambda k: -abs(lth.get(k, 0.0) - dense.get(k, 0.0)))[:PROFILE_TOP]
    rows = [{"model": name, "op": op, "dense_ms": dense.get(op, 0.0), "masked_ms": lth.get(op, 0.0),
             "diff_ms": lth.get(op, 0.0) - dense.get(op, 0.0)} for op in ops]
    clock = "CUDA" if bench.is_cuda() else "CPU"
    return {"rows": rows, "notes": [f"self {clock} time per step under torch.profiler, mean of {PROFILE_STEPS} "
                                    f"steps, batch {size.step_batch}; the {PROFILE_TOP} ops that differ most"]}


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def _optimizer_with_state(model, cfg, device) -> torch.optim.Optimizer:
    """The engine's optimizer after one (zero-gradient) step, so it holds its moment buffers."""
    from lth.training.loop import make_optimizer
    optimizer = make_optimizer(model, cfg.train, device)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return optimizer


def mask_update(bench: Bench) -> dict:
    size, device = bench.size, bench.device
    rows, notes = [], []
    for name in bench.models or size.update_models:
        cfg = run_config(name, size.step_batch)
        model = build_model(cfg, bench.dataset, device)
        optimizer = _optimizer_with_state(model, cfg, device)
        weights = {k: v.clone() for k, v in model.state_dict().items()}  # enforce() zeroes some: restored
        total = paper_budget(name)
        for method in ("local", "global"):
            log.info("mask update: %s %s", name, method)
            prune_s, full_s = [], []
            for _ in range(size.repeats):
                for out, full in ((prune_s, False), (full_s, True)):
                    model.load_state_dict(weights)
                    masks = Masks.for_model(model)
                    prune(masks, RAISE[0], scope=method)
                    sync(device)

                    def update():
                        prune(masks, RAISE[1], scope=method)
                        if full:
                            masks.zero_optimizer_state(optimizer)
                            masks.enforce()
                    out.append(_timed(update, device))
            rows.append({"model": name, "method": method, "update": f"raise {RAISE[0]:.2f}->{RAISE[1]:.2f}",
                         "prune_to_ms": median(prune_s) * 1e3, "full_update_ms": median(full_s) * 1e3})
            # OCP: consecutive steps of lth.training.loop's update at the steepest part of round 1.
            model.load_state_dict(weights)
            masks = Masks.for_model(model)
            ocp = OcpUpdate(cfg, masks, optimizer, method, total, start=round(OCP_PROGRESS * total))
            ocp()
            calls = size.steps * size.repeats
            seconds = _timed(lambda: [ocp() for _ in range(calls)], device)
            rows.append({"model": name, "method": method, "update": f"OCP step (t~{OCP_PROGRESS})",
                         "full_update_ms": seconds / calls * 1e3, "changed": f"{ocp.changes - 1}/{calls}"})
        notes.append(f"{name}: {sum(m.numel() for m in Masks.for_model(model).tensors):,} prunable weights; "
                     f"OCP round 1 has {total} steps at the paper budget, the target rises at every one "
                     f"({_rising_steps(cfg, total)} of {total})")
    notes.append("full update = prune + zero_optimizer_state + enforce, as lth.pruning.MaskUpdater runs it")
    return {"rows": rows, "notes": notes}


def _rising_steps(cfg, total: int) -> int:
    target = ocp_target(cfg)
    values = [target(k / total) for k in range(total)]
    return sum(b > a for a, b in zip([-1.0] + values, values))


STEP_COLUMNS = [("model", "model", ""), ("variant", "variant", ""), ("batch", "batch", "d"),
                ("ms_per_step", "ms/step", ".1f"), ("cpu_ms_per_step", "CPU ms/step", ".1f"),
                ("ratio_to_dense", "x dense", ".4f"),
                ("spread", "spread", ".1%"), ("images_per_s", "img/s", ".0f")]
UPDATE_COLUMNS = [("model", "model", ""), ("method", "method", ""), ("update", "update", ""),
                  ("prune_to_ms", "prune ms", ".1f"), ("full_update_ms", "full update ms", ".1f"),
                  ("changed", "mask changed", "")]


PROFILE_COLUMNS = [("model", "model", ""), ("op", "op", ""), ("dense_ms", "dense ms", ".2f"),
                   ("masked_ms", "lth masked ms", ".2f"), ("diff_ms", "difference ms", "+.2f")]


def render(section: str, result: dict) -> str:
    if section == "mask_profile":
        return format_table("Profile: lth masked vs dense step, by op", PROFILE_COLUMNS, result["rows"],
                            result["notes"])
    if section == "mask_step":
        return format_table("Training step cost of masking (forward + backward + optimizer step)",
                            STEP_COLUMNS, result["rows"], result["notes"])
    return format_table("Mask update cost (lth.pruning.prune)", UPDATE_COLUMNS, result["rows"],
                        result["notes"])
