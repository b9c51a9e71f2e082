"""The network a stability measurement starts from, for each kind of measurement.

    ticket  W_rewind * m_r      the round's ticket (W_rewind: W0, or the dense W_k with late rewinding)
    reinit  W0' * m_r           control: the same mask on a fresh initialisation W0'
    random  W_rewind * m'       control: a random mask m' with m_r's per-layer pruned counts

With late rewinding every kind trains from step k (analysis.copies), the reinit control too,
as OpenLTH's randomly_reinitialize branch starts at the level's start step. W_k is dense, so
the random control's kept weights hold no zeros, like the ticket's.

The controls' randomness is seeded from the analysis --seed (`reinit_seed`, `random_mask_seed`),
so the same invocation always builds the same control, and another --seed draws another one.
The random mask depends only on --seed and the per-layer pruned counts, so two runs with the
same init and the same per-layer sparsity (local pruning, any schedule) get the same random
control: it is a property of the initialisation and the sparsity, not of the schedule.
"""
from dataclasses import dataclass

import torch

from lth.lottery import assemble
from lth.config import RunConfig
from lth.data.datasets import Dataset
from lth.pruning import random_mask_like
from lth.runs.store import RunStore

KINDS = ("ticket", "reinit", "random")
CONTROLS = KINDS[1:]
REINIT_SEED_OFFSET = 1000       # W0' seed = the run's init seed + this + --seed: never the run's own
RANDOM_MASK_SEED_BASE = 2000    # seed of the random control's mask generator = this + --seed


def reinit_seed(cfg: RunConfig, seed: int) -> int:
    return cfg.seeds.init_seed + REINIT_SEED_OFFSET + seed


def random_mask_seed(seed: int) -> int:
    return RANDOM_MASK_SEED_BASE + seed


@dataclass
class StartingPoint:
    state: dict        # model state (weights, BatchNorm buffers) on the CPU, pruned weights zero
    mask: dict         # the mask the copies train under (bool tensors by weight name)
    sparsity: float    # fraction of prunable weights the mask removes
    provenance: dict   # how it was built: init and mask sources and seeds (recorded in the results)


def starting_point(store: RunStore, cfg: RunConfig, dataset: Dataset, r: int, kind: str, seed: int) -> StartingPoint:
    """The masked weights both copies of (round r, kind) start from. Built on the CPU, so the
    same seeds give the same start whatever device trains the copies."""
    model = assemble.build_model(cfg, dataset, cfg.seeds.init_seed, "cpu")
    masks = assemble.make_masks(cfg, model)
    masks.load_state_dict(store.load_mask(r))
    provenance = {"kind": kind, "mask": f"round {r}", "init": "rewind"}
    if kind == "reinit":
        provenance["init"] = f"fresh, seed {reinit_seed(cfg, seed)}"
        model.load_state_dict(assemble.build_model(cfg, dataset, reinit_seed(cfg, seed), "cpu").state_dict())
    else:
        model.load_state_dict(assemble.rewind_state(store, cfg))
    if kind == "random":
        provenance["mask"] = f"random with round {r}'s per-layer sparsity, seed {random_mask_seed(seed)}"
        masks = random_mask_like(masks, torch.Generator().manual_seed(random_mask_seed(seed)))
    masks.enforce()
    return StartingPoint(model.state_dict(), masks.state_dict(), masks.sparsity(), provenance)
