"""Training: the loop, its recipe (optimizers, LR schedules) and the retraining LR context.

    loop          one training run: LR schedule, in-round sparsity schedule, mask enforcement, eval
    optimizers    the optimizer registry (AdamW as fastai, SGD as OpenLTH)
    lr_schedules  the LR schedule registry (one-cycle, step, constant, linear)
    retrain_lr    retraining LR schedules FT, LRW, SLR, CLR, LLR, ALLR (Zimmer et al.) and their context
"""

# Every LR schedule is registered before any is looked up: the retraining ones register
# themselves into lth.training.lr_schedules.LR_SCHEDULES, and importing any module of this
# package runs this first.
from lth.training import lr_schedules, retrain_lr  # noqa: E402,F401
