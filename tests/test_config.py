"""lth.config: every field is a flag with its default in --help; presets, recipes, config
files and explicit flags combine in the documented order; the hash names runs stably."""
import dataclasses
import json
import re

import pytest

from lth import config
from lth.config import PRESETS, RECIPES, SECTIONS, RunConfig
from lth.errors import LthError

ALL_FIELDS = [(section, f) for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)]
FIELD_IDS = [f"{s}.{f.name}" for s, f in ALL_FIELDS]


def flag(f):
    return "--" + f.name.replace("_", "-")


def default_of(f):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def parse(argv):
    cfg, _ = config.from_args(argv, config.build_parser("lth-test", ""))
    return cfg


@pytest.fixture(scope="module")
def help_text():
    import os
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        text = config.build_parser("lth-test", "").format_help()
    finally:
        if old is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = old
    options = text[text.index("options:"):]
    return " ".join(options.split())  # undo the wrapping


# ---- flags and --help -------------------------------------------------------------------------

def test_field_names_are_unique_across_sections():
    names = [f.name for _, f in ALL_FIELDS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("section,f", ALL_FIELDS, ids=FIELD_IDS)
def test_every_field_has_a_flag_with_its_default_in_help(help_text, section, f):
    m = re.search(rf"(?:^| ){re.escape(flag(f))}(?=[ ,])", help_text)
    assert m, f"{flag(f)} missing from --help"
    after = help_text[m.end():]
    default = re.search(r"\[default: (.*?)\](?= |$)", after)
    assert default and default.group(1) == str(default_of(f)), (flag(f), after[:200])
    assert f.metadata["help"] and f.metadata["help"].split()[0] in after[:default.start()]


def _other_value(f):
    """A valid value different from the field's default, and the argv that sets it."""
    base, optional, is_tuple = config._field_type(f)
    choices = f.metadata["choices"]
    default = default_of(f)
    if base is bool:
        value = not bool(default)
        return value, [flag(f) if value else "--no-" + flag(f)[2:]]
    if is_tuple:
        value = (0.3, 0.6) if base is float else ("fc.*", "conv*")
        return value, [flag(f), *map(str, value)]
    if choices:
        value = [c for c in choices if c != default][0]
    elif base is int:
        value = (default or 0) + 3
    elif base is float:
        value = 0.125 if default != 0.125 else 0.25
    else:
        value = "other_" + str(default)
    return value, [flag(f), str(value)]


@pytest.mark.parametrize("section,f", ALL_FIELDS, ids=FIELD_IDS)
def test_every_flag_sets_its_field(section, f):
    value, argv = _other_value(f)
    cfg = parse(argv)
    assert getattr(getattr(cfg, section), f.name) == value
    # and only that field
    assert {k: v for k, v in dataclasses.asdict(cfg).items() if k != section} == \
        {k: v for k, v in dataclasses.asdict(RunConfig()).items() if k != section}


def test_help_runs_and_lists_every_flag(capsys):
    """--help must not crash (a literal '%' in a help text once broke argparse's formatting)."""
    with pytest.raises(SystemExit) as e:
        config.build_parser("lth-test", "").parse_args(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for _, f in ALL_FIELDS:
        assert flag(f) in out
    assert "95.6 %" in out


@pytest.mark.parametrize("argv,needle", [
    (["--epochs", "abc"], "abc"), (["--alpha", "abc"], "abc"), (["--rounds", "1.5"], "1.5"),
    (["--method", "nope"], "nope"), (["--milestones", "0.5", "x"], "x"), (["--no-such-flag"], "--no-such-flag"),
    (["--epoch", "3"], "--epoch"), (["--final", "0.9"], "--final"),   # no guessing from abbreviations
])
def test_bad_flag_values_are_one_line_errors(capsys, argv, needle):
    with pytest.raises(SystemExit) as e:
        parse(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:") and needle in err, err


# ---- presets, recipes, precedence -------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_apply_and_validate(name):
    cfg = parse(["--preset", name])
    for key, value in PRESETS[name].items():
        section = next(s for s, f in ALL_FIELDS if f.name == key)
        assert getattr(getattr(cfg, section), key) == value
    config.validate(cfg.resolved())


def test_explicit_flags_override_presets_in_any_order():
    for argv in (["--preset", "quick", "--lr", "0.01", "--epochs", "2"],
                 ["--lr", "0.01", "--epochs", "2", "--preset", "quick"]):
        cfg = parse(argv)
        assert cfg.data.dataset == "digits"            # from the preset
        assert cfg.train.lr == 0.01 and cfg.train.epochs == 2.0  # flags win over the preset's 3e-3 and 10


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipes_fill_none_fields(recipe):
    cfg = parse(["--recipe", recipe])
    assert cfg.train.lr is None and cfg.train.optimizer is None
    resolved = cfg.resolved()
    for key, value in RECIPES[recipe].items():
        assert getattr(resolved.train, key) == value, key
    assert None not in dataclasses.asdict(resolved.train).values()
    assert resolved.resolved().to_dict() == resolved.to_dict()  # idempotent
    assert cfg.train.lr is None  # resolved() returns a copy


def test_recipe_leaves_set_fields_alone():
    cfg = parse(["--recipe", "openlth", "--lr", "0.05", "--milestones", "0.3"]).resolved()
    assert cfg.train.lr == 0.05 and cfg.train.milestones == (0.3,)
    assert cfg.train.optimizer == "sgd" and cfg.train.momentum == 0.9


def test_unknown_recipe_is_refused():
    with pytest.raises(LthError, match="nope"):
        RunConfig.from_dict({"train": {"recipe": "nope"}}).resolved()


# ---- config files -----------------------------------------------------------------------------

def test_config_file_sets_fields_and_flags_and_presets_override_it(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"prune": {"rounds": 5, "schedule": "agp"}, "train": {"lr": 0.5, "epochs": 7}}))
    cfg = parse(["--config", str(path)])
    assert (cfg.prune.rounds, cfg.prune.schedule, cfg.train.lr, cfg.train.epochs) == (5, "agp", 0.5, 7.0)
    cfg = parse(["--config", str(path), "--preset", "quick", "--rounds", "2"])
    assert cfg.prune.rounds == 2           # flag > config
    assert cfg.train.lr == 3e-3            # preset > config
    assert cfg.prune.schedule == "agp"     # config > default


def test_a_runs_config_json_is_a_config_file(tmp_path):
    from lth.run import run_metadata
    import torch
    cfg = parse(["--preset", "quick", "--schedule", "iterative", "--exclude", "fc3.*"]).resolved()
    path = tmp_path / "config.json"
    path.write_text(json.dumps(run_metadata(cfg, torch.device("cpu"))))
    again = parse(["--config", str(path)]).resolved()
    assert again.to_dict() == cfg.to_dict() and again.hash() == cfg.hash()


@pytest.mark.parametrize("content,needle", [
    ({"prune": {"roundz": 3}}, "'roundz'"),
    ({"pruning": {"rounds": 3}}, "'pruning'"),
    ({"prune": {"rounds": "three"}}, "three"),
    ({"prune": {"rounds": None}}, "rounds"),
    ({"prune": {"exclude": "fc.*"}}, "exclude"),
    ({"train": {"epochs": True}}, "epochs"),
    ([1, 2], "expected an object"),
])
def test_bad_config_files_are_refused_in_one_line(tmp_path, content, needle):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(LthError) as e:
        parse(["--config", str(path)])
    message = str(e.value)
    assert needle in message and str(path) in message and "\n" not in message


def test_unreadable_config_files_are_refused(tmp_path):
    with pytest.raises(LthError, match="cannot read config file"):
        parse(["--config", str(tmp_path / "missing.json")])
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(LthError, match="not valid JSON"):
        parse(["--config", str(tmp_path / "broken.json")])


# ---- tuples -----------------------------------------------------------------------------------

def test_tuple_flags_parse():
    cfg = parse(["--exclude", "fc.*", "conv1.weight", "--milestones", "0.5", "0.75"])
    assert cfg.prune.exclude == ("fc.*", "conv1.weight")
    assert cfg.train.milestones == (0.5, 0.75)
    assert parse(["--milestones"]).train.milestones == ()
    assert parse(["--exclude", "fc.*"]).prune.exclude == ("fc.*",)
    # and they survive JSON
    cfg2 = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert cfg2.prune.exclude == ("fc.*", "conv1.weight") and cfg2.train.milestones == (0.5, 0.75)


# ---- the hash ---------------------------------------------------------------------------------

def test_hash_is_stable_across_to_dict_from_dict():
    cfg = parse(["--preset", "quick", "--exclude", "fc.*", "--milestones", "0.5"]).resolved()
    again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again.hash() == cfg.hash() and again.run_name() == cfg.run_name()
    assert again.to_dict() == cfg.to_dict()
    assert re.fullmatch(r"[0-9a-f]{8}", cfg.hash())
    # a fixed value: a change here renames every existing run directory
    assert RunConfig().hash() == RunConfig().hash() == RunConfig.from_dict({}).hash()


def test_hash_covers_hyperparameters_not_runtime_fields():
    base = parse(["--preset", "quick"]).resolved()
    for argv in (["--lr", "0.01"], ["--rounds", "3"], ["--init-seed", "7"], ["--schedule", "agp"],
                 ["--exclude", "fc.*"], ["--no-bf16"], ["--image-size", "16"]):
        assert parse(["--preset", "quick", *argv]).resolved().hash() != base.hash(), argv
    for argv in (["--device", "cpu"], ["--data-dir", "/elsewhere"], ["--no-progress"], ["--runs-root", "x"],
                 ["--download"], ["--compile"]):
        assert parse(["--preset", "quick", *argv]).resolved().hash() == base.hash(), argv
    runtime = {f.name for _, f in ALL_FIELDS if f.metadata["runtime"]}
    assert runtime == {"data_dir", "download", "compile", "device", "runs_root", "progress"}
    assert not any(name in runtime for section in base.experiment_dict().values() for name in section)


def test_recipe_default_and_explicit_equal_value_hash_alike():
    """The hash covers the resolved config: --lr 1e-3 with the paper recipe is the same run."""
    assert parse([]).resolved().hash() == parse(["--lr", "0.001"]).resolved().hash()


# ---- validation -------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,needle", [
    (["--rounds", "0"], "--rounds"), (["--rate", "1.0"], "--rate"), (["--final-sparsity", "1.0"], "1.0"),
    (["--final-sparsity", "-0.1"], "-0.1"), (["--epochs", "-1"], "-1"), (["--steps", "-5"], "-5"),
    (["--epochs", "inf"], "inf"), (["--epochs", "nan"], "nan"), (["--alpha", "nan"], "--alpha"),
    (["--lr", "inf"], "--lr"), (["--rewind-step", "-1"], "-1"), (["--batch-size", "0"], "--batch-size"),
    (["--schedule", "nope"], "nope"), (["--model", "nope"], "nope"), (["--dataset", "nope"], "nope"),
    (["--start", "1.5"], "--start"), (["--warmup", "1.0"], "--warmup"),
])
def test_validate_refuses_out_of_range_values(argv, needle):
    with pytest.raises(LthError) as e:
        config.validate(parse(["--preset", "quick", *argv]).resolved())
    assert needle in str(e.value) and "\n" not in str(e.value)
