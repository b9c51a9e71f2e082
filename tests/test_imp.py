"""The IMP driver and `python -m lth.run` (issue 4): layout, the sparsity sequence, nested masks,
exact rewinding to W0 (late rewinding to W_k: test_rewinding.py), zeros where pruned, every schedule and method, determinism,
the resolved config and the run name, `lth runs list`, and --resume.

Tiny: digits (offline), LeNet-300-100, 12 steps a round (a fraction of one epoch)."""
import re
import shutil

import pytest
import torch

import lth
from lth import config, run
from lth.data import datasets
from lth.runs import index as runs
from lth.lottery import imp
from lth.lottery import assemble
from lth.lottery.execution import run_metadata
from lth.errors import LthError
from lth.runs.store import RunStore, run_name

import runhelpers
from runhelpers import assert_same_run, cli, tensors_equal

# --layer-rate with no rule: every layer at the same rate (the quick preset halves the output layer's)
BASE = ["--preset", "quick", "--steps", "12", "--rounds", "3", "--no-progress", "--device", "cpu", "--layer-rate"]
ROUND_FILES = ["final.pt", "mask.pt", "metrics.jsonl", "summary.json"]
# the old --method choices as the flags of lth.pruning's criterion and scope
METHOD_FLAGS = {"local": (), "global": ("--scope", "global"), "random": ("--criterion", "random")}


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits")


def make_cfg(*argv):
    return runhelpers.resolved_config(*BASE, *argv)


def api_run(cfg, root, dataset, on_round_start=None) -> RunStore:
    """A run through the Python API: RunStore + imp.run (what python -m lth.run does)."""
    store = RunStore(root / run_name(cfg))
    store.create(run_metadata(cfg, torch.device("cpu")))
    with store.lock():
        imp.run(cfg, store, dataset, "cpu", progress=False, on_round_start=on_round_start)
    return store


def capture_starts():
    """An on_round_start callback recording the weights and mask each round starts from."""
    starts = {}

    def on_round_start(r, model, masks):
        starts[r] = ({k: v.detach().clone() for k, v in model.state_dict().items()},
                     {k: v.clone() for k, v in masks.state_dict().items()})
    return starts, on_round_start


def targets(cfg):
    p = cfg.prune
    rate = 1 - (1 - p.final_sparsity) ** (1 / p.rounds) if p.final_sparsity else p.rate
    return [1 - (1 - rate) ** r for r in range(1, p.rounds + 1)]


def check_sparsity(store, cfg):
    """Round r's mask has sparsity 1-(1-p)^r within one weight per layer (one overall for global)."""
    for r, s in enumerate(targets(cfg), start=1):
        mask = store.load_mask(r)
        pruned = {name: int((~m).sum()) for name, m in mask.items()}
        numel = {name: m.numel() for name, m in mask.items()}
        if cfg.prune.scope == "global":
            assert abs(sum(pruned.values()) - s * sum(numel.values())) <= 1, (r, s, pruned)
        else:
            for name in mask:
                assert abs(pruned[name] - s * numel[name]) <= 1, (r, name, s, pruned[name], numel[name])
        summary = store.load_summary(r)
        assert summary["round"] == r and abs(summary["target_sparsity"] - s) < 1e-12
        assert abs(summary["sparsity"] - sum(pruned.values()) / sum(numel.values())) < 1e-12


def check_nested_and_zero(store, rounds):
    previous = None
    for r in range(1, rounds + 1):
        mask, final = store.load_mask(r), store.load_final(r)
        for name, m in mask.items():
            assert m.dtype == torch.bool
            assert bool((final[name][~m] == 0).all()), f"round {r}: pruned weights of {name} are not zero"
            if previous is not None:
                assert not bool((m & ~previous[name]).any()), f"round {r}: {name} revived a pruned weight"
        previous = mask


# ---- one run, looked at from every side -------------------------------------------------------

@pytest.fixture(scope="module")
def main_run(tmp_path_factory):
    """python -m lth.run's main, in this process: 3 rounds into ROOT/<name>."""
    root = tmp_path_factory.mktemp("main_run")
    assert run.main([*BASE, "--runs-root", str(root)]) == 0
    return runhelpers.only_run_dir(root)


