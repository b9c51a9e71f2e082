"""lth: lottery-ticket research toolkit.

    from lth import config, execute
    result = execute(config.from_overrides({"schedule": "ocp"}, preset="quick"), device="cpu")

Modules, one idea each (docs/DESIGN.md has the map):
  registry   registries whose entries declare their parameters; knobs: fields with bounds
  schedules  in-round sparsity schedules (one-shot, IMP, iterative, AGP, one-cycle)
  lr_schedules, optimizers   the training recipe's registries
  masks      mask storage and enforcement
  pruning    the one home of pruning: criteria, scope, targets, the in-round mask updater;
             channel groups (torch-pruning), saliency, FLOPs-targeted selection
  restart    round restart policies (rewind to W0, or to the dense W_k at step k; continue:
             prune-retrain from a dense run)
  rewinding  late rewinding's dense phase: W_k and the loader position (rewind.pt)
  retrain_lr retraining LR schedules FT, LRW, SLR, CLR, LLR, ALLR (Zimmer et al.) and their context
  models     model registry (resnet18, vgg16, resnet20, lenet300_100, conv2/4/6), each initialised
             as its reference implementation (models.init; `python -m lth.models.reference`)
  data       datasets as tensors and the device-resident loader
  augment    fastai's aug_transforms() defaults, batched on the device
  train      one training run, pruning while training
  interpolate  in-place interpolation between networks, BatchNorm recomputation
  config     the dataclasses that describe a run and generate the CLI; the normalised hash
  store      the run directory: layout, atomic writes, checksums, lock
  assemble   model, data, masks and restart state from a config
  imp        the IMP driver (rounds)
  execution  lth.execute(cfg): a whole run as a library call
  run        `python -m lth.run`, the main entry point; runs: `python -m lth.runs list`
  bimp       `python -m lth.bimp`: budgeted IMP and pruning-during-training baselines at one budget
  bench      `python -m lth.bench`, the benchmarks
  study      `python -m lth.study`, studies: many runs and their analyses as one command
  structured `python -m lth.structured`: OCSPruner and the schedules at channel granularity, export
  errors     one-line user errors and the CLI wrapper

Your own training loop (docs/your-own-loop.md), imported on first use:
  lth.Pruner                  the schedules and masks on any model and optimizer (lth.pruning.pruner)
  lth.rewind, lth.snapshot, lth.RewindPoint   rewinding to W0 or W_k (lth.lottery.rewind_api)
  lth.lmc.interpolate         instability error and barrier of any two checkpoints (lth.lmc.curve)
  lth.integrations            Lightning and Hugging Face Trainer callbacks
"""

__version__ = "0.1.0"


def execute(cfg, **kwargs):
    """A whole IMP run as a library call: lth.lottery.execution.execute (imported on first use, so that
    `import lth` stays light)."""
    from lth.lottery.execution import execute as run_execute
    return run_execute(cfg, **kwargs)


# Your own training loop (docs/your-own-loop.md): imported on first use, so `import lth` stays light.
_LAZY = {"Pruner": ("lth.pruning.pruner", "Pruner"), "rewind": ("lth.lottery.rewind_api", "rewind"),
         "snapshot": ("lth.lottery.rewind_api", "snapshot"), "RewindPoint": ("lth.lottery.rewind_api", "RewindPoint"),
         "lmc": ("lth.lmc", None)}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'lth' has no attribute {name!r}")
    import importlib
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    return value if attr is None else getattr(value, attr)
