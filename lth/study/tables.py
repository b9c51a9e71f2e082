"""Tables 1, 2 and 3 of the paper from a study's runs, with the paper's numbers beside them.

    lth tables table2 --scale cpu              # studies/table2-cpu/table2.{md,tex,csv,png,pdf}
    lth tables table1 table3 --scale paper --runs-root /shared/runs --out tables

A study (lth.study) names its table in [analysis] table = "table1" | "table2" | "table3":
  table1  OCP alpha (rows) x beta (columns): final test accuracy, mean ± std over seeds; the
          best in the table in bold; figure: heatmaps, measured and the paper's
  table2  (dataset, model, sparsity) rows x schedules: the best in each row in bold; figure:
          accuracy against sparsity per schedule, one panel per dataset and model
  table3  datasets x schedules: the smallest budget multiple whose mean accuracy reaches the
          dataset's target (analysis.targets); the smallest in each row in bold; figure:
          accuracy against budget per schedule, the target as a line
The accuracy of a cell is its last round's final test accuracy. The paper's value, from
lth/study/paper_numbers.csv (its source line is printed under each table), stands in brackets
beside the measured one; at --scale cpu, for the paper setting each row stands in for
(analysis.stands_for in the study), which the table's notes name.
"""
import csv
import sys
from pathlib import Path
from typing import List, Optional

from analysis import table_render
from analysis.results import SCHEDULE_ORDER, schedule_label
from analysis.table_render import DISPLAY_NAMES, Entry, Grid, mean_std, ordered
from lth.errors import LthError, OneLineParser, cli_main
from lth.runs.store import RunStore
from lth.runs.files import atomic_write_bytes


PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.csv")


def paper_numbers(path: Path = PAPER_NUMBERS):
    """(rows, source line) of the paper's published numbers."""
    lines = path.read_text().splitlines()
    source = " ".join(line.lstrip("# ").strip() for line in lines if line.startswith("#"))
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    return rows, source


def collect(spec, runs_root: Path) -> List[dict]:
    """One record per unique cell: its config's axes and its final accuracy (None until done)."""
    from lth.study import cells as cells_mod
    records = []
    for cell in cells_mod.expand(spec):
        cfg, run_dir = cell.cfg, cell.run_dir(runs_root)
        acc = None
        if cells_mod.is_done(cfg, run_dir):
            acc = RunStore(run_dir).load_summary(cfg.prune.rounds)["test_acc"]
        params = cfg.prune.schedule_params          # alpha and beta exist for OCP only
        records.append({"dataset": cfg.data.dataset, "model": cfg.model.model, "schedule": cfg.prune.schedule,
                        "sparsity": _sparsity(cfg), "alpha": params.get("alpha"), "beta": params.get("beta"),
                        "budget": cell.labels.get("budget", 1.0), "seed": cell.labels.get("seed", 0), "acc": acc})
    return records


def _sparsity(cfg) -> float:
    p = cfg.prune
    return round(p.final_sparsity if p.final_sparsity is not None else 1 - (1 - p.rate) ** p.rounds, 4)


def _entry(records: List[dict]) -> Entry:
    values = [r["acc"] for r in records if r["acc"] is not None]
    if not values:
        return Entry(expected=len(records))
    return Entry(*mean_std(values), len(values), len(records))


def _paper(rows, table: str, **key) -> Optional[dict]:
    for row in rows:
        if row["table"] == table and all(str(v) == row[k] or _same_number(v, row[k]) for k, v in key.items()):
            return row
    return None


def _same_number(a, b: str) -> bool:
    try:
        return abs(float(a) - float(b)) < 1e-9
    except (TypeError, ValueError):
        return False


def _with_paper(e: Entry, row: Optional[dict]) -> Entry:
    if row is not None:
        e.paper_mean = float(row["mean"]) if row["mean"] else None
        e.paper_std = float(row["std"]) if row["std"] else None
        e.paper_note = row["note"]
    return e


def _stand_in(analysis, axis: str, value: str) -> str:
    return analysis.stands_for.get(axis, {}).get(value, value)


def table1(records, analysis, paper_rows, title) -> Grid:
    alphas, betas = ordered(r["alpha"] for r in records), ordered(r["beta"] for r in records)
    grid = Grid(title, ["alpha \\ beta"], [f"{b:g}" for b in sorted(betas)])
    for a in sorted(alphas):
        row = []
        for b in sorted(betas):
            e = _entry([r for r in records if r["alpha"] == a and r["beta"] == b])
            row.append(_with_paper(e, _paper(paper_rows, "table1", alpha=a, beta=b)))
        grid.rows.append((f"{a:g}",))
        grid.entries.append(row)
    _bold_best([e for row in grid.entries for e in row], max)
    return grid


def table2(records, analysis, paper_rows, title) -> Grid:
    schedules = ordered((r["schedule"] for r in records), SCHEDULE_ORDER)
    grid = Grid(title, ["Dataset", "Model", "Sparsity"], [schedule_label(s) for s in schedules])
    for ds in ordered(r["dataset"] for r in records):
        for model in ordered(r["model"] for r in records if r["dataset"] == ds):
            for sp in sorted({r["sparsity"] for r in records if r["dataset"] == ds and r["model"] == model}):
                row = []
                for s in schedules:
                    e = _entry([r for r in records if (r["dataset"], r["model"], r["sparsity"], r["schedule"])
                                == (ds, model, sp, s)])
                    row.append(_with_paper(e, _paper(paper_rows, "table2", dataset=_stand_in(analysis, "dataset", ds),
                                                     model=_stand_in(analysis, "model", model), sparsity=sp,
                                                     schedule=s)))
                grid.rows.append((DISPLAY_NAMES.get(ds, ds), DISPLAY_NAMES.get(model, model), f"{100 * sp:g} %"))
                grid.entries.append(row)
                _bold_best(row, max)
    return grid


