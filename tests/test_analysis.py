"""The stability analysis (analysis/): exact endpoints in both BatchNorm modes, masks kept along
the interpolation line, copies that differ only in SGD noise, the controls, resuming without
retraining, figures and tables from a synthetic set of runs, one-line errors (exit 2, nothing written).

The runs are tiny real ones (digits at 8 px, a few steps a round), made through lth.run.
"""
import csv
import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import analysis
from analysis import cli, figures, interpolate, results, stability, tables, tickets
from analysis.settings import CopySettings, ProbeSettings, copy_path, find_result, result_path
from lth import config
from lth.data import datasets
from lth.lottery import assemble
from lth import run as lth_run
from lth.data.loader import DeviceLoader
from lth.lmc.probe import recompute_batchnorm
from lth.errors import cli_main
from lth.runs.store import RunStore
from lth.runs.files import digest, load_tensors, read_json, write_json
from lth.training.loop import evaluate, make_loaders

REPO = Path(analysis.__file__).resolve().parent.parent
CLI_ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
COPY_STEPS = "20"          # the copies' budget in these tests: enough to move, cheap to train
BN_PROBE = ["--alphas", "3", "--bn-batches", "2", "--eval-batch-size", "512"]  # a cheap probe for resnet20


def make_run(path: Path, *flags) -> Path:
    argv = ["--preset", "quick", "--device", "cpu", "--no-progress", "--run-dir", str(path), *flags]
    assert lth_run.main(argv) == 0
    return path


def measure(run: Path, *flags) -> None:
    argv = [str(run), "--steps", COPY_STEPS, "--device", "cpu", "--no-progress", "--no-figures", *flags]
    assert stability.main(argv) == 0


def fresh_copy(run: Path, tmp_path: Path) -> Path:
    """The run without any analysis results."""
    target = tmp_path / run.name
    shutil.copytree(run, target, ignore=shutil.ignore_patterns("stability"))
    return target


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    # No BatchNorm; crop_flip so that the copies differ in both data order and augmentation.
    return make_run(tmp_path_factory.mktemp("runs") / "lenet", "--rounds", "2", "--steps", "30",
                    "--augment", "crop_flip")


@pytest.fixture(scope="module")
def measured_lenet(lenet_run):
    measure(lenet_run, "--controls", "reinit", "random")
    return RunStore(lenet_run)


@pytest.fixture(scope="module")
def bn_run(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("runs") / "resnet20", "--model", "resnet20", "--rounds", "1",
                   "--steps", "6", "--batch-size", "32", "--eval-every", "0")
    for mode in ("reset", "interpolate"):
        measure(run, "--bn", mode, *BN_PROBE)
    return RunStore(run)


def bn_settings(mode: str):
    return CopySettings(steps=int(COPY_STEPS)), ProbeSettings(bn=mode, alphas=3, bn_batches=2, eval_batch_size=512)


def probe_setup(store: RunStore, probe: ProbeSettings):
    """The run's model and the loaders the interpolation uses, rebuilt here."""
    cfg = cli.run_config(store)
    dataset = datasets.load(cfg.data.dataset)
    model = assemble.build_model(cfg, dataset, cfg.seeds.init_seed, "cpu")
    size = assemble.image_size(cfg, dataset)
    test = DeviceLoader(dataset.test_x, dataset.test_y, dataset, probe.eval_batch_size, "cpu", train=False,
                        image_size=size)
    bn = DeviceLoader(dataset.train_x, dataset.train_y, dataset, cfg.train.batch_size, "cpu", train=False,
                      image_size=size)
    return cfg, dataset, model, test, bn


# ---- interpolation ------------------------------------------------------------------------

def test_alpha_grid_has_exact_endpoints_and_always_the_midpoint():
    assert ProbeSettings(alphas=11).grid()[:2] == [0.0, 0.1] and ProbeSettings(alphas=11).grid()[-1] == 1.0
    assert ProbeSettings(alphas=2).grid() == [0.0, 0.5, 1.0]
    assert 0.5 in ProbeSettings(alphas=30).grid() and len(ProbeSettings(alphas=30).grid()) == 31


