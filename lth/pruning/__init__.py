"""The one home of pruning: what to prune, how much where, and when during training.

    criteria   how weights are scored (magnitude, random; a registry, open for more)
    select     the selection primitive: prune the k lowest-scoring kept weights, ties by index
    scope      how a sparsity target is spread over layers (local, global, per-layer rates)
    targets    the sparsity targets of IMP rounds, per layer
    updater    MaskUpdater: binds an in-round schedule to a training run (lth.training.loop calls it)
    channels   channel granularity (dependency groups, structured pruning; issue 13)
    channel_select  which channels: group saliency ranked globally, cut by binary search to a FLOPs target

`lth.pruning.masks.Masks` is the storage (one tensor per prunable weight) and enforcement; everything
that decides which entries become zero lives here. Training, the IMP driver and lth.bench use
the same MaskUpdater, so the benchmark times exactly what a run does.

    from lth.pruning import prune
    prune(masks, 0.9)                                   # magnitude, every layer to 90 %
    prune(masks, 0.9, criterion="random", generator=torch.Generator().manual_seed(0))
    prune(masks, 0.9, scope="global")                   # one threshold over all layers
"""
from lth.pruning.criteria import CRITERIA
from lth.pruning.scope import SCOPES, prune, random_mask_like
from lth.pruning.targets import layer_rates, round_targets
from lth.pruning.updater import MaskUpdater

__all__ = ["CRITERIA", "SCOPES", "prune", "random_mask_like", "layer_rates", "round_targets", "MaskUpdater"]
