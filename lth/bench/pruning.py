"""`python -m lth.bench prune`: what pruning while training costs a round, per schedule and model.

One round of the paper's Experiment A (dense to --final-sparsity 0.9 while training, the paper
recipe), trained by lth.training.loop.train with the MaskUpdater a run builds (lth.lottery.assemble.mask_updater,
so the default --prune-tolerance), against the same round without pruning:

  dense          no masks at all (the baseline of the ratios)
  fixed mask     masks at the final sparsity from the start, never updated: what enforcing a
                 mask costs (gradients and weights multiplied by it at every step)
  one_shot, iterative, agp, ocp     the schedules at their paper parameters
  ocp exact      OCP with --prune-tolerance 0: an update at every step whose target count rose

Models: lenet300_100 on MNIST (the `mnist` preset; scikit-learn's digits when no MNIST copy is
found), the others on CIFAR-10 at 32x32 with crop_flip (the `paper32` preset). LeNet's rounds
have the preset's whole budget (940 steps on the 3,009-image MNIST copy); the CIFAR models' are
cut to the size's prune_steps (more updates a step than a full round: a conservative ratio).
Rounds run in turn, repeated, and each ratio is the median over repeats of round / dense round
of the same repeat, on process CPU time on a CPU (other processes' load left out) and wall
time on CUDA. Columns: largest gap = max over steps and layers of |sparsity - schedule(t)| (t
where the mask was last considered), final = sparsity after the round, exact end = every
layer's pruned count is exactly its target's, update ms = (round - fixed mask round) / updates; for a cut round, the whole round's updates and its projected x dense.
"""
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional

from lth import config
from lth.data import datasets
from lth.lottery import assemble
from lth.bench.common import Bench, format_table, median, spread, sync
from lth.bench.engine import DEFAULT_DATA_DIRS
from lth.pruning import prune
from lth.pruning.targets import in_round_target
from lth.pruning.updater import count_updates
from lth.training.callbacks import StepProbe
from lth.training.loop import fit, total_steps

log = logging.getLogger("lth.bench")

SCHEDULES = ("one_shot", "iterative", "agp", "ocp")
FINAL_SPARSITY = 0.9       # Experiment A at 90 % (the must-show setting)
MNIST_MODELS = ("lenet300_100",)


def round_config(model: str, dataset: str, steps: int, schedule: str = "ocp", **overrides) -> config.RunConfig:
    """One Experiment-A round of `model`: the mnist preset for LeNet, paper32 otherwise."""
    flat = {"model": model, "dataset": dataset, "rounds": 1, "final_sparsity": FINAL_SPARSITY,
            "schedule": schedule, "eval_every": 0, "steps": steps, **overrides}
    if model in MNIST_MODELS:
        return config.from_overrides(flat, preset="mnist")
    return config.from_overrides({"image_size": 0, "augment": "crop_flip", **flat}, preset="paper32")


def mnist_data(bench: Bench):
    """MNIST from --data-dir or the default folders, else digits (offline); (dataset, note)."""
    if not bench.synthetic:
        for folder in ([bench.data_dir] if bench.data_dir else list(DEFAULT_DATA_DIRS)):
            if (Path(folder).expanduser() / "MNIST" / "raw").is_dir():
                ds = datasets.load("mnist", folder)
                return ds, f"MNIST from {folder} ({len(ds.train_y)} train images)"
    return datasets.load("digits"), "scikit-learn digits (no MNIST copy found)"