def test_layout(main_run):
    cfg = make_cfg()
    assert main_run.name == run_name(cfg)
    names = sorted(p.name for p in main_run.iterdir())
    # provenance.diff: only when the checkout the run came from had uncommitted changes
    assert [n for n in names if n != "provenance.diff"] == [".lock", "config.json", "init.pt", "round_01", "round_02",
                                                             "round_03"]
    for r in (1, 2, 3):
        assert sorted(p.name for p in (main_run / f"round_{r:02d}").iterdir()) == ROUND_FILES
    assert not list(main_run.rglob("checkpoint.pt")) and runhelpers.temp_files(main_run) == []
    store = RunStore(main_run)
    assert store.finished_rounds() == [1, 2, 3]
    init = store.load_init()
    assert set(init) >= set(store.load_mask(1)) and set(store.load_final(3)) == set(init)
    metrics = store.load_metrics(1)
    assert metrics[-1]["final"] is True and "test_acc" in metrics[-1] and metrics[-1]["step"] == 12


def test_sparsity_sequence_nested_masks_and_zeros(main_run):
    cfg = make_cfg()
    store = RunStore(main_run)
    check_sparsity(store, cfg)
    check_nested_and_zero(store, 3)
    assert [round(store.load_summary(r)["target_sparsity"], 6) for r in (1, 2, 3)] == [0.2, 0.36, 0.488]


def test_config_json_holds_the_resolved_config_and_versions(main_run):
    cfg = make_cfg("--runs-root", str(main_run.parent))
    meta = RunStore(main_run).config()
    assert meta["config"] == cfg.to_dict()
    assert None not in meta["config"]["train"].values()          # the recipe filled every field
    assert meta["config"]["train"]["optimizer"] == "adamw" and meta["config"]["train"]["lr"] == 3e-3
    assert meta["hash"] == cfg.hash() and meta["name"] == main_run.name
    assert meta["versions"]["lth"] == lth.__version__ and meta["versions"]["torch"] == torch.__version__
    assert meta["versions"]["python"] and meta["git_commit"] and meta["device"] == "cpu" and meta["created"]
    assert config.RunConfig.from_dict(meta["config"]).hash() == meta["hash"]


