"""Round restart policies of the IMP driver: which weights, at which step of the round's
schedule, round r starts from (before the previous round's mask is applied). docs/DESIGN.md §2, §10.

    rewind     Frankle & Carbin: every round starts from W0 at step 0; with --rewind-step k
               (late rewinding, Frankle et al. 2020 and OpenLTH) from W_k at step k, where W_k
               is the dense network after k steps of the run's recipe (lth.lottery.rewinding), and the
               round trains the remaining steps k..T-1
    continue   prune-retrain (Han et al. 2015; Zimmer et al. 2023): round (phase) 1 starts from
               the final weights of a finished dense run (--from-run DIR), round r > 1 from the
               final weights of round r - 1; with --schedule one_shot --start 0 each phase
               prunes at its start and retrains for the rest

A policy is a registry entry that makes an object with `dense_steps` (dense training before
round 1 that makes rewind.pt, 0: none), `start_step` (the step of the LR and sparsity
schedules every round and every ticket copy starts at), `start_state(store, r)` and
`start_loader(store, r)` (the weights and the training loader's position round r starts from),
`continues_data` (whether each round saves its loader's end position for the next),
`ticket_state(store)` (the weights a ticket of the run is applied to, for the analysis),
`check(cfg)` (one-line errors for what needs the disk, before anything is written) and
`reference()` (the RunStore of the dense run whose LR history retraining schedules read, or None).
"""
import logging
import os
from dataclasses import dataclass
from typing import Callable, Optional

from lth.errors import LthError
from lth.knobs import knob
from lth.pruning.schedules import SCHEDULES
from lth.registry import Registry

log = logging.getLogger(__name__)

# Trait from_dense_run: the policy starts from a finished dense run (its `reference()`), whose LR
# history the retraining LR schedules (lth.training.retrain_lr) read: only such a run can use them.
RESTARTS = Registry("round restart", traits={"from_dense_run": False})
REWIND_FORMAT = "lth-rewind/2"  # rewind.pt before it: a bare state dict, W_k captured inside round 1


@dataclass
class RewindParams:
    rewind_step: int = knob(0, "rewind to the dense network after this many steps (0: to W0); "
                               "rounds then train the remaining steps", ge=0)


class Rewind:
    continues_data = False  # each round's loader starts at W_rewind's position: no loader.pt needed

    def __init__(self, rewind_step: int = 0):
        self.rewind_step = rewind_step
        self.dense_steps = rewind_step   # lth.lottery.rewinding trains W0 this far, dense, before round 1
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

    def start_loader(self, store, r: int) -> Optional[dict]:
        """The training loader's position at W_rewind (None: a fresh loader, step 0)."""
        return self.rewind_point(store)["loader"] if self.rewind_step > 0 else None

    def check(self, cfg) -> None:
        pass

    def reference(self):
        return None


@RESTARTS.register("rewind", RewindParams)
def rewind(rewind_step: int = 0, open_run: Callable = None) -> Rewind:
    """Every round restarts from W0, or from the dense W_k at step k with --rewind-step k."""
    return Rewind(rewind_step)


@dataclass
class ContinueParams:
    from_run: str = knob("", "the finished dense run (its directory) whose final weights phase 1 starts from; "
                             "recorded as an absolute path")

    def __post_init__(self):
        # One spelling per run directory, so `runs/x` and `./runs/x` give one hash; a resumed
        # run keeps the path it was made with, whatever the working directory.
        if self.from_run:
            self.from_run = os.path.abspath(self.from_run)

    def check(self):
        if not self.from_run:
            raise LthError("--restart continue needs --from-run DIR, a finished dense run "
                           "(python -m lth.run --schedule dense ...)")


# The fields a dense run must share with the run that continues from it (its weights must fit).
SAME_AS_DENSE = (("data", "dataset"), ("data", "image_size"), ("model", "model"))


class Continue:
    continues_data = True  # round r's end position (loader.pt) is where round r + 1's data starts
    dense_steps = 0   # the dense run is another run (--from-run)
    start_step = 0    # each phase trains its whole budget

    def __init__(self, from_run: str, open_run: Callable):
        self.from_run = from_run
        self.open_run = open_run   # lth.runs.store.open_run (given by the caller: the store sits above this)

    def start_loader(self, store, r: int) -> Optional[dict]:
        """Phase 1: a fresh loader from --order-seed; phase r > 1: where phase r - 1's loader
        stopped, so the phases see one continuing data stream as in Zimmer et al.'s code (with
        T_rt = 0.5 epoch, fresh loaders would train every phase on the same half of the data).
        A run whose phase r - 1 was saved before lth kept that position (no loader.pt) goes on
        as it was made, with a fresh loader, and says so."""
        if r == 1:
            return None
        state = store.load_loader(r - 1)
        if state is None:
            log.warning("%s: phase %d has no saved data position (made by an earlier lth); phase %d starts a "
                        "fresh data order from --order-seed, as that run's earlier phases did", store.root, r - 1, r)
        return state

    def reference(self):
        """The dense run's RunStore (an LthError when from_run is not a run directory)."""
        try:
            return self.open_run(self.from_run)
        except LthError as e:
            raise LthError(f"--from-run: {e}") from None

    def check(self, cfg) -> None:
        """The dense run exists, fits this run's model and data, is finished and is dense."""
        store = self.reference()
        dense = store.run_config().resolved()
        for section, name in SAME_AS_DENSE:
            mine, theirs = getattr(getattr(cfg, section), name), getattr(getattr(dense, section), name)
            if mine != theirs:
                raise LthError(f"--from-run {self.from_run} was made with --{name.replace('_', '-')} {theirs}, "
                               f"this run has {mine}; its weights do not fit (pick a dense run of the same "
                               f"model and data)")
        rounds = dense.prune.rounds
        done = store.finished_rounds()
        if len(done) < rounds:
            raise LthError(f"--from-run {self.from_run} has {len(done)} of {rounds} rounds finished; finish it "
                           f"first (python -m lth.run --resume {self.from_run})")
        sparsity = store.load_summary(rounds)["sparsity"]
        if SCHEDULES.get(dense.prune.schedule).traits["prunes"] or sparsity != 0:
            raise LthError(f"--from-run {self.from_run} is a {dense.prune.schedule} run at sparsity {sparsity:.4f}, "
                           f"not dense; --from-run takes a dense run (--schedule dense)")

    def dense_final(self) -> dict:
        store = self.reference()
        return store.load_final(store.run_config().prune.rounds)

    def ticket_state(self, store) -> dict:
        """The trained dense weights: what phase 1's mask is applied to."""
        return self.dense_final()

    def start_state(self, store, r: int) -> dict:
        return store.load_final(r - 1) if r > 1 else self.dense_final()


@RESTARTS.register("continue", ContinueParams, from_dense_run=True)
def continue_(from_run: str = "", open_run: Callable = None) -> Continue:
    """Prune-retrain: phase 1 from a dense run's final weights, phase r from phase r-1's."""
    return Continue(from_run, open_run)


def policy(name: str, params: dict, open_run: Callable) -> object:
    """The restart policy object of `name` with its resolved parameters; `open_run` opens
    another run directory (lth.runs.store.open_run) for the policies that read one."""
    return RESTARTS.get(name).fn(**params, open_run=open_run)