def test_lerp_reproduces_the_endpoints_bit_for_bit_and_keeps_zeros():
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(50, 7, generator=gen) < 0.5
    a = [torch.randn(50, 7, generator=gen) * 3 * mask, torch.randn(13, generator=gen)]
    b = [torch.randn(50, 7, generator=gen) * 1e-3 * mask, torch.randn(13, generator=gen) * 1e4]
    probe = [torch.empty_like(t) for t in a]
    for alpha in ProbeSettings(alphas=30).grid():
        interpolate.lerp_into(probe, a, b, alpha)
        assert (probe[0][~mask] == 0).all()
        if alpha in (0.0, 1.0):
            assert all(torch.equal(p, (a if alpha == 1.0 else b)[i]) for i, p in enumerate(probe))


def test_interpolate_is_the_default_bn_mode():
    assert ProbeSettings().bn == "interpolate"
    assert cli.DEFAULTS.bn == "interpolate"


@pytest.mark.parametrize("mode", ["reset", "interpolate"])
def test_printed_table_shows_copy_accuracies_and_the_curves_endpoints(bn_run, mode, capsys):
    copies, probe = bn_settings(mode)
    result = read_json(find_result(bn_run, 1, "ticket", copies, probe))
    stability.print_table([result])
    header, row, legend = capsys.readouterr().out.strip().splitlines()
    assert header.split()[4:] == ["copy", "a", "copy", "b", "bn", "end", "a", "end", "b", "instab.", "barrier"]
    cells = row.split()
    expected = [result["copies"]["a"]["test_acc"], result["copies"]["b"]["test_acc"], mode,
                result["endpoints"]["a"]["acc"], result["endpoints"]["b"]["acc"],
                result["instability_error"], result["error_barrier"]]
    assert cells[4:] == [v if isinstance(v, str) else f"{100 * v:.2f}%" for v in expected]
    assert "own test accuracy" in legend and "alpha 1 and 0" in legend


@pytest.mark.parametrize("mode", ["reset", "interpolate"])
def test_endpoints_are_the_probes_evaluation_of_each_copy_with_batchnorm(bn_run, mode):
    copies, probe = bn_settings(mode)
    result = read_json(find_result(bn_run, 1, "ticket", copies, probe))
    assert result["has_batchnorm"] and result["bn_mode"] == mode
    _, _, model, test, bn = probe_setup(bn_run, probe)
    for copy, alpha in (("a", 1.0), ("b", 0.0)):
        model.load_state_dict(load_tensors(copy_path(bn_run, 1, "ticket", copies, copy))["model"])
        if mode == "reset":
            recompute_batchnorm(model, model, itertools.islice(bn, probe.bn_batches), bn.device, bf16=False)
        alone = evaluate(model, model, test, bf16=False)["test_acc"]
        on_line = next(p for p in result["curve"] if p["alpha"] == alpha)
        assert on_line["acc"] == alone == result["endpoints"][copy]["acc"]
        if mode == "interpolate":  # the copy's own BatchNorm statistics: its accuracy after training
            assert on_line["acc"] == result["copies"][copy]["test_acc"]
    errors = [p["error"] for p in result["curve"]]
    assert result["instability_error"] == result["curve"][1]["error"]
    assert result["error_barrier"] == pytest.approx(max(errors) - (errors[0] + errors[-1]) / 2)


