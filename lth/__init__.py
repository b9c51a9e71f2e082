"""lth: lottery-ticket research toolkit.

    from lth import config, execute
    result = execute(config.from_overrides({"schedule": "ocp"}, preset="quick"), device="cpu")

Packages, a concept each, bottom up (docs/DESIGN.md §8 has the map; tests/test_imports.py
keeps the imports pointing down, with no circles):
  errors, knobs, registry   one-line errors; fields with bounds; the Registry type with traits
  plugins, builtins         third-party entries (entry-point group lth.plugins); lth's own entries
  data/      datasets (registry), folders, ImageNet and factory sources, DeviceLoader, streaming, augment
  models/    the model registry and models by spec (torchvision:, timm:, hf:, MODULE:FACTORY)
  config/    the dataclasses that describe a run and generate the CLI; presets; resolve once; the hash
  pruning/   masks, in-round schedules, criteria, scope, targets, the mask updater, layers, channels,
             lth.Pruner
  training/  the one loop (loop.py) and its callbacks, optimizers, LR schedules, recipes, retraining
             LR context, divergence watch, loggers, device, data-parallel ranks (distributed, launch)
  lmc/       interpolation between networks (probe) and the stability curve of two checkpoints
  lottery/   the IMP driver: run assembly, rounds (imp), restart policies, late rewinding, BIMP,
             lth.execute (execution)
  runs/      durable files, the run directory (store), provenance, the list of runs (index)
  structured/, study/, bench/   structured pruning, studies, benchmarks
  cli        the `lth` command (a runner per job); run, bimp: `python -m` entry points

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