class Round:
    """One variant's round, built afresh (same init) each time it runs."""

    def __init__(self, name: str, cfg: config.RunConfig, dataset, device, schedule: Optional[str],
                 masked: bool, tolerance: Optional[float] = None):
        self.name, self.cfg, self.dataset, self.device = name, cfg, dataset, device
        self.schedule, self.masked, self.tolerance = schedule, masked, tolerance
        self.total = total_steps(cfg.train, len(dataset.train_y))

    def run(self) -> dict:
        cfg = self.cfg
        model = assemble.build_model(cfg, self.dataset, cfg.seeds.init_seed, self.device)
        masks = assemble.make_masks(cfg, model) if self.masked else None
        updater, target, gaps = None, None, [0.0]
        if masks is not None:
            s_i, s_f = assemble.sparsity_targets(cfg, masks)[:2]  # per layer with the preset's --layer-rate
        if self.schedule is not None:
            updater = assemble.mask_updater(cfg, masks, s_i, s_f, 1)
            if self.tolerance is not None:
                updater.tolerance = self.tolerance
            target = in_round_target(cfg.prune.schedule, cfg.prune.schedule_params, s_i, s_f)
        elif masks is not None:
            prune(masks, s_f)
        total = self.total

        def after_step(step, model, masks):  # host integers only: no sync inside the timed loop
            if target is None:
                return
            value = target((step - 1) // updater.interval * updater.interval / total)
            if masks.known_counts is None:  # global scope: the total only
                gaps.append(abs(masks.known_total / masks.numel() - value))
                return
            values = value if isinstance(value, list) else [value] * len(sizes)
            gaps.append(max(abs(c / n - v) for c, n, v in zip(masks.known_counts, sizes, values)))
        sizes = [m.numel() for m in masks.tensors] if masks is not None else []
        sync(self.device)
        cpu, wall = time.process_time(), time.perf_counter()
        result = fit(assemble.loop(cfg, self.dataset, self.device, model, masks), pruning=updater,
                     callbacks=[StepProbe(after_step)], progress=False)
        sync(self.device)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        out = {"cpu_s": cpu, "wall_s": wall, "test_acc": result["test_acc"],
               "updates": updater.updates if updater is not None else 0, "largest_gap": max(gaps)}
        if masks is not None:
            finals = s_f if isinstance(s_f, list) else [s_f] * len(sizes)
            out["final_sparsity"] = masks.sparsity()
            out["exact"] = masks.pruned_counts() == [round(f * n) for f, n in zip(finals, sizes)]
        return out


def variants(model: str, dataset, device, steps: int) -> List[Round]:
    name = dataset.name if model in MNIST_MODELS else "cifar10"  # the data itself may be synthetic
    base = round_config(model, name, steps)
    rounds = [Round("dense", base, dataset, device, None, masked=False),
              Round("fixed mask", base, dataset, device, None, masked=True)]
    for schedule in SCHEDULES:
        rounds.append(Round(schedule, round_config(model, name, steps, schedule), dataset, device,
                            schedule, masked=True))
    rounds.append(Round("ocp exact", base, dataset, device, "ocp", masked=True, tolerance=0.0))
    return rounds


def prune_cost(bench: Bench) -> dict:
    size, device = bench.size, bench.device
    clock = "wall_s" if bench.is_cuda() else "cpu_s"
    rows, notes = [], []
    for model in bench.models or size.prune_models:
        if model in MNIST_MODELS:
            dataset, source = mnist_data(bench)
            steps = bench.steps_override or size.prune_mnist_steps
        else:
            dataset, source = bench.dataset, bench.data_source
            steps = bench.steps_override or size.prune_steps
        rounds = variants(model, dataset, device, steps)
        log.info("prune: %s, %d variants x %d repeats of a %d-step round", model, len(rounds), size.prune_repeats,
                 rounds[0].total)
        rounds[0].run()  # warm-up: first calls, lazy imports, allocator
        results: Dict[str, List[dict]] = {r.name: [] for r in rounds}
        for _ in range(size.prune_repeats):
            for r in rounds:
                results[r.name].append(r.run())
        dense = [x[clock] for x in results["dense"]]
        fixed = [x[clock] for x in results["fixed mask"]]
        full_steps = total_steps(round_config(model, rounds[0].cfg.data.dataset, 0).train, len(dataset.train_y))
        model_for_sizes = assemble.build_model(rounds[0].cfg, dataset, 0, "cpu")
        sizes = [m.numel() for m in assemble.make_masks(rounds[0].cfg, model_for_sizes).tensors]
        for r in rounds:
            runs = results[r.name]
            times = [x[clock] for x in runs]
            updates = runs[-1]["updates"]
            row = {"model": model, "variant": r.name, "steps": r.total, "round_s": median(times),
                   "ratio": median([t / d for t, d in zip(times, dense)]), "spread": spread(times),
                   "updates": updates, "test_acc": runs[-1]["test_acc"]}
            if r.schedule is not None:
                row.update(largest_gap=runs[-1]["largest_gap"], final_sparsity=runs[-1]["final_sparsity"],
                           exact="yes" if runs[-1]["exact"] else "NO",
                           tolerance=r.cfg.prune.prune_tolerance if r.tolerance is None else r.tolerance)
                if updates:
                    row["update_ms"] = median([(t - f) / updates * 1e3 for t, f in zip(times, fixed)])
                if r.total < full_steps and updates:  # a cut round: project the whole one
                    p = r.cfg.prune
                    s_i, s_f = assemble.sparsity_targets(r.cfg, assemble.make_masks(r.cfg, model_for_sizes))[:2]
                    target = in_round_target(p.schedule, p.schedule_params, s_i, s_f)
                    tolerance = p.prune_tolerance if r.tolerance is None else r.tolerance
                    row["full_updates"] = count_updates(target, sizes, full_steps, tolerance, p.prune_interval)
                    fixed_ratio = median([f / d for f, d in zip(fixed, dense)])
                    row["projected"] = fixed_ratio + row["full_updates"] * row["update_ms"] / 1e3 / (
                        full_steps * median(dense) / r.total)
            elif r.masked:
                row["final_sparsity"] = runs[-1]["final_sparsity"]
            rows.append(row)
        notes.append(f"{model}: {source}; {rounds[0].total}-step rounds, batch {rounds[0].cfg.train.batch_size}, "
                     f"median of {size.prune_repeats} repeats")
    notes.append(f"x dense and round s on {'wall-clock' if bench.is_cuda() else 'process CPU'} time; "
                 f"round s includes the final evaluation")
    notes.append("a cut round prunes at nearly every step; x dense full round = fixed mask's x dense + the whole "
                 "round's updates (lth.pruning.updater.count_updates) x update ms / its dense time (projected)")
    return {"rows": rows, "notes": notes}


COLUMNS = [("model", "model", ""), ("variant", "variant", ""), ("steps", "steps", "d"),
           ("round_s", "round s", ".2f"), ("ratio", "x dense", ".3f"), ("spread", "spread", ".0%"),
           ("updates", "updates", "d"), ("update_ms", "update ms", ".2f"), ("tolerance", "tolerance", "g"),
           ("largest_gap", "largest gap", ".1e"), ("final_sparsity", "final", ".4f"), ("exact", "exact end", ""),
           ("full_updates", "full-round updates", "d"), ("projected", "x dense full round", ".3f")]


def render(section: str, result: dict) -> str:
    return format_table(f"Pruning while training: one round to {FINAL_SPARSITY:.0%} against a dense round",
                        COLUMNS, result["rows"], result["notes"])
