"""What a stability measurement depends on, and the names its results are stored under.

Two groups, because they cost very differently. The copy settings decide the two trained
copies (hours on a GPU); the probe settings only decide how their interpolation is evaluated
(seconds). So the copies live in a folder named after the copy settings, and each
interpolation in a file named after the probe settings:

    stability/round_05/ticket/                      store.stability_dir(5, "ticket"), locked while filled
      seed0/                                        CopySettings(seed=0): the run's own budget
        copy_a.pt  copy_b.pt                        the trained copies (copy_x.checkpoint.pt while training)
        interpolation-bn_interpolate-alphas11.json  ProbeSettings(): the default probe
        interpolation-bn_reset-alphas30-bnb20.json  a later run with other probe settings: added beside
      seed0-steps500/                               --steps 500: other copies, beside the first ones

A later invocation with other settings therefore adds results and never overwrites earlier
ones, and one that changes only --bn or --alphas reuses the trained copies. A model without
BatchNorm has nothing to interpolate or recompute, so both --bn modes name the same file
(bn_none) and the second invocation reuses the first one's result.

Seeds. Copy a is trained with data-order and augmentation seeds derived from --seed, copy b
with those derived from --seed + 1 (so copy b of --seed 0 is copy a of --seed 1). Both start
from the same weights under the same mask; nothing else differs.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from lth.runs.store import RunStore

COPIES = ("a", "b")            # the two copies of a ticket, trained with different SGD noise
COPY_SEED_BASE = 1000          # copies' seeds start here, clear of the IMP run's own small seeds
BN_MODES = ("reset", "interpolate")
NO_BN = "none"                 # the recorded mode of a model without BatchNorm


@dataclass(frozen=True)
class CopySettings:
    """What the two trained copies depend on (besides the run's round and kind)."""
    seed: int = 0                  # copy a: seeds from `seed`; copy b: from `seed + 1`
    epochs: Optional[float] = None  # override of the run's budget in epochs (None: the run's)
    steps: Optional[int] = None    # override of the run's budget in steps (None: the run's)

    def copy_seeds(self, copy: str) -> dict:
        """Data-order and augmentation seeds of copy 'a' or 'b': two per index, never shared."""
        index = self.seed + COPIES.index(copy)
        return {"order_seed": COPY_SEED_BASE + 2 * index, "augment_seed": COPY_SEED_BASE + 2 * index + 1}

    def folder_name(self) -> str:
        name = f"seed{self.seed}"
        if self.epochs is not None:
            name += f"-epochs{self.epochs:g}"
        if self.steps is not None:
            name += f"-steps{self.steps}"
        return name

    def to_dict(self) -> dict:
        return {"seed": self.seed, "epochs": self.epochs, "steps": self.steps}


@dataclass(frozen=True)
class ProbeSettings:
    """How the interpolation between the copies is evaluated."""
    # BatchNorm statistics along the line: "interpolate" (the running statistics are
    # interpolated like the weights) or "reset" (recomputed for each interpolated network).
    # Interpolate by default: the paper describes interpolating the weights of the two copies
    # and nothing else, which is what interpolating their state dicts (fastai's models, the
    # paper's tooling) does; it is the paper's likely protocol. Reset measures the weights'
    # connectivity without the BatchNorm mismatch that averaged statistics add. Both are kept,
    # stored under different names, and Fig. 3 draws both when both were measured.
    bn: str = "interpolate"
    alphas: int = 11               # grid points in [0, 1], endpoints included (Frankle et al.: 30)
    bn_batches: int = 20           # reset: training batches used to recompute the statistics
    # Test batch size: inference keeps no activations for backward, so it can be large. Not part
    # of the file name: it changes a result only by float rounding.
    eval_batch_size: int = 2048

    def mode(self, has_batchnorm: bool) -> str:
        """The mode actually applied: 'none' for a model without BatchNorm."""
        return self.bn if has_batchnorm else NO_BN

    def grid(self) -> List[float]:
        """`alphas` evenly spaced points with 0 and 1 exact, plus 0.5 when the count is even."""
        points = {i / (self.alphas - 1) for i in range(self.alphas)} | {0.5}
        return sorted(points)

    def file_name(self, has_batchnorm: bool) -> str:
        mode = self.mode(has_batchnorm)
        name = f"interpolation-bn_{mode}-alphas{self.alphas}"
        if mode == "reset":
            name += f"-bnb{self.bn_batches}"
        return name + ".json"

    def to_dict(self, has_batchnorm: bool) -> dict:
        return {"bn": self.bn, "bn_mode": self.mode(has_batchnorm), "alphas": self.alphas,
                "bn_batches": self.bn_batches if self.mode(has_batchnorm) == "reset" else None,
                "eval_batch_size": self.eval_batch_size}


def copies_dir(store: RunStore, r: int, kind: str, copies: CopySettings) -> Path:
    return store.stability_dir(r, kind) / copies.folder_name()


def copy_path(store: RunStore, r: int, kind: str, copies: CopySettings, copy: str) -> Path:
    return copies_dir(store, r, kind, copies) / f"copy_{copy}.pt"


def copy_checkpoint_path(store: RunStore, r: int, kind: str, copies: CopySettings, copy: str) -> Path:
    return copies_dir(store, r, kind, copies) / f"copy_{copy}.checkpoint.pt"


def result_path(store: RunStore, r: int, kind: str, copies: CopySettings, probe: ProbeSettings,
                has_batchnorm: bool) -> Path:
    return copies_dir(store, r, kind, copies) / probe.file_name(has_batchnorm)


def find_result(store: RunStore, r: int, kind: str, copies: CopySettings, probe: ProbeSettings) -> Optional[Path]:
    """The saved result for these settings, whichever BatchNorm case the model is, or None."""
    for has_batchnorm in (True, False):
        path = result_path(store, r, kind, copies, probe, has_batchnorm)
        if path.exists():
            return path
    return None
