"""lth: lottery-ticket research toolkit.

Modules, one idea each:
  schedules  in-round sparsity schedules (one-shot, iterative, AGP, one-cycle)
  masks      pruning masks: magnitude (local/global) and random pruning, enforcement
  models     model registry (resnet18, vgg16, resnet20, lenet300_100, conv2/4/6), each initialised
             as its reference implementation (models.init; `python -m lth.models.reference`)
  data       datasets as tensors and the device-resident loader
  augment    fastai's aug_transforms() defaults, batched on the device
  train      one training run, pruning while training
  interpolate  in-place interpolation between networks, BatchNorm recomputation
  config     the dataclasses that describe a run and generate the CLI
  store      the run directory: layout, atomic writes, checksums, lock
  imp        the IMP driver (rounds with rewinding)
  run        `python -m lth.run`, the main entry point; runs: `python -m lth.runs list`
  bench      `python -m lth.bench`, the benchmarks
  errors     one-line user errors and the CLI wrapper
"""

__version__ = "0.1.0"
