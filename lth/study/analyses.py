"""The study's analyses: the stability measurements of a run's rounds (one task per trained copy,
one per interpolation), then Fig. 3 / Table 4 (analysis) and Tables 1-3 (lth.study.tables) from
the finished cells. What to measure is the study's [analysis] section (lth.study.analysis_spec).

The study layer sits above `analysis`; this module imports it only inside the functions that
need it (a study without analyses never does).
"""
from pathlib import Path
from typing import List, Optional, Sequence

from lth.study.analysis_spec import Stability


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
    from lth.training.device import pick_device
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
    """Table 1, 2 or 3 of the study (lth.study.tables), as Markdown, LaTeX, CSV and a figure."""
    from lth.study import tables
    return tables.write(spec, runs_root, out)