@pytest.mark.parametrize("mode", ["reset", "interpolate"])
def test_interpolated_networks_keep_the_mask_and_hit_the_endpoints(bn_run, mode):
    copies, probe = bn_settings(mode)
    cfg, _, model, test, bn = probe_setup(bn_run, probe)
    mask = bn_run.load_mask(1)
    states = {c: load_tensors(copy_path(bn_run, 1, "ticket", copies, c))["model"] for c in "ab"}
    seen = []

    def inspect(alpha, net):
        weights = dict(net.named_parameters())
        assert all((weights[name][~kept] == 0).all() for name, kept in mask.items())
        if mode == "reset":  # momentum=None: the statistics average exactly bn_batches batches
            assert all(int(m.num_batches_tracked) == probe.bn_batches for m in net.modules()
                       if isinstance(m, torch.nn.BatchNorm2d))
        if alpha in (0.0, 1.0) and mode == "interpolate":
            end = states["a" if alpha == 1.0 else "b"]
            assert all(torch.equal(t, end[k]) for k, t in net.state_dict().items() if t.is_floating_point())
        seen.append(alpha)

    interpolate.curve(model, model, states["a"], states["b"], probe.grid(), mode, test, bn, probe.bn_batches,
                      False, inspect=inspect)
    assert seen == [0.0, 0.5, 1.0]
    assert sum(int((~kept).sum()) for kept in mask.values()) > 0  # there were pruned weights to check


def test_a_model_without_batchnorm_treats_both_modes_the_same(measured_lenet):
    copies = CopySettings(steps=int(COPY_STEPS))
    reset = find_result(measured_lenet, 2, "ticket", copies, ProbeSettings(bn="reset"))
    interpolated = find_result(measured_lenet, 2, "ticket", copies, ProbeSettings(bn="interpolate"))
    assert reset == interpolated and reset.name == "interpolation-bn_none-alphas11.json"
    assert read_json(reset)["bn_mode"] == "none" and read_json(reset)["has_batchnorm"] is False


# ---- copies and controls ------------------------------------------------------------------

def test_copies_share_init_and_mask_and_differ_in_order_and_augmentation(measured_lenet):
    store, copies, r = measured_lenet, CopySettings(steps=int(COPY_STEPS)), 2
    a, b = (load_tensors(copy_path(store, r, "ticket", copies, c)) for c in "ab")
    mask = store.load_mask(r)
    ticket = {k: v * mask[k] if k in mask else v for k, v in store.load_init().items()}  # W0 * m_r
    assert a["start_digest"] == b["start_digest"] == digest(ticket)
    assert a["mask_digest"] == b["mask_digest"] == digest(mask)
    assert a["seeds"]["order_seed"] != b["seeds"]["order_seed"]
    assert a["seeds"]["augment_seed"] != b["seeds"]["augment_seed"]
    cfg = cli.run_config(store)
    dataset = datasets.load("digits")
    first = {}
    for name, seeds in (("a", a["seeds"]), ("b", b["seeds"])):
        loader, _ = make_loaders(dataset, cfg.train, "cpu", 8, "crop_flip", **seeds)
        first[name] = next(iter(loader))
        fixed_order, _ = make_loaders(dataset, cfg.train, "cpu", 8, "crop_flip", order_seed=0,
                                      augment_seed=seeds["augment_seed"])
        first[name + "_augment_only"] = next(iter(fixed_order))
    assert not torch.equal(first["a"][1], first["b"][1])                              # another order
    assert not torch.equal(first["a_augment_only"][0], first["b_augment_only"][0])    # other crops/flips
    for name, kept in mask.items():
        assert (a["model"][name][~kept] == 0).all() and (b["model"][name][~kept] == 0).all()
    assert not torch.equal(a["model"]["1.weight"], b["model"]["1.weight"])


def test_controls_change_only_what_they_control(measured_lenet):
    store = measured_lenet
    cfg, dataset = cli.run_config(store), datasets.load("digits")
    ticket, reinit, random = (tickets.starting_point(store, cfg, dataset, 2, k, seed=0) for k in tickets.KINDS)
    assert digest(reinit.mask) == digest(ticket.mask) and digest(reinit.state) != digest(ticket.state)
    assert digest(random.mask) != digest(ticket.mask)
    assert {k: int(v.sum()) for k, v in random.mask.items()} == {k: int(v.sum()) for k, v in ticket.mask.items()}
    init = store.load_init()
    assert all(torch.equal(random.state[k], init[k] * random.mask[k]) for k in random.mask)  # rewind init
    for kind, start in (("reinit", reinit), ("random", random)):
        saved = load_tensors(copy_path(store, 2, kind, CopySettings(steps=int(COPY_STEPS)), "a"))
        assert saved["start_digest"] == digest(start.state) and saved["mask_digest"] == digest(start.mask)
        result = read_json(find_result(store, 2, kind, CopySettings(steps=int(COPY_STEPS)), ProbeSettings()))
        assert result["kind"] == kind and result["sparsity"] == pytest.approx(ticket.sparsity)


