"""The study's analyses: the stability measurements of a run's rounds (one task per trained copy,
one per interpolation), then Fig. 3 / Table 4 and Tables 1-3 from the finished cells.

    [analysis]
    table = "table2"                     # table1, table2, table3: python -m analysis.tables
    targets = { cifar10 = 0.9 }          # table3: accuracy to reach, by dataset
    [analysis.stability]                 # tickets: measure the rounds' tickets
    rounds = "all"                       # "all", "last" or a list of round numbers
    controls = ["reinit", "random"]      # at control_rounds ("last" by default)
    seed = 0                             # and alphas, bn, bn_batches, epochs, steps:
    alphas = 11                          # the flags of python -m analysis.stability

lth does not import the `analysis` package anywhere else: this module is the one bridge, and
imports it only inside the functions that need it (a study without analyses never does).
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Union

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


# ---- the bridge into the analysis package -------------------------------------------------------

def _settings(s: Stability):
    from analysis.settings import CopySettings, ProbeSettings
    return (CopySettings(seed=s.seed, epochs=None if s.epochs is None else float(s.epochs), steps=s.steps),
            ProbeSettings(bn=s.bn, alphas=s.alphas, bn_batches=s.bn_batches))


def copy_done(run_dir: Path, r: int, kind: str, copy: str, s: Stability) -> bool:
    from analysis.settings import copy_path
    from lth.runs.store import RunStore
    return copy_path(RunStore(run_dir), r, kind, _settings(s)[0], copy).exists()


def measured(run_dir: Path, r: int, kind: str, s: Stability) -> bool:
    from analysis.settings import find_result
    from lth.runs.store import RunStore
    copies, probe = _settings(s)
    return find_result(RunStore(run_dir), r, kind, copies, probe) is not None


def _workspace(run_dir: Path, s: Stability, device: str, data_dir: Optional[str]):
    from analysis import cli
    from analysis.copies import copy_config, make_workspace
    from lth.data import sources
    from lth.runs.store import open_run
    from lth.training.loop import pick_device
    store = open_run(run_dir)
    cfg = copy_config(cli.run_config(store), _settings(s)[0])
    dataset = sources.load_config(cfg, data_dir=data_dir)   # issue 21: folders, imagenet, factories too
    return store, make_workspace(cfg, dataset, pick_device(device))


def train_copy(run_dir: Path, r: int, kind: str, copy: str, s: Stability, device: str,
               data_dir: Optional[str] = None) -> dict:
    """Train (or finish, or reuse) one copy of round r's `kind` ticket; returns its outcome."""
    from analysis.measure import obtain_copy
    from analysis.tickets import starting_point
    store, ws = _workspace(run_dir, s, device, data_dir)
    copies = _settings(s)[0]
    start = starting_point(store, ws.cfg, ws.dataset, r, kind, copies.seed)
    payload = obtain_copy(store, ws, r, kind, start, copies, copy, progress=True)
    return {"test_acc": payload["outcome"]["test_acc"]}


def interpolate(run_dir: Path, r: int, kind: str, s: Stability, device: str, data_dir: Optional[str] = None) -> dict:
    """The stability result of (round r, kind) once both copies exist (reused when saved)."""
    from analysis.measure import measure
    store, ws = _workspace(run_dir, s, device, data_dir)
    copies, probe = _settings(s)
    result = measure(store, r, kind, copies, probe, lambda: ws, progress=True)
    return {"instability_error": result["instability_error"], "ticket_acc": result["ticket_acc"]}


def draw_stability(run_dirs: Sequence[Path], s: Stability, out: Path) -> List[Path]:
    """Fig. 3 and Table 4 of these runs' results (analysis.figures)."""
    from analysis import figures
    from lth.runs.store import open_run
    copies, probe = _settings(s)
    return figures.draw_measured([open_run(d) for d in run_dirs], copies, probe, out)


def write_tables(spec, runs_root: Path, out: Path) -> List[Path]:
    """Table 1, 2 or 3 of the study (analysis.study_tables), as Markdown, LaTeX, CSV and a figure."""
    from analysis import study_tables
    return study_tables.write(spec, runs_root, out)
