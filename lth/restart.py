"""Round restart policies of the IMP driver: which weights round r starts from (before the
previous round's mask is applied). docs/DESIGN.md §2.

    rewind   Frankle & Carbin: every round starts from W0, or from W_k (late rewinding,
             --rewind-step k: the weights after k steps of round 1)

A policy is a registry entry that makes an object with `start_state(store, r) -> state dict`,
`ticket_state(store)` (the weights a ticket of the run is applied to, for the analysis) and
`capture_step` (the round-1 step whose weights the driver saves for it, or None). The
fine-tuning and learning-rate-restart policies of prune-retrain pipelines go here too.
"""
from dataclasses import dataclass
from typing import Optional

from lth.knobs import knob
from lth.registry import Registry

RESTARTS = Registry("round restart")


@dataclass
class RewindParams:
    rewind_step: int = knob(0, "rewind to the weights after this many steps of round 1 (0: to W0)", ge=0)


class Rewind:
    def __init__(self, rewind_step: int = 0):
        self.rewind_step = rewind_step
        self.capture_step: Optional[int] = rewind_step if rewind_step > 0 else None

    def ticket_state(self, store) -> dict:
        """W_rewind: what the ticket m_r is applied to (W0, or W_k)."""
        return store.load_rewind() if self.rewind_step > 0 else store.load_init()

    def start_state(self, store, r: int) -> dict:
        return self.ticket_state(store) if r > 1 else store.load_init()


@RESTARTS.register("rewind", RewindParams)
def rewind(rewind_step: int = 0) -> Rewind:
    """Every round restarts from W0, or from W_k with --rewind-step k (late rewinding)."""
    return Rewind(rewind_step)


def policy(name: str, params: dict) -> object:
    """The restart policy object of `name` with its resolved parameters."""
    return RESTARTS.get(name).fn(**params)
