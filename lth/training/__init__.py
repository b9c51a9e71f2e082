"""Training: the loop, its recipe (optimizers, LR schedules) and the retraining LR context.

    loop          one training run: LR schedule, in-round sparsity schedule, mask enforcement, eval
    optimizers    the optimizer registry (AdamW as fastai, SGD as OpenLTH)
    lr_schedules  the LR schedule registry (one-cycle, step, constant, linear)
    retrain_lr    retraining LR schedules FT, LRW, SLR, CLR, LLR, ALLR (Zimmer et al.) and their context
"""