def test_runs_list_shows_the_run_with_its_rounds(main_run, tmp_path, capsys):
    assert runs.main(["list", str(main_run.parent)]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if main_run.name in l)
    assert "ocp" in line and "3/3" in line and "0.4880" in line
    last = RunStore(main_run).load_summary(3)   # the last round's final and best-at-final accuracy
    assert f"{last['test_acc']:.4f} {last['best_acc_at_final_sparsity']:>10.4f}" in line
    # an unfinished run and an unreadable one are listed too
    part = tmp_path / "part"
    shutil.copytree(main_run, part)
    (part / "round_03" / "summary.json").unlink()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{oops")
    (tmp_path / "not_a_run").mkdir()
    (tmp_path / "a_file").write_text("x")
    assert runs.main(["list", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2/3" in next(l for l in out.splitlines() if l.startswith("part"))
    assert "unreadable" in next(l for l in out.splitlines() if l.startswith("bad"))
    assert "not_a_run" not in out and "a_file" not in out
    with pytest.raises(LthError, match="not a directory"):
        runs.main(["list", str(tmp_path / "nope")])


# ---- exact rewinding --------------------------------------------------------------------------

def test_every_round_starts_from_w0_times_the_previous_mask(tmp_path, digits):
    cfg = make_cfg()
    starts, hook = capture_starts()
    store = api_run(cfg, tmp_path, digits, hook)
    assert sorted(starts) == [1, 2, 3]
    w0 = store.load_init()
    weights, masks = starts[1]
    assert tensors_equal(weights, w0) and all(bool(m.all()) for m in masks.values())
    for r in (2, 3):
        weights, masks = starts[r]
        previous = store.load_mask(r - 1)
        assert tensors_equal(masks, previous)
        expected = {k: v * previous[k] if k in previous else v for k, v in w0.items()}
        assert tensors_equal(weights, expected), f"round {r} does not start from W0 * m_{r - 1}"
    assert not store.rewind_path.exists()


def test_rewind_step_beyond_the_budget_is_refused_before_anything_is_written(tmp_path, digits):
    cfg = make_cfg("--rewind-step", "13")
    store = RunStore(tmp_path / "run")
    with pytest.raises(LthError, match="--rewind-step 13 is beyond the round's budget of 12 steps"):
        imp.run(cfg, store, digits, "cpu", progress=False)
    assert not (tmp_path / "run").exists()


# ---- Experiment A, schedules, methods ---------------------------------------------------------

@pytest.mark.parametrize("sparsity", [0.9, 0.5])
def test_one_round_with_final_sparsity_reaches_it(tmp_path, digits, sparsity):
    cfg = make_cfg("--rounds", "1", "--final-sparsity", str(sparsity))
    store = api_run(cfg, tmp_path, digits)
    check_sparsity(store, cfg)
    assert abs(store.load_summary(1)["sparsity"] - sparsity) < 1e-3
    check_nested_and_zero(store, 1)


def test_final_sparsity_over_several_rounds(tmp_path, digits):
    cfg = make_cfg("--rounds", "3", "--final-sparsity", "0.875")  # p = 0.5 a round
    store = api_run(cfg, tmp_path, digits)
    check_sparsity(store, cfg)
    assert abs(store.load_summary(3)["sparsity"] - 0.875) < 1e-3


@pytest.mark.parametrize("schedule,method", [("one_shot", "local"), ("iterative", "local"), ("agp", "local"),
                                             ("ocp", "local"), ("ocp", "global"), ("ocp", "random"),
                                             ("iterative", "global"), ("agp", "random")])
def test_every_schedule_and_method_runs(tmp_path, digits, schedule, method):
    cfg = make_cfg("--schedule", schedule, *METHOD_FLAGS[method], "--rounds", "2", "--rate", "0.5")
    store = api_run(cfg, tmp_path, digits)
    assert store.finished_rounds() == [1, 2] and store.root.name.startswith(f"digits-lenet300_100-{schedule}-")
    check_sparsity(store, cfg)
    check_nested_and_zero(store, 2)


def test_exclude_keeps_a_layer_dense(tmp_path, digits):
    cfg = make_cfg("--exclude", "*3.weight", "--rounds", "1")
    store = api_run(cfg, tmp_path, digits)
    mask = store.load_mask(1)
    assert mask and not any(name.endswith("3.weight") for name in mask)


# ---- determinism ------------------------------------------------------------------------------

def test_same_seeds_give_identical_masks_and_metrics(tmp_path, digits):
    cfg = make_cfg("--criterion", "random", "--rewind-step", "3")
    a = api_run(cfg, tmp_path / "a", digits)
    b = api_run(cfg, tmp_path / "b", digits)
    assert_same_run(a.root, b.root)
    other = api_run(make_cfg("--criterion", "random", "--rewind-step", "3", "--init-seed", "5", "--prune-seed", "9"),
                    tmp_path / "c", digits)
    assert not tensors_equal(other.load_init(), a.load_init())
    assert not tensors_equal(other.load_mask(1), a.load_mask(1))


def test_a_subprocess_run_matches_the_in_process_one(main_run, tmp_path):
    """The CLI end to end, in a fresh process: same artefacts as main_run (same seeds), and
    `python -m lth.runs list ROOT` shows it."""
    proc = cli([*BASE, "--runs-root", "out"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    run_dir = runhelpers.only_run_dir(tmp_path / "out")
    assert run_dir.name == main_run.name
    assert f"run directory: out/{run_dir.name}" in proc.stdout
    assert_same_run(main_run, run_dir)
    listed = cli(["list", "out"], cwd=tmp_path, module="lth.runs")
    assert listed.returncode == 0, listed.stderr
    line = next(l for l in listed.stdout.splitlines() if run_dir.name in l)
    assert "3/3" in line and "ocp" in line


# ---- the run name -----------------------------------------------------------------------------

def test_run_directory_name_and_what_changes_it(tmp_path):
    cfg, run_dir = run.resolve_config([*BASE, "--runs-root", str(tmp_path)])
    assert re.fullmatch(r"digits-lenet300_100-ocp-[0-9a-f]{8}", run_dir.name)
    assert run_dir == tmp_path / f"digits-lenet300_100-ocp-{cfg.hash()}"
    for argv in (["--lr", "0.01"], ["--rounds", "4"], ["--alpha", "10"], ["--order-seed", "3"], ["--steps", "13"],
                 ["--scope", "global"], ["--rewind-step", "2"]):
        assert run.resolve_config([*BASE, "--runs-root", str(tmp_path), *argv])[1] != run_dir, argv
    for argv in (["--device", "auto"], ["--data-dir", "/elsewhere"], ["--progress"], ["--no-progress"],
                 ["--compile"]):
        assert run.resolve_config([*BASE, "--runs-root", str(tmp_path), *argv])[1] == run_dir, argv
    other_root = run.resolve_config([*BASE, "--runs-root", str(tmp_path / "x")])[1]
    assert other_root.name == run_dir.name and other_root.parent == tmp_path / "x"
    assert run.resolve_config([*BASE, "--schedule", "agp"])[1].name.startswith("digits-lenet300_100-agp-")
    assert run.resolve_config([*BASE, "--run-dir", str(tmp_path / "mine")])[1] == tmp_path / "mine"


# ---- resume -----------------------------------------------------------------------------------

def test_resume_finishes_a_run_identically(main_run, tmp_path, capsys):
    copy = tmp_path / main_run.name
    shutil.copytree(main_run, copy)
    shutil.rmtree(copy / "round_03")
    (copy / "round_02" / "summary.json").unlink()   # round 2 unfinished: redone from its start
    assert RunStore(copy).finished_rounds() == [1]
    assert run.main(["--resume", str(copy), "--device", "cpu"]) == 0   # a runtime flag may change
    assert_same_run(main_run, copy)
    assert f"run directory: {copy}" in capsys.readouterr().out
    # the same command as the first time, with the runs root holding the copy, is a no-op resume
    before = runhelpers.snapshot(copy)
    assert run.main([*BASE, "--runs-root", str(tmp_path)]) == 0
    after = runhelpers.snapshot(copy)
    assert {k: v for k, v in before.items() if k != ".lock"} == {k: v for k, v in after.items() if k != ".lock"}


def test_resume_with_a_different_hyperparameter_is_refused(main_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(main_run, copy)
    before = runhelpers.snapshot(copy)
    with pytest.raises(LthError) as e:
        run.main(["--resume", str(copy), "--lr", "0.5"])
    assert "train.lr" in str(e.value) and "nothing was changed" in str(e.value)
    with pytest.raises(LthError, match="prune.rounds"):
        run.main([*BASE, "--rounds", "4", "--run-dir", str(copy)])
    assert runhelpers.snapshot(copy) == before


def test_resume_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(LthError, match="not a directory"):
        run.main(["--resume", str(tmp_path / "nope")])
    with pytest.raises(LthError, match="no config.json"):
        run.main(["--resume", str(tmp_path)])


def test_more_rounds_is_a_new_run(main_run, tmp_path):
    """--rounds is part of the hash: asking for more rounds starts a new run directory
    (round r's target does not depend on R, but --final-sparsity would)."""
    assert run_name(make_cfg("--rounds", "4")) != main_run.name


# ---- the paper's layer choice, Frankle & Carbin's output rate, the dense reference -------------

def test_dense_schedule_is_one_unpruned_round(tmp_path, digits):
    cfg = make_cfg("--schedule", "dense", "--rounds", "5", "--scope", "global")
    assert cfg.prune.rounds == 1 and cfg.prune.schedule_params == {}
    assert cfg.hash() == make_cfg("--schedule", "dense").hash()   # nothing about pruning is hashed
    store = api_run(cfg, tmp_path, digits)
    assert store.root.name.startswith("digits-lenet300_100-dense-")
    assert store.load_summary(1)["sparsity"] == 0.0 and all(m.all() for m in store.load_mask(1).values())


def test_output_layer_at_half_the_rate(tmp_path, digits):
    """The quick and mnist presets prune LeNet's output layer at half the rate (Frankle & Carbin)."""
    assert config.PRESETS["quick"]["layer_rate"] == config.PRESETS["mnist"]["layer_rate"] == ("@output=0.5",)
    cfg = make_cfg("--rounds", "3", "--rate", "0.5", "--layer-rate", "@output=0.5")
    store = api_run(cfg, tmp_path, digits)
    mask = store.load_mask(3)
    names = list(mask)
    for name in names[:-1]:
        assert abs(int((~mask[name]).sum()) - 0.875 * mask[name].numel()) <= 1, name
    out = mask[names[-1]]
    assert abs(int((~out).sum()) - (1 - 0.75 ** 3) * out.numel()) <= 1


def test_paper_default_prunes_convolutions_only():
    model = assemble.build_model(config.from_overrides({"model": "resnet20", "image_size": 0}), datasets.load("digits"),
                                 0, "cpu")
    masks = assemble.make_masks(config.from_overrides({"model": "resnet20"}), model)
    convs = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert set(masks.names) == convs and "fc.weight" not in masks.names