def table3(records, analysis, paper_rows, title) -> Grid:
    schedules = ordered((r["schedule"] for r in records), SCHEDULE_ORDER)
    grid = Grid(title, ["Dataset", "Target"], [schedule_label(s) for s in schedules], unit="multiple")
    for ds in ordered(r["dataset"] for r in records):
        target = analysis.targets.get(ds)
        if target is None:
            raise LthError(f"analysis.targets names no target accuracy for dataset {ds!r}")
        row = []
        for s in schedules:
            mine = [r for r in records if r["dataset"] == ds and r["schedule"] == s]
            budgets = sorted({r["budget"] for r in mine})
            entries = {b: _entry([r for r in mine if r["budget"] == b]) for b in budgets}
            reached = [b for b in budgets if entries[b].mean is not None and entries[b].mean >= target]
            done = all(entries[b].n for b in budgets)
            e = Entry(reached[0], 0.0, 1) if reached else Entry(text=f"> {budgets[-1]:g}×" if done else None)
            row.append(_with_paper(e, _paper(paper_rows, "table3", dataset=_stand_in(analysis, "dataset", ds),
                                             schedule=s)))
        grid.rows.append((DISPLAY_NAMES.get(ds, ds), f"{100 * target:g} %"))
        grid.entries.append(row)
        _bold_best(row, min)
    return grid


def _bold_best(entries: List[Entry], best) -> None:
    values = [e.mean for e in entries if e.mean is not None]
    if len(values) > 1:
        target = best(values)
        for e in entries:
            e.bold = e.mean is not None and abs(e.mean - target) < 1e-12


BUILDERS = {"table1": table1, "table2": table2, "table3": table3}
TITLES = {"table1": "Table 1: OCP alpha x beta grid, final test accuracy (%)",
          "table2": "Table 2 (Experiment A): final test accuracy (%) at a fixed budget",
          "table3": "Table 3 (Experiment B): smallest budget multiple reaching the target accuracy"}


def build(spec, runs_root: Path) -> tuple:
    """(grid, records) of the study's table."""
    from lth.study import analysis_spec
    analysis = analysis_spec.parse(spec.analysis, spec.where)
    if analysis.table is None:
        raise LthError(f"study {spec.name} names no table (analysis.table)")
    records = collect(spec, runs_root)
    paper_rows, source = paper_numbers()
    grid = BUILDERS[analysis.table](records, analysis, paper_rows, f"{TITLES[analysis.table]}, study "
                                    f"{spec.name} at scale {spec.scale}")
    seeds = len(spec.seeds) if spec.seeds else 1
    done = sum(r["acc"] is not None for r in records)
    grid.notes.append(f"Measured: mean ± std over {seeds} seed(s); {done} of {len(records)} runs finished. "
                      f"Bold: {'smallest multiple' if grid.unit == 'multiple' else 'best'} of "
                      f"{'the table' if analysis.table == 'table1' else 'the row'}.")
    if analysis.stands_for:
        pairs = "; ".join(f"{axis} {k} for {v}" for axis, m in analysis.stands_for.items() for k, v in m.items())
        grid.notes.append(f"[Brackets]: the paper's value for the setting each row stands in for ({pairs}).")
    else:
        grid.notes.append("[Brackets]: the paper's value for the same setting.")
    grid.notes.append(f"Paper values: {source}")
    return grid, records, analysis


def write(spec, runs_root: Path, out: Path) -> List[Path]:
    """The study's table as .md, .tex, .csv and its figure as .png/.pdf (+ the figure's .csv)."""
    from lth.study import table_figures
    grid, records, analysis = build(spec, Path(runs_root))
    stem = Path(out) / analysis.table
    files = {stem.with_suffix(".md"): table_render.markdown(grid).encode(),
             stem.with_suffix(".tex"): table_render.latex(grid).encode(),
             stem.with_suffix(".csv"): table_render.csv_text(grid).encode()}
    files.update(table_figures.draw(analysis, records, grid, stem))
    for path, content in files.items():
        atomic_write_bytes(path, content)
    return list(files)


def parser() -> OneLineParser:
    p = OneLineParser(prog="lth tables", description="Tables 1-3 of the paper from studies.")
    p.add_argument("studies", nargs="+", metavar="STUDY", help="a built-in study name or a study .toml file")
    p.add_argument("--scale", default=None, help="the studies' scale (cpu, paper) [default: the study's default]")
    p.add_argument("--runs-root", default="runs", help="where the studies' runs are [default: runs]")
    p.add_argument("--out", default=None, help="write into OUT/<study>-<scale>/ [default: studies/<study>-<scale>/]")
    return p


def main(argv=None) -> int:
    from lth.study import spec as spec_mod
    args = parser().parse_args(argv)
    specs = [spec_mod.load(s, args.scale) for s in args.studies]
    for spec in specs:
        out = Path(args.out or "studies") / spec.folder_name
        if out.exists() and not out.is_dir():
            raise LthError(f"{out} exists and is not a folder")
        paths = write(spec, Path(args.runs_root), out)
        print(paths[0].read_text())
        for path in paths:
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
