"""Tables 1-3 from studies (lth.study.tables, analysis.table_render, lth.study.table_figures; issue 12): the
renderers on small made-up results (mean ± std, best in bold, the paper's value beside, the
smallest budget reaching a target), the paper's numbers file, and one real tiny study
through `python -m analysis.tables`."""
import csv
import io

import pytest

from analysis import table_render
from lth.study import tables as study_tables, table_figures
from lth.errors import cli_main
from lth.study import analyses, analysis_spec, cells, driver, plan as plan_mod, spec
from lth.study.state import StudyState

from studyhelpers import Inline, mini_table2, spec_file


def bold_cells(md: str) -> int:
    return sum(line.count("**") for line in md.splitlines() if line.startswith("|")) // 2


def rec(**kw):
    base = {"dataset": "cifar10", "model": "resnet18", "schedule": "ocp", "sparsity": 0.9, "alpha": 14.0,
            "beta": 5.0, "budget": 1.0, "seed": 0, "acc": 0.9}
    return {**base, **kw}


@pytest.fixture(scope="module")
def paper():
    return study_tables.paper_numbers()


def test_paper_numbers_file_has_its_source_and_every_table(paper):
    rows, source = paper
    assert "Hubens et al." in source and "One-Cycle Pruning" in source
    counts = {t: sum(r["table"] == t for r in rows) for t in ("table1", "table2", "table3", "table4")}
    assert counts == {"table1": 15, "table2": 72, "table3": 12, "table4": 4}
    lost = [r for r in rows if "lost" in r["note"]]
    assert len(lost) == 6 and all(r["mean"] == "" for r in lost)
    best = max((r for r in rows if r["table"] == "table1"), key=lambda r: float(r["mean"]))
    assert (best["alpha"], best["beta"], best["mean"]) == ("14", "5", "93.46")


def test_table2_mean_std_row_best_in_bold_and_paper_beside(paper):
    records = [rec(schedule=s, sparsity=sp, seed=seed, acc=acc + 0.01 * seed)
               for s, acc in (("one_shot", 0.80), ("iterative", 0.70), ("agp", 0.85), ("ocp", 0.86))
               for sp in (0.8, 0.95) for seed in (0, 1)]
    records.append(rec(dataset="caltech101", schedule="ocp", sparsity=0.8, acc=None))   # not finished
    grid = study_tables.table2(records, analysis_spec.Analysis(table="table2"), paper[0], "T2")
    md = table_render.markdown(grid)
    assert "| CIFAR-10 | ResNet-18 | 80 % | 80.50 ± 0.71 [93.10 ± 0.03] | 70.50 ± 0.71 [93.13 ± 0.03] |" in md
    assert "**86.50 ± 0.71** [93.49 ± 0.14]" in md                       # the row's best, bold
    assert bold_cells(md) == 2                                           # one per CIFAR-10 row
    assert "| Caltech-101 | ResNet-18 | 80 % | – [80.31 ± 0.89] | – [79.78 ± 0.56] | – [81.93 ± 0.85] | – [lost] |" in md
    tex = table_render.latex(grid)
    assert r"\textbf{86.50 $\pm$ 0.71}" in tex and r"\toprule" in tex and "{\\scriptsize [93.49 $\\pm$ 0.14]}" in tex
    rows = list(csv.DictReader(io.StringIO(table_render.csv_text(grid))))
    ocp = next(r for r in rows if r["column"] == "One-Cycle" and r["sparsity"] == "80 %" and r["dataset"] == "CIFAR-10")
    assert (ocp["mean_pct"], ocp["std_pct"], ocp["n"], ocp["best"], ocp["paper_mean_pct"]) == \
        ("86.5000", "0.7071", "2", "1", "93.49")


def test_table1_best_of_the_table_and_incomplete_cells_say_so(paper):
    records = [rec(alpha=a, beta=b, seed=s, acc=0.5 + a / 100 + b / 1000 + s / 1000) for a in (13.0, 14.0)
               for b in (3.0, 5.0) for s in (0, 1, 2)]
    records[0]["acc"] = None                                             # one seed of (13, 3) missing
    grid = study_tables.table1(records, analysis_spec.Analysis(table="table1"), paper[0], "T1")
    md = table_render.markdown(grid)
    assert bold_cells(md) == 1 and "**64.60 ± 0.10** [93.46 ± 0.13]" in md   # (14, 5): best of the table
    assert "| 13 | 63.45 ± 0.07 (n=2) [93.10 ± 0.18] |" in md                # (13, 3): one seed missing


def test_table3_smallest_budget_reaching_the_target(paper):
    acc = {("ocp", 1.0): 0.91, ("one_shot", 1.0): 0.85, ("one_shot", 2.0): 0.905, ("one_shot", 4.0): 0.93,
           ("iterative", 1.0): 0.5, ("iterative", 2.0): 0.6, ("iterative", 4.0): 0.7}
    records = [rec(schedule=s, budget=b, sparsity=0.95, acc=a, seed=seed) for (s, b), a in acc.items()
               for seed in (0, 1)]
    analysis = analysis_spec.Analysis(table="table3", targets={"cifar10": 0.9})
    grid = study_tables.table3(records, analysis, paper[0], "T3")
    md = table_render.markdown(grid)
    assert "| CIFAR-10 | 90 % | 2× [2.5×] | > 4× [4×] | **1×** [1×] |" in md
    files = table_figures.draw(analysis, records, grid, __import__("pathlib").Path("/nonexistent/table3"))
    assert {p.suffix for p in files} == {".pdf", ".png", ".csv"}


def test_analysis_tables_cli_on_a_real_tiny_study(tmp_path, capsys):
    text = mini_table2(steps=8)
    path = spec_file(tmp_path, text)
    s = spec.load(str(path))
    plan = plan_mod.build(cells.expand(s), tmp_path / "runs", None)
    driver.drive(plan, Inline(), StudyState(tmp_path / "st"), tmp_path / "st", progress=False)
    assert cli_main(study_tables.main, [str(path), "--runs-root", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "| digits | lenet300_100 | 90 % |" in out and bold_cells(out) == 1 and "4 of 4 runs finished" in out
    folder = tmp_path / "out" / "mini-default"
    assert {p.name for p in folder.iterdir()} == {"table2.md", "table2.tex", "table2.csv", "table2.png",
                                                  "table2.pdf", "table2_figure.csv"}
    assert cli_main(study_tables.main, ["table2", "--scale", "cpu", "--runs-root", str(tmp_path / "none"),
                                        "--out", str(tmp_path / "out")]) == 0   # nothing finished: dashes, no crash
    assert "0 of 216 runs finished" in capsys.readouterr().out
