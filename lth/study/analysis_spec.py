"""A study's [analysis] section: which table, which stability measurements (parsed, checked).

    [analysis]
    table = "table2"                     # table1, table2, table3: lth tables
    targets = { cifar10 = 0.9 }          # table3: accuracy to reach, by dataset
    [analysis.stability]                 # tickets: measure the rounds' tickets
    rounds = "all"                       # "all", "last" or a list of round numbers
    controls = ["reinit", "random"]      # at control_rounds ("last" by default)
    seed = 0                             # and alphas, bn, bn_batches, epochs, steps:
    alphas = 11                          # the flags of lth stability
"""
from dataclasses import dataclass, field
from typing import List, Optional, Union

from lth.errors import LthError

TABLES = ("table1", "table2", "table3")
ANALYSIS_KEYS = ("table", "targets", "stability", "stands_for")
STABILITY_KEYS = ("rounds", "controls", "control_rounds", "seed", "alphas", "bn", "bn_batches", "epochs", "steps")
KINDS = ("ticket", "reinit", "random")
COPIES = ("a", "b")


@dataclass(frozen=True)
class Stability:
    """What python -m analysis.stability would be asked for, as a study's analysis."""
    rounds: Union[str, tuple] = "all"
    controls: tuple = ()
    control_rounds: Union[str, tuple] = "last"
    seed: int = 0
    alphas: int = 11
    bn: str = "interpolate"     # analysis.settings.ProbeSettings' default (a test keeps them equal)
    bn_batches: int = 20
    epochs: Optional[float] = None
    steps: Optional[int] = None

    def rounds_of(self, total: int, controls: bool = False) -> List[int]:
        """The measured rounds of a run of `total` rounds."""
        spec = self.control_rounds if controls else self.rounds
        if spec == "all":
            return list(range(1, total + 1))
        if spec == "last":
            return [total]
        return sorted(r for r in spec if r <= total)

    def jobs(self, total: int) -> List[tuple]:
        """(round, kind) pairs of a run of `total` rounds."""
        jobs = [(r, "ticket") for r in self.rounds_of(total)]
        jobs += [(r, kind) for r in self.rounds_of(total, controls=True) for kind in self.controls]
        return jobs

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Stability":
        """to_dict's inverse (a task payload's lists back to tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass
class Analysis:
    table: Optional[str] = None
    targets: dict = field(default_factory=dict)
    stability: Optional[Stability] = None
    stands_for: dict = field(default_factory=dict)  # {"dataset": {"digits": "cifar10"}, "model": {...}}


def parse(raw: dict, where: str) -> Analysis:
    for key in raw:
        if key not in ANALYSIS_KEYS:
            raise LthError(f"{where}: unknown key analysis.{key!r}; allowed: {', '.join(ANALYSIS_KEYS)}")
    out = Analysis()
    if "table" in raw:
        if raw["table"] not in TABLES:
            raise LthError(f"{where}: analysis.table must be one of {', '.join(TABLES)}, got {raw['table']!r}")
        out.table = raw["table"]
    targets = raw.get("targets", {})
    if not isinstance(targets, dict) or not all(isinstance(v, (int, float)) and 0 < v <= 1 for v in targets.values()):
        raise LthError(f"{where}: analysis.targets must map datasets to accuracies in (0, 1], got {targets!r}")
    if out.table == "table3" and not targets:
        raise LthError(f"{where}: analysis.table = 'table3' needs analysis.targets (the accuracy to reach per dataset)")
    out.targets = dict(targets)
    stands_for = raw.get("stands_for", {})
    if not isinstance(stands_for, dict) or not all(isinstance(v, dict) for v in stands_for.values()):
        raise LthError(f"{where}: analysis.stands_for must map axes to tables of names")
    out.stands_for = stands_for
    if "stability" in raw:
        out.stability = _stability(raw["stability"], f"{where}: analysis.stability")
    return out


def _rounds(value, where: str):
    if value in ("all", "last"):
        return value
    if isinstance(value, list) and value and all(isinstance(r, int) and r >= 1 for r in value):
        return tuple(sorted(set(value)))
    raise LthError(f"{where} must be 'all', 'last' or a list of round numbers >= 1, got {value!r}")


def _stability(raw, where: str) -> Stability:
    if not isinstance(raw, dict):
        raise LthError(f"{where} must be a table")
    for key in raw:
        if key not in STABILITY_KEYS:
            raise LthError(f"{where}: unknown key {key!r}; allowed: {', '.join(STABILITY_KEYS)}")
    controls = raw.get("controls", [])
    if not isinstance(controls, list) or not all(c in KINDS[1:] for c in controls):
        raise LthError(f"{where}.controls must be a list of {', '.join(KINDS[1:])}, got {controls!r}")
    s = Stability(rounds=_rounds(raw.get("rounds", "all"), f"{where}.rounds"), controls=tuple(controls),
                  control_rounds=_rounds(raw.get("control_rounds", "last"), f"{where}.control_rounds"),
                  seed=raw.get("seed", 0), alphas=raw.get("alphas", Stability.alphas),
                  bn=raw.get("bn", Stability.bn), bn_batches=raw.get("bn_batches", Stability.bn_batches), epochs=raw.get("epochs"), steps=raw.get("steps"))
    checks = [(isinstance(s.seed, int) and s.seed >= 0, f"{where}.seed must be an integer >= 0, got {s.seed!r}"),
              (isinstance(s.alphas, int) and s.alphas >= 2, f"{where}.alphas must be an integer >= 2, got {s.alphas!r}"),
              (s.bn in ("reset", "interpolate"), f"{where}.bn must be reset or interpolate, got {s.bn!r}"),
              (isinstance(s.bn_batches, int) and s.bn_batches >= 1, f"{where}.bn_batches must be >= 1, got {s.bn_batches!r}"),
              (s.epochs is None or (isinstance(s.epochs, (int, float)) and s.epochs > 0),
               f"{where}.epochs must be positive, got {s.epochs!r}"),
              (s.steps is None or (isinstance(s.steps, int) and s.steps >= 1), f"{where}.steps must be >= 1, got {s.steps!r}"),
              (s.epochs is None or s.steps is None, f"{where}: give epochs or steps, not both")]
    for ok, message in checks:
        if not ok:
            raise LthError(message)
    return s