# ---- resuming and settings ----------------------------------------------------------------

def stability_files(run: Path):
    return {p: p.stat().st_mtime_ns for p in (run / "stability").rglob("*") if p.is_file() and p.name != ".lock"}


def test_a_second_invocation_reuses_everything_and_other_settings_add_results(lenet_run, tmp_path):
    run = fresh_copy(lenet_run, tmp_path)
    measure(run, "--rounds", "last")
    first = stability_files(run)
    measure(run, "--rounds", "last")
    assert stability_files(run) == first                           # nothing retrained or rewritten
    measure(run, "--rounds", "last", "--bn", "reset")              # no BatchNorm: the same result
    assert stability_files(run) == first
    measure(run, "--rounds", "last", "--alphas", "5")              # a new probe: copies reused
    now = stability_files(run)
    assert {p: now[p] for p in first} == first and len(now) == len(first) + 1
    measure(run, "--rounds", "last", "--seed", "1")                # new copies, beside the old ones
    seeds = {s: CopySettings(seed=s, steps=int(COPY_STEPS)) for s in (0, 1)}
    store = RunStore(run)
    # copy a of --seed 1 uses copy b of --seed 0's seeds: the same training, the same weights
    b0 = load_tensors(copy_path(store, 2, "ticket", seeds[0], "b"))
    a1 = load_tensors(copy_path(store, 2, "ticket", seeds[1], "a"))
    assert digest(b0["model"]) == digest(a1["model"])
    assert {p: stability_files(run)[p] for p in first} == first


# ---- figures and tables -------------------------------------------------------------------

SYNTHETIC = {"agp": 0.05, "ocp": 0.02}      # instability error at round 1, per schedule
RESET_FACTOR = 0.5                          # synthetic --bn reset results: this times the interpolate ones


def round_acc(r: int, seed: int) -> float:
    """The synthetic IMP run's own test accuracy at the end of round r."""
    return 0.8 + 0.01 * r + 0.002 * seed


def synthetic_run(root: Path, schedule: str, seed: int, dataset: str = "digits", kinds=("ticket",),
                  bn_modes=("interpolate",)) -> Path:
    """A run directory with summaries and stability results written through the store API, no training."""
    cfg = config.RunConfig()
    config.apply_overrides(cfg, {"dataset": dataset, "schedule": schedule, "init_seed": seed, "rounds": 2}, "test")
    store = RunStore(root / f"{dataset}-{schedule}-{seed}")
    store.create({"config": cfg.resolved().to_dict(), "hash": cfg.hash()})
    copies = CopySettings()
    for r in (1, 2):
        write_json(store.summary_path(r), {"round": r, "sparsity": 1 - 0.8 ** r, "test_acc": round_acc(r, seed)})
        for kind in kinds:
            for mode in bn_modes:
                error = SYNTHETIC[schedule] * r + 0.01 * seed + (0.1 if kind != "ticket" else 0.0)
                error *= RESET_FACTOR if mode == "reset" else 1.0
                ticket_error = SYNTHETIC[schedule] * r + 0.01 * seed + (0.1 if kind != "ticket" else 0.0)
                write_json(result_path(store, r, kind, copies, ProbeSettings(bn=mode), True), {
                    "run": store.root.name, "model": "resnet18", "schedule": schedule, "dataset": dataset,
                    "round": r, "kind": kind, "sparsity": 1 - 0.8 ** r, "has_batchnorm": True, "bn_mode": mode,
                    "instability_error": error, "error_barrier": error / 2, "ticket_acc": 0.9 - ticket_error})
    return store.root


