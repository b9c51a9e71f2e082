"""Study specs and cells (lth.study.spec, cells, budget; issue 12): grid and zipped axes, seeds,
scales, deduplication by config hash within and across studies, Experiment B's budget axis,
and spec errors as one line. No training here: cells are configs."""
import math

import pytest

from lth.pruning import schedules
from lth.errors import LthError, cli_main
from lth.study import budget, cells, spec

TOML = """
name = "demo"
preset = "quick"
seeds = 2
[base]
rounds = 1
[grid]
schedule = ["one_shot", "ocp"]
final_sparsity = [0.5, 0.9]
[[zip]]
model = ["lenet300_100", "conv2"]
lr = [0.003, 0.001]
"""


def expand(text, scale=None):
    return cells.expand(spec.parse(text, "test.toml", scale))


def test_grid_times_zip_times_seeds_in_listing_order():
    got = expand(TOML)
    assert len(got) == 2 * 2 * 2 * 2
    first = got[0].labels
    assert list(first) == ["schedule", "final_sparsity", "model", "lr", "seed"]
    assert [c.labels["seed"] for c in got[:2]] == [0, 1]                   # seeds innermost
    assert {(c.labels["model"], c.cfg.train.lr) for c in got} == {("lenet300_100", 0.003), ("conv2", 0.001)}
    assert {c.cfg.prune.final_sparsity for c in got} == {0.5, 0.9}
    assert all(c.cfg.data.dataset == "digits" for c in got)                 # the preset under the base


def test_seed_axis_sets_the_four_seeds_and_seed_0_is_the_default():
    assert spec.seed_fields(0) == {"init_seed": 0, "order_seed": 1, "augment_seed": 2, "prune_seed": 3}
    assert spec.seed_fields(1) == {"init_seed": 1, "order_seed": 11, "augment_seed": 12, "prune_seed": 13}
    one, two = expand(TOML)[:2]
    assert (one.cfg.seeds.init_seed, one.cfg.seeds.order_seed) == (0, 1)
    assert (two.cfg.seeds.init_seed, two.cfg.seeds.order_seed) == (1, 11)
    # seeds the run never draws from are normalised away (no augmentation, magnitude pruning)
    assert (two.cfg.seeds.augment_seed, two.cfg.seeds.prune_seed) == (None, None)


def test_cells_are_identified_by_their_config_hash():
    got = expand(TOML)
    assert len({c.name for c in got}) == len(got)
    assert all(c.name.endswith(c.cfg.hash()) for c in got)
    assert all(str(c.run_dir("root")) == f"root/{c.name}" for c in got)


def test_equal_configs_in_one_study_are_one_cell():
    text = TOML.replace('final_sparsity = [0.5, 0.9]', 'final_sparsity = [0.5, 0.5, 0.9]')
    got = expand(text)
    assert len(got) == 16
    shared = [c for c in got if c.also]
    assert len(shared) == 8 and all(c.also[0]["final_sparsity"] == 0.5 for c in shared)


def test_cells_shared_across_built_in_studies_are_the_same_runs():
    table1 = {c.name for c in cells.expand(spec.load("table1", "paper"))}
    table2 = cells.expand(spec.load("table2", "paper"))
    table3 = cells.expand(spec.load("table3", "paper"))
    ocp90 = {c.name for c in table2 if c.cfg.prune.schedule == "ocp" and c.cfg.model.model == "resnet18"
             and c.cfg.data.dataset == "cifar10" and c.cfg.prune.final_sparsity == 0.9}
    assert len(ocp90) == 3 and ocp90 <= table1                          # alpha 14, beta 5: trained once
    at95 = {c.name for c in table2 if c.cfg.model.model == "resnet18" and c.cfg.prune.final_sparsity == 0.95}
    onex = {c.name for c in table3 if c.labels["budget"] == 1.0}
    assert len(at95) == 4 * 3 * 3 and onex == at95                      # table3's 1x cells are table2's


def test_cpu_scale_studies_share_cells_too():
    table2 = cells.expand(spec.load("table2", "cpu"))
    table1 = {c.name for c in cells.expand(spec.load("table1", "cpu"))}
    table3 = {c.name for c in cells.expand(spec.load("table3", "cpu")) if c.labels["budget"] == 1.0}
    lenet = [c for c in table2 if c.cfg.model.model == "lenet300_100"]
    assert len({c.name for c in lenet if c.cfg.prune.schedule == "ocp" and c.cfg.data.dataset == "cifar10"
                and c.cfg.prune.final_sparsity == 0.9} & table1) == 3
    assert table3 == {c.name for c in lenet if c.cfg.prune.final_sparsity == 0.95}


@pytest.mark.parametrize("name, scale, count", [("table1", "paper", 45), ("table2", "paper", 216),
                                                ("table3", "paper", 4 * 3 * 9 * 3), ("tickets", "paper", 12),
                                                ("table1", "cpu", 45), ("table2", "cpu", 216),
                                                ("table3", "cpu", 4 * 3 * 5 * 3), ("tickets", "cpu", 12)])
def test_built_in_studies_have_the_papers_shape_at_both_scales(name, scale, count):
    s = spec.load(name, scale)
    assert len(cells.expand(s)) == count and s.scale == scale


