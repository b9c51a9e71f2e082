"""lth.Pruner in a plain loop against a real `lth run`: the per-step sparsity of both, per layer.

    python examples/trajectory_vs_lth_run.py --schedule ocp --final-sparsity 0.9 --steps 450

Runs `lth run` (digits, LeNet-300-100, one round) with --log tensorboard, reads its per-layer
sparsity back from the event file (logged at every step where the mask changed), then trains
the same architecture in a plain loop (its own data order and optimizer) with lth.Pruner on the
same schedule, and prints the largest gap between the two trajectories over all steps and layers.
"""
import argparse
import logging
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import lth
from lth import config, models
from lth.data import datasets

p = argparse.ArgumentParser()
p.add_argument("--schedule", default="ocp")
p.add_argument("--final-sparsity", type=float, default=0.9)
p.add_argument("--steps", type=int, default=450)
p.add_argument("--tolerance", type=float, default=1e-3)   # lth run's --prune-tolerance default
args = p.parse_args()
logging.basicConfig(level=logging.WARNING, format="%(message)s")

with tempfile.TemporaryDirectory() as tmp:   # 1. lth run, watched through its TensorBoard log
    cfg = config.from_overrides({"schedule": args.schedule, "final_sparsity": args.final_sparsity, "rounds": 1,
                                 "steps": args.steps, "eval_every": 0, "layers": "all", "layer_rate": [],
                                 "prune_tolerance": args.tolerance, "log": "tensorboard", "progress": False},
                                preset="quick")
    result = lth.execute(cfg, run_dir=str(Path(tmp) / "run"), device="cpu")
    events = EventAccumulator(str(next((result.run_dir / "logs" / "tensorboard").glob("events.*"))))
    events.Reload()
    names = [t[len("sparsity/"):] for t in events.Tags()["scalars"] if t.startswith("sparsity/") and t != "sparsity/total"]
    logged = {n: {e.step: e.value for e in events.Scalars(f"sparsity/{n}")} for n in names}

model = models.build("lenet300_100", 10, 1, 8)        # 2. the same architecture in a plain loop
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
pruner = lth.Pruner(model, optimizer, schedule=args.schedule, final_sparsity=args.final_sparsity,
                    total_steps=args.steps, layers="all", tolerance=args.tolerance)
ds, g = datasets.load("digits"), torch.Generator().manual_seed(7)
ours = []
for k in range(args.steps + 1):
    ours.append(dict(zip(pruner.masks.names, (c / m.numel() for c, m in zip(pruner.masks.pruned_counts(), pruner.masks.tensors)))))
    if k == args.steps:
        break
    idx = torch.randint(0, len(ds.train_y), (64,), generator=g)
    optimizer.zero_grad()
    F.cross_entropy(model(ds.train_x[idx].float() / 16), ds.train_y[idx]).backward()
    optimizer.step()

gap, count_gap, changes = 0.0, 0, 0                   # 3. compare step by step (the log holds changes only)
current = {n: 0.0 for n in names}
for k, row in enumerate(ours):
    for n in names:
        current[n] = logged[n].get(k, current[n])
        numel = dict(zip(pruner.masks.names, pruner.masks.tensors))[n].numel()
        gap = max(gap, abs(current[n] - row[n]))
        count_gap = max(count_gap, abs(round(current[n] * numel) - round(row[n] * numel)))
    changes += k > 0 and row != ours[k - 1]
print(f"schedule {args.schedule} -> {args.final_sparsity}, {args.steps} steps, tolerance {args.tolerance:g}: "
      f"{changes} mask updates in the plain loop, {len(logged[names[0]])} logged points in lth run's event file")
print(f"final sparsity: lth run {result.summaries[-1]['sparsity']:.6f}, plain loop {pruner.sparsity():.6f}")
print(f"largest gap over {len(ours)} steps x {len(names)} layers: {gap:.3g} in sparsity "
      f"(float32 in the event file), {count_gap} weights")
