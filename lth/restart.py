"""Round restart policies of the IMP driver: which weights, at which step of the round's
schedule, round r starts from (before the previous round's mask is applied). docs/DESIGN.md §2.

    rewind   Frankle & Carbin: every round starts from W0 at step 0; with --rewind-step k
             (late rewinding, Frankle et al. 2020 and OpenLTH) from W_k at step k, where W_k
             is the dense network after k steps of the run's recipe (lth.rewinding), and the
             round trains the remaining steps k..T-1

A policy is a registry entry that makes an object with `dense_steps` (dense training before
round 1 that makes rewind.pt, 0: none), `start_step` (the step of the LR and sparsity
schedules every round and every ticket copy starts at), `start_state(store, r)` and
`start_loader(store)` (the weights and the training loader's position round r starts from),
and `ticket_state(store)` (the weights a ticket of the run is applied to, for the analysis).
The fine-tuning and learning-rate-restart policies of prune-retrain pipelines go here too.
"""
from dataclasses import dataclass
from typing import Optional

from lth.errors import LthError
from lth.knobs import knob
from lth.registry import Registry

RESTARTS = Registry("round restart")
REWIND_FORMAT = "lth-rewind/2"  # rewind.pt before it: a bare state dict, W_k captured inside round 1


@dataclass
class RewindParams:
    rewind_step: int = knob(0, "rewind to the dense network after this many steps (0: to W0); "
                               "rounds then train the remaining steps", ge=0)


class Rewind:
    def __init__(self, rewind_step: int = 0):
        self.rewind_step = rewind_step
        self.dense_steps = rewind_step   # lth.rewinding trains W0 this far, dense, before round 1
        self.start_step = rewind_step    # rounds and ticket copies train steps start_step..T-1

    def rewind_point(self, store) -> dict:
        """rewind.pt, checked to hold this protocol's W_k: {step, model, loader}."""
        point = store.load_rewind()
        if not isinstance(point, dict) or point.get("format") != REWIND_FORMAT:
            raise LthError(f"{store.rewind_path} holds a W_k captured inside round 1 by an earlier lth, not "
                           f"after {self.rewind_step} dense steps; start the run again in another --run-dir")
        if point["step"] != self.rewind_step:
            raise LthError(f"{store.rewind_path} holds W_{point['step']}, not W_{self.rewind_step} of the run's "
                           f"--rewind-step {self.rewind_step}")
        return point

    def ticket_state(self, store) -> dict:
        """W_rewind: what the ticket m_r is applied to (W0, or W_k)."""
        return self.rewind_point(store)["model"] if self.rewind_step > 0 else store.load_init()

    def start_state(self, store, r: int) -> dict:
        return self.ticket_state(store)

    def start_loader(self, store) -> Optional[dict]:
        """The training loader's position at W_rewind (None: a fresh loader, step 0)."""
        return self.rewind_point(store)["loader"] if self.rewind_step > 0 else None


@RESTARTS.register("rewind", RewindParams)
def rewind(rewind_step: int = 0) -> Rewind:
    """Every round restarts from W0, or from the dense W_k at step k with --rewind-step k."""
    return Rewind(rewind_step)


def policy(name: str, params: dict) -> object:
    """The restart policy object of `name` with its resolved parameters."""
    return RESTARTS.get(name).fn(**params)
