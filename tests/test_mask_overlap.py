"""analysis.mask_overlap: the figure and CSV of the kept-weight Jaccard between consecutive rounds
and across runs, from the runs' masks; bad input is one line.

    python -m pytest tests/test_mask_overlap.py -q
"""
import csv

import pytest

from analysis import mask_overlap
from lth import config, execute
from lth.errors import cli_main
from lth.pruning.overlap import jaccard
from lth.runs.store import RunStore


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = []
    for schedule in ("ocp", "agp"):
        cfg = config.from_overrides({"schedule": schedule, "rounds": 2, "steps": 20, "eval_every": 0,
                                     "progress": False}, preset="quick")
        out.append(execute(cfg, run_dir=str(root / schedule), device="cpu"))
    return out


def test_figure_and_csv(runs, tmp_path):
    assert mask_overlap.main([str(r.run_dir) for r in runs] + ["--out", str(tmp_path)]) == 0
    for suffix in ("png", "pdf", "csv"):
        assert (tmp_path / f"mask_overlap.{suffix}").stat().st_size > 0
    rows = list(csv.DictReader((tmp_path / "mask_overlap.csv").open()))
    for result in runs:  # the consecutive overlaps are the ones the round summaries recorded
        for summary in result.summaries:
            row = next(x for x in rows if x["run"] == result.run_dir.name and x["compared"] == "consecutive"
                       and x["round"] == str(summary["round"]) and x["layer"] == "total")
            assert float(row["jaccard"]) == pytest.approx(summary["mask_overlap"]["jaccard"], abs=1e-12)
    a, b = (RunStore(r.run_dir) for r in runs)
    across = [x for x in rows if x["compared"].startswith("vs ") and x["layer"] == "total"]
    assert [float(x["jaccard"]) for x in across] == pytest.approx(
        [jaccard(a.load_mask(r), b.load_mask(r))["jaccard"] for r in (1, 2)], abs=1e-12)
    assert all(0 < float(x["jaccard"]) < 1 for x in across)   # different schedules: related, not equal tickets


def test_bad_input_is_one_line(runs, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert cli_main(mask_overlap.main, [str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert cli_main(mask_overlap.main, [str(runs[0].run_dir), "--out", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not an lth run directory" in err[0] and "not a folder" in err[1]


def test_chance_level_is_the_random_mask_overlap(runs):
    store = RunStore(runs[0].run_dir)
    for summary in runs[0].summaries:
        kept = 1 - summary["sparsity"]
        assert mask_overlap.chance_level(store)[summary["round"]] == pytest.approx(kept / (2 - kept), abs=1e-12)
