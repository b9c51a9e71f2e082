"""Pruning criteria: how each prunable weight is scored (the lowest scores are pruned first).

    magnitude  |w| (L1 magnitude): the paper's, fasterai's and OpenLTH's criterion
    random     uniform noise from a seeded CPU generator: the random-pruning control

A criterion is `score(param, generator) -> float tensor of param's shape` on param's device.
Random scores are drawn on the CPU from the caller's generator so that the same seed gives the
same mask on every device.
"""
from typing import Optional

import torch

from lth.errors import LthError
from lth.registry import Registry

# Traits: seeded, the criterion draws from the run's --prune-seed (a CPU generator is passed;
# other criteria leave the seed out of the config and its hash); magnitude, its scores are |w|,
# so lth.pruning.candidates' bounded selection finds the same weights at a fraction of the cost.
CRITERIA = Registry("pruning criterion", traits={"seeded": False, "magnitude": False})


@CRITERIA.register("magnitude", magnitude=True)
def magnitude(param: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """L1 magnitude |w|."""
    return param.detach().abs().float()


@CRITERIA.register("random", seeded=True)
def random(param: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Uniform random scores from the seeded generator (the control)."""
    if generator is None:
        raise LthError("random pruning needs a seeded generator")
    return torch.rand(param.shape, generator=generator).to(param.device)