def test_paper_scale_is_the_papers_setting():
    c = cells.expand(spec.load("table2", "paper"))[0].cfg
    assert (c.data.image_size, c.train.epochs, c.data.augment, c.train.lr, c.prune.rounds) == (224, 50.0, "fastai", 1e-3, 1)
    t = cells.expand(spec.load("tickets", "paper"))[0].cfg
    assert (t.prune.rounds, t.prune.rate, t.model.model, t.data.dataset) == (14, 0.2, "resnet18", "cifar10")


def test_a_scale_merges_base_and_grid_and_replaces_the_rest():
    text = TOML + '\n[scales.small]\nseeds = 1\n[scales.small.base]\nrounds = 2\n[scales.big]\n'
    small = spec.parse(text, "t", "small")
    assert small.seeds == [0] and small.base["rounds"] == 2 and small.grid["schedule"] == ["one_shot", "ocp"]
    assert spec.parse(text, "t", "big").seeds == [0, 1]


# ---- Experiment B ----

def test_budget_extends_only_after_pruning_for_one_shot_and_iterative():
    b = {"multiples": [1, 2.5], "base_epochs": 50, "pretrain": {"one_shot": 0.4, "iterative": 0.2}}
    assert budget.fields(b, "one_shot", 1, 50.0) == {"epochs": 50.0}          # the schedule's own start: no field
    f = budget.fields(b, "one_shot", 2.5, 50.0)
    assert f["epochs"] == 20 + 30 * 2.5 and math.isclose(f["start"] * f["epochs"], 20.0)
    g = budget.fields(b, "iterative", 7.5, 50.0)
    assert g["epochs"] == 10 + 40 * 7.5 and math.isclose(g["start"] * g["epochs"], 10.0)
    assert budget.fields(b, "agp", 1.4, 50.0) == {"epochs": 70.0} and budget.fields(b, "ocp", 2, 50.0) == {"epochs": 100.0}
    assert budget.fields({**b, "extend": "whole"}, "one_shot", 2, 50.0) == {"epochs": 100.0}
    assert budget.fields({"multiples": [2]}, "ocp", 2, 8.0) == {"epochs": 16.0}   # the cell's own epochs


@pytest.mark.parametrize("spe", [390, 54, 22, 47, 72])
@pytest.mark.parametrize("multiple", [1.25, 1.4, 2, 2.5, 3.2, 3.33, 4, 7.5])
def test_pruning_starts_within_one_step_of_the_pretraining_budget(spe, multiple):
    """The step of the one-shot prune (and iterative's first jump) stays at p * 50 epochs of
    steps, whatever the budget, within one step: lth.training.loop's rule (prune before step k at
    t = k / total when the schedule's target rises) applied to the cell's config."""
    b = {"multiples": [multiple], "base_epochs": 50, "pretrain": {"one_shot": 0.4, "iterative": 0.2}}
    for name, p in (("one_shot", 0.4), ("iterative", 0.2)):
        f = budget.fields(b, name, multiple, 50.0)
        total = max(1, round(f["epochs"] * spe))
        fn = schedules.get(name)
        first = next(k for k in range(total) if fn(k / total, 0.0, 0.9, start=f["start"]) > 0)
        assert abs(first - p * 50 * spe) <= 1, (name, multiple, spe, first)


def test_budget_errors_are_one_line():
    with pytest.raises(LthError, match="budget.multiples"):
        budget.check({"multiples": [0.5]}, "t")
    with pytest.raises(LthError, match="budget.extend"):
        budget.check({"multiples": [1], "extend": "sideways"}, "t")
    with pytest.raises(LthError, match="unknown schedule"):
        budget.check({"multiples": [1], "pretrain": {"nope": 0.2}}, "t")


# ---- errors ----

@pytest.mark.parametrize("text, needle", [
    ("name = 'x'\n[grid\nschedule = 1", "not valid TOML"),
    ("name = 'x'\nbogus = 1", "unknown key 'bogus'"),
    ("name = 'x'\n[grid]\nschedule = []", "non-empty list"),
    ("name = 'x'\n[[zip]]\nmodel = ['a', 'b']\nlr = [1.0]", "equal lengths"),
    ("name = 'x'\nseeds = 0", "seeds must be at least 1"),
    ("name = 'x'\n[grid]\nschedule = ['ocp']\n[[zip]]\nschedule = ['agp']", "varies on two axes"),
    ("name = 'x'\n[scales.cpu]\n", "has no scale 'gpu'"),
    ("name = 'a b'", "name must be"),
])
def test_spec_errors_are_one_line(text, needle):
    with pytest.raises(LthError, match=needle) as info:
        spec.parse(text, "bad.toml", "gpu" if "scales" in text else None)
    assert "\n" not in str(info.value) and "bad.toml" in str(info.value)


@pytest.mark.parametrize("base, needle", [("nonsense = 1", "unknown field 'nonsense'"),
                                          ("schedule = 'zigzag'", "unknown schedule"),
                                          ("final_sparsity = 1.5", "final-sparsity must be > 0 and < 1")])
def test_bad_fields_are_refused_before_anything_runs(base, needle):
    with pytest.raises(LthError, match=needle):
        expand(f"name = 'x'\n[base]\n{base}")


def test_cli_reports_spec_errors_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[grid\n")
    from lth.study.cli import main
    assert cli_main(main, [str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not valid TOML" in err[0]
    assert cli_main(main, ["no_such_study"]) == 2
    assert "unknown study" in capsys.readouterr().err
