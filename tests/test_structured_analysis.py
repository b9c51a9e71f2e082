"""analysis.structured on synthetic run directories: figures, CSVs and the Markdown table, the
method labels, skipping unfinished runs, and a one-line error when nothing is finished."""
import csv

import pytest

from analysis import structured
from lth.errors import cli_main
from lth.structured.store import StructuredStore


def fake_run(root, name, method="ocspruner", prune_at="stable", seed=0, acc=0.5, rr=0.5, stable=3, done=True):
    store = StructuredStore(root / name)
    cfg = {"structured": {"method": method, "prune_at": prune_at, "reg": 0.05, "tau": 0.999, "flops_rr": rr},
           "seeds": {"init_seed": seed}}
    store.create({"config": cfg})
    epochs = []
    for e in range(6):
        rec = {"epoch": e, "test_acc": acc}
        if method == "ocspruner" and e <= stable:
            rec.update(J=min(1.0, e / 3), psi=min(1.0, e / 4), **{"lambda": 0.05 * e}, kept=[4, 8])
        epochs.append(rec)
    store.write_epochs(epochs)
    if done:
        lat = {"dense": {"1": 2.0, "64": 40.0}, "pruned": {"1": 1.5, "64": 25.0}}
        store.finish({"test_acc": acc, "best_test_acc": acc, "flops": 100 * (1 - rr), "dense_flops": 100,
                      "flops_rr": rr, "params": 50, "params_rr": 0.5, "pruned_epoch": stable + 1,
                      "stable_epoch": stable if method == "ocspruner" else None, "trigger": "tau",
                      "latency_ms": lat})
    return store.root


def test_figures_tables_and_labels(tmp_path, capsys):
    runs = [fake_run(tmp_path, "a", seed=0, acc=0.50), fake_run(tmp_path, "b", seed=1, acc=0.54),
            fake_run(tmp_path, "c", method="dense", rr=0.0, acc=0.6),
            fake_run(tmp_path, "d", prune_at="0", acc=0.4), fake_run(tmp_path, "e", method="ocp", acc=0.45),
            fake_run(tmp_path, "f", done=False)]
    out = tmp_path / "figs"
    assert cli_main(structured.main, [*map(str, runs), "--out", str(out), "--docs"]) == 0
    for stem in ("stability", "accuracy_vs_flops"):
        for ext in ("png", "pdf", "csv"):
            assert (out / f"{stem}.{ext}").stat().st_size > 0
    assert (out / "structured_cpu.png").stat().st_size < 200_000
    rows = list(csv.DictReader((out / "accuracy_vs_flops.csv").open()))
    assert sorted(r["run"] for r in rows) == ["a", "b", "c", "d", "e"]       # f is unfinished
    stab = list(csv.DictReader((out / "stability.csv").open()))
    assert {r["run"] for r in stab} == {"a", "b"} and len(stab) == 8
    table = capsys.readouterr().out
    assert "| OCSPruner (λ0=0.05) | 2 | 52.00 ± 2.83 |" in table
    assert "| dense | 1 | 60.00" in table and "| prune at epoch 0 | 1 |" in table and "| OCP |" in table


def test_nothing_finished_is_one_line(tmp_path, capsys):
    run = fake_run(tmp_path, "x", done=False)
    assert cli_main(structured.main, [str(run), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == "error: no finished structured run among the given directories"


def test_not_a_run_is_one_line(tmp_path, capsys):
    assert cli_main(structured.main, [str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a structured run directory" in capsys.readouterr().err


def test_runs_that_differ_beyond_seeds_are_not_pooled(tmp_path, capsys):
    """Issue 19 item 2: OCP at --flops-rr 0.3 and 0.7 used to be one 'OCP' row (label = method
    and lambda only); now each set of seed replicates is its own row, labelled by what differs."""
    runs = [fake_run(tmp_path, name, method="ocp", seed=seed, acc=acc, rr=rr)
            for name, seed, rr, acc in (("a", 0, 0.3, 0.6), ("b", 1, 0.3, 0.62), ("c", 0, 0.7, 0.4))]
    assert cli_main(structured.main, [*map(str, runs), "--out", str(tmp_path / "figs")]) == 0
    table = capsys.readouterr().out
    assert "| OCP [flops_rr=0.3] | 2 | 61.00 ± 1.41 |" in table and "| OCP [flops_rr=0.7] | 1 | 40.00" in table
    assert "| OCP |" not in table
