"""Late rewinding's dense phase (Frankle et al. 2020, "Linear Mode Connectivity and the Lottery
Ticket Hypothesis"; OpenLTH's pretraining phase), docs/DESIGN.md §2.

With --rewind-step k, before round 1 the dense network W0 trains k steps with the run's own
recipe: the LR (and scheduled momentum) at step/T of the round budget T, the data order and
augmentation of the run's seeds, no mask. rewind.pt then holds W_k and the training loader's exact position at step k,
and every round (round 1 included) and every ticket copy continues from there: steps k..T-1.

    rewinding.ensure_rewind_point(cfg, store, dataset, model, device, k, forward)   # lth.lottery.imp calls it

rewind.pt = {"format", "step": k, "model": W_k, "loader": DeviceLoader.state_dict(position=True)}.
It is written atomically once the k steps are done, so its presence marks the dense phase
done; a run killed during the phase runs it again from init.pt, and gets the same W_k
(the phase is deterministic like every other part of a run, docs/DESIGN.md §4).
"""
import logging
from typing import Callable

from torch import nn

from lth.config import RunConfig
from lth.data.datasets import Dataset
from lth.lottery.restart import REWIND_FORMAT
from lth.lottery.rewind_api import snapshot
from lth.runs.store import RunStore
from lth.lottery import assemble
from lth.training.loop import train

log = logging.getLogger(__name__)


def dense_phase(cfg: RunConfig, model: nn.Module, dataset: Dataset, device, k: int,
                forward: Callable = None) -> dict:
    """Train `model` (W0, dense) in place for steps 0..k-1 of the round budget, exactly as a
    round would with an all-ones mask (the one loop, stopped at k); returns the training
    loader's position after step k."""
    loop = assemble.loop(cfg, dataset, device, model, None, forward, stop_step=k)
    train(loop)
    return loop.train_loader.state_dict(position=True)


def ensure_rewind_point(cfg: RunConfig, store: RunStore, dataset: Dataset, model: nn.Module, device, k: int,
                        forward: Callable = None) -> None:
    """Write rewind.pt (W_k and the loader position) unless k is 0 or it exists. `model` is
    left at W_k: every round loads its own start anyway."""
    if k == 0 or store.rewind_path.exists():
        return
    log.info("late rewinding: training the dense network for %d steps to W_%d", k, k)
    model.load_state_dict(store.load_init())
    loader = dense_phase(cfg, model, dataset, device, k, forward)
    state = snapshot(model)
    store.save_rewind({"format": REWIND_FORMAT, "step": k, "model": state, "loader": loader})