def read_csv(path: Path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_figures_and_tables_from_a_synthetic_run_set(tmp_path):
    runs = [synthetic_run(tmp_path, s, seed, kinds=("ticket", "reinit")) for s in SYNTHETIC for seed in (0, 1)]
    out = tmp_path / "figs"
    assert figures.main([*map(str, runs), "--out", str(out)]) == 0
    for stem in ("fig1_ocp_shapes", "fig2_schedules", "fig3_instability", "fig3_barrier"):
        assert (out / f"{stem}.pdf").read_bytes()[:4] == b"%PDF"
        assert (out / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
    points = read_csv(out / "fig3.csv")
    assert [(p["schedule"], p["round"], p["bn_mode"]) for p in points] == [
        ("AGP", "1", "interpolate"), ("AGP", "2", "interpolate"), ("One-Cycle", "1", "interpolate"),
        ("One-Cycle", "2", "interpolate")]
    ocp_round2 = points[3]
    assert float(ocp_round2["instability_mean_pct"]) == pytest.approx(100 * (0.04 + 0.005))
    assert float(ocp_round2["instability_std_pct"]) == pytest.approx(100 * 0.01 / 2 ** 0.5, abs=1e-4)  # CSV: 4 decimals
    assert float(ocp_round2["barrier_max_pct"]) == pytest.approx(100 * 0.05 / 2)
    assert float(ocp_round2["sparsity_pct"]) == pytest.approx(36.0)
    table = read_csv(out / "table4.csv")
    assert [row["schedule"] for row in table] == ["AGP", "One-Cycle"]
    assert float(table[1]["ticket_acc_mean_pct"]) == pytest.approx(100 * (0.9 - 0.045))
    assert float(table[1]["reinit_acc_mean_pct"]) == pytest.approx(100 * (0.9 - 0.145))
    # the IMP run's own accuracy at the end of the last round, once per run
    assert float(table[1]["round_acc_mean_pct"]) == pytest.approx(100 * (round_acc(2, 0) + round_acc(2, 1)) / 2)
    assert table[1]["round_acc_n"] == "2"
    assert table[0]["rounds"] == "2" and table[0]["runs"] == "2"
    markdown = (out / "table4.md").read_text()
    assert markdown.startswith("Table 4. ") and "End of IMP round:" in markdown.splitlines()[0]
    assert ("| Schedule | Round | Sparsity (%) | End of IMP round acc. (%) | Ticket re-trained acc. (%) "
            "| Random reinit re-trained acc. (%) | Runs |") in markdown
    assert "| One-Cycle | 2 | 36.0 | 82.10 ± 0.14 | **85.50 ± 0.71** | 75.50 ± 0.71 | 2 |" in markdown
    latex = (out / "table4.tex").read_text()
    assert r"\toprule" in latex and r"\textbf{85.50 $\pm$ 0.71}" in latex
    assert r"\caption{" in latex and "End of IMP round acc. (\\%)" in latex
    assert len(read_csv(out / "fig2_schedules.csv")[0]) == 5        # progress + the paper's four schedules


def test_fig3_draws_both_batchnorm_modes_when_both_were_measured(tmp_path):
    runs = [synthetic_run(tmp_path, s, seed, bn_modes=("interpolate", "reset")) for s in SYNTHETIC for seed in (0, 1)]
    runs.append(synthetic_run(tmp_path / "only", "agp", 2, bn_modes=("interpolate",)))
    for bn in ("interpolate", "reset"):
        out = tmp_path / f"figs-{bn}"
        assert figures.main([*map(str, runs), "--out", str(out), "--bn", bn]) == 0
        points = read_csv(out / "fig3.csv")
        modes = [p["bn_mode"] for p in points]
        assert modes == [bn] * 4 + [m for m in ("interpolate", "reset") if m != bn] * 4   # --bn's mode first
        for p in points:
            scale = RESET_FACTOR if p["bn_mode"] == "reset" else 1.0
            if p["schedule"] == "One-Cycle" and p["round"] == "2":
                assert float(p["instability_mean_pct"]) == pytest.approx(100 * (0.04 + 0.005) * scale)
        # Table 4 does not depend on the mode: the copies' own accuracies
        assert "**85.50 ± 0.71**" in (out / "table4.md").read_text()
        assert (out / "fig3_instability.png").stat().st_size > 0


def test_table4_labels_one_shot_and_imp_apart():
    rows = [{"run_dir": f"{s}-{seed}", "schedule": s, "model": "resnet18", "round": 2, "kind": "ticket",
             "sparsity": 0.36, "ticket_acc": 0.92 if s == "ocp" else 0.9, "round_acc": 0.85,
             "group": results.schedule_label(s)} for s in ("ocp", "imp", "one_shot") for seed in (0, 1)]
    assert results.group_order(rows) == ["One-Shot (40 %)", "IMP (end of round)", "One-Cycle"]
    table = results.last_round(rows)
    markdown = tables.markdown(table)
    assert "| One-Shot (40 %) | 2 | 36.0 | 85.00 ± 0.00 | 90.00 ± 0.00 | 2 |" in markdown
    assert "| IMP (end of round) | 2 |" in markdown
    assert r"One-Shot (40 \%) & 2" in tables.latex(table)   # % escaped in LaTeX


# ---- errors -------------------------------------------------------------------------------

def run_cli(main, argv, capsys):
    """What `python -m analysis.X` does (sys.exit(cli_main(main))), in this process."""
    try:
        code = cli_main(main, [str(a) for a in argv])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    return code, capsys.readouterr().err.strip().splitlines()


def test_user_errors_are_one_line_exit_2_and_write_nothing(lenet_run, tmp_path, capsys):
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    unfinished = RunStore(tmp_path / "unfinished")
    unfinished.create({"config": config.RunConfig().resolved().to_dict()})
    other_dataset = synthetic_run(tmp_path, "ocp", 0, dataset="mnist")
    out = tmp_path / "figs"
    cases = [
        (stability.main, [not_a_run], "is not an lth run directory"),
        (stability.main, [tmp_path / "nowhere"], "is not a directory"),
        (stability.main, [unfinished.root], "has no finished round"),
        (stability.main, [lenet_run, "--rounds", "1", "5"], "round 5 of"),
        (stability.main, [lenet_run, "--controls", "random", "--control-rounds", "3"], "round 3 of"),
        (stability.main, [lenet_run, other_dataset], "different datasets"),
        (figures.main, [lenet_run, other_dataset], "different datasets"),
        (stability.main, [lenet_run, "--alphas", "1"], "--alphas must be >= 2, got 1"),
        (figures.main, [lenet_run, "--alphas", "0"], "--alphas must be >= 2, got 0"),
        (stability.main, [lenet_run, "--bn", "average"], "invalid choice"),
        (stability.main, [lenet_run, "--rounds", "first"], "'all' or 'last'"),
        (stability.main, [lenet_run, "--epochs", "2", "--steps", "3"], "not allowed with"),
    ]
    before = set(tmp_path.rglob("*")) | set(lenet_run.rglob("*"))
    for main, argv, expected in cases:
        code, lines = run_cli(main, [*argv, "--out", out], capsys)
        assert code == 2 and len(lines) == 1, (argv, lines)
        assert lines[0].startswith("error: ") and expected in lines[0], (argv, lines)
    assert set(tmp_path.rglob("*")) | set(lenet_run.rglob("*")) == before and not out.exists()


def test_the_command_lines_exit_2_with_one_line(lenet_run, tmp_path):
    """The real entry points (python -m), two at once to save time."""
    commands = [(["analysis.stability", tmp_path, "--device", "cpu"], "is not an lth run directory"),
                (["analysis.figures", lenet_run, "--bn", "average"], "invalid choice")]
    procs = [subprocess.Popen([sys.executable, "-m", *map(str, argv), "--out", str(tmp_path / "figs")], cwd=tmp_path,
                              env=CLI_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv, _ in commands]
    for proc, (argv, expected) in zip(procs, commands):
        _, stderr = proc.communicate(timeout=120)
        lines = stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and expected in lines[0], (argv, stderr)
    assert not (tmp_path / "figs").exists()
