"""lth.config: every field is a flag with its default in --help; presets, recipes, config
files and explicit flags combine in the documented order; the hash names runs stably."""
import dataclasses
import json
import os
import re

import pytest

from lth import config
from lth.config import PRESETS, SECTIONS, RunConfig
from lth.training.recipes import RECIPES
from lth.errors import LthError
from lth.runs.store import run_name

ALL_FIELDS = [(section, f) for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)
              if "registry" not in f.metadata]
FIELD_IDS = [f"{s}.{f.name}" for s, f in ALL_FIELDS]
# every parameter of every registry entry: (registry, entry name, field)
ENTRY_PARAMS = [(section, config.CHOICES[(section, choice)], registry_entry, f)
                for (section, choice) in config.CHOICES
                for registry_entry in SECTIONS[section].__dataclass_fields__[config.CHOICES[(section, choice)]]
                .metadata["registry"].entries.values()
                for f in dataclasses.fields(registry_entry.params)]
PARAM_IDS = [f"{e.name}.{f.name}" for _, _, e, f in ENTRY_PARAMS]


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
    default = re.search(r"\[default: (.*?)(?:; [^\]]*)?\](?= |$)", after)
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
    if f.name == "moms":
        return (0.9, 0.8, 0.9), [flag(f), "0.9", "0.8", "0.9"]  # three values or none
    if f.name in config.NAMED_BY_SPEC:   # a registered name or a spec: another registered one
        other = {"model": "conv2", "dataset": "mnist"}[f.name]
        return other, [flag(f), other]
    if f.name == "from_run":
        return os.path.abspath("other_run"), [flag(f), "other_run"]  # a path is recorded absolute
    if is_tuple:
        value = (0.3, 0.6) if base is float else ("fc.*", "conv*")
        return value, [flag(f), *map(str, value)]
    if choices and len(choices) == 1:
        value = default  # a registry with one entry so far: the flag can only restate it
    elif choices:
        value = [c for c in choices if c != default][0]
    elif f.name == "end":
        value = 0.9  # must stay above start
    elif base is int:
        value = (default or 0) + 3
    elif base is float:
        value = 0.125 if default != 0.125 else 0.25
        upper = f.metadata["bounds"].get("le", f.metadata["bounds"].get("lt"))
        if upper is not None and value >= upper:
            value = (default + upper) / 2   # flags are range-checked as they are parsed: stay inside
    else:
        value = "other_" + str(default)
    return value, [flag(f), str(value)]


@pytest.mark.parametrize("section,params_field,entry,f", ENTRY_PARAMS, ids=PARAM_IDS)
def test_every_entry_parameter_has_a_flag_naming_its_entry(help_text, section, params_field, entry, f):
    m = re.search(rf"(?:^| ){re.escape(flag(f))}(?=[ ,])", help_text)
    assert m, f"{flag(f)} missing from --help"
    after = help_text[m.end():m.end() + 300]
    assert entry.name in after and f"{entry.name} {default_of(f)}" in after, (flag(f), after)


@pytest.mark.parametrize("section,params_field,entry,f", ENTRY_PARAMS, ids=PARAM_IDS)
def test_every_entry_parameter_flag_sets_it_when_its_entry_is_chosen(section, params_field, entry, f):
    choice = next(c for (s, c), pf in config.CHOICES.items() if s == section and pf == params_field)
    value, argv = _other_value(f)
    cfg = parse(["--" + choice.replace("_", "-"), entry.name, *argv]).resolved()
    assert getattr(getattr(cfg, section), params_field)[f.name] == (list(value) if isinstance(value, tuple) else value)


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
    (["--scope", "nope"], "nope"), (["--schedule", "nope"], "nope"), (["--optimizer", "nope"], "nope"),
    (["--model", "nope"], "nope"), (["--dataset", "nope"], "nope"), (["--init", "nope"], "nope"),
    (["--recipe", "nope"], "nope"), (["--criterion", "nope"], "nope"), (["--restart", "nope"], "nope"),
    (["--lr-schedule", "nope"], "nope"), (["--milestones", "0.5", "x"], "x"), (["--no-such-flag"], "--no-such-flag"),
    (["--method", "global"], "--method"),   # the old flag: now --scope and --criterion
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
    owners = config._flat_owners()   # issue 21's presets also set entry parameters (warmup, beta1, ...)
    for key, value in PRESETS[name].items():
        owner = owners[key]
        if owner[0] == "field":
            assert getattr(getattr(cfg, owner[1]), key) == value
        else:
            assert getattr(getattr(cfg, owner[1]), owner[2])[key] == value
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
    t = resolved.train
    for key, value in RECIPES.get(recipe).value.items():
        got = getattr(t, key) if hasattr(t, key) else {**t.optimizer_params, **t.lr_schedule_params}[key]
        assert got == (list(value) if isinstance(value, tuple) else value), key
    assert None not in dataclasses.asdict(resolved.train).values()
    assert resolved.resolved().to_dict() == resolved.to_dict()  # idempotent
    assert cfg.train.lr is None  # resolved() returns a copy


def test_recipe_leaves_set_fields_alone():
    cfg = parse(["--recipe", "openlth", "--lr", "0.05", "--milestones", "0.3"]).resolved()
    assert cfg.train.lr == 0.05 and cfg.train.lr_schedule_params["milestones"] == [0.3]
    assert cfg.train.optimizer == "sgd" and cfg.train.optimizer_params == {"momentum": 0.9, "nesterov": False}


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
    from lth.lottery.execution import run_metadata
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
    cfg = parse(["--recipe", "openlth", "--exclude", "fc.*", "conv1.weight", "--milestones", "0.5", "0.75"])
    assert cfg.prune.exclude == ("fc.*", "conv1.weight")
    assert cfg.train.lr_schedule_params["milestones"] == (0.5, 0.75)
    assert parse(["--recipe", "openlth", "--milestones"]).resolved().train.lr_schedule_params["milestones"] == []
    assert parse(["--exclude", "fc.*"]).prune.exclude == ("fc.*",)
    # and they survive JSON
    cfg2 = RunConfig.from_dict(json.loads(json.dumps(cfg.resolved().to_dict())))
    assert cfg2.prune.exclude == ("fc.*", "conv1.weight") and cfg2.train.lr_schedule_params["milestones"] == [0.5, 0.75]


# ---- the hash ---------------------------------------------------------------------------------

def test_hash_is_stable_across_to_dict_from_dict():
    cfg = parse(["--preset", "quick", "--exclude", "fc.*", "--schedule", "agp", "--start", "0.3"]).resolved()
    again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again.hash() == cfg.hash() and run_name(again) == run_name(cfg)
    assert again.to_dict() == cfg.to_dict()
    assert re.fullmatch(r"[0-9a-f]{8}", cfg.hash())
    # a fixed value: a change here renames every existing run directory
    assert RunConfig().hash() == RunConfig().hash() == RunConfig.from_dict({}).hash()


def test_hash_covers_hyperparameters_not_runtime_fields():
    base = parse(["--preset", "quick"]).resolved()
    for argv in (["--lr", "0.01"], ["--rounds", "3"], ["--init-seed", "7"], ["--schedule", "agp"],
                 ["--exclude", "fc3.*"], ["--no-bf16"], ["--image-size", "16"], ["--alpha", "10"],
                 ["--scope", "global"], ["--criterion", "random"], ["--layers", "conv"], ["--beta1", "0.8"],
                 ["--prune-tolerance", "0"]):
        assert parse(["--preset", "quick", *argv]).resolved().hash() != base.hash(), argv
    for argv in (["--device", "cpu"], ["--data-dir", "/elsewhere"], ["--no-progress"], ["--runs-root", "x"],
                 ["--download"], ["--compile"], ["--threads", "4"], ["--threads", "0"], ["--sync-bn"], ["--loader", "stream"],
                 ["--workers", "3"], ["--bad-images", "skip"], ["--log", "tensorboard"]):
        assert parse(["--preset", "quick", *argv]).resolved().hash() == base.hash(), argv
    runtime = {f.name for _, f in ALL_FIELDS if f.metadata["runtime"]}
    assert runtime == {"data_dir", "download", "compile", "device", "runs_root", "progress", "threads",
                       "sync_bn",    # issue 22: N ranks (with or without SyncBatchNorm) train the same run
                       "loader", "workers", "bad_images",   # issue 21: memory or streamed give the same batches
                       "log"}   # issue 23: watching a run changes nothing of it
    assert not any(name in runtime for section in base.experiment_dict().values() if isinstance(section, dict)
                   for name in section)


def test_recipe_default_and_explicit_equal_value_hash_alike():
    """The hash covers the resolved config: --lr 1e-3 with the paper recipe is the same run."""
    assert parse([]).resolved().hash() == parse(["--lr", "0.001"]).resolved().hash()


# ---- validation -------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,needle", [
    (["--rounds", "0"], "--rounds"), (["--rate", "1.0"], "--rate"), (["--final-sparsity", "1.0"], "1.0"),
    (["--final-sparsity", "-0.1"], "-0.1"), (["--epochs", "-1"], "-1"), (["--steps", "-5"], "-5"),
    (["--epochs", "inf"], "inf"), (["--epochs", "nan"], "nan"), (["--alpha", "nan"], "--alpha"),
    (["--lr", "inf"], "--lr"), (["--rewind-step", "-1"], "-1"), (["--batch-size", "0"], "--batch-size"),
    (["--schedule", "agp", "--start", "1.5"], "--start"), (["--warmup", "1.0"], "--warmup"),
    (["--div", "0"], "--div"), (["--beta1", "1.5"], "--beta1"), (["--optimizer", "sgd", "--momentum", "1.5"], "--momentum"),
    (["--schedule", "agp", "--start", "0.5", "--end", "0.2"], "--end"), (["--eval-every", "-1"], "--eval-every"),
    (["--image-size", "-1"], "--image-size"), (["--weight-decay", "-0.1"], "--weight-decay"),
    (["--prune-interval", "0"], "--prune-interval"), (["--lr-schedule", "step", "--gamma", "0"], "--gamma"),
    (["--layer-rate", "fc3"], "GLOB=FACTOR"), (["--layer-rate", "fc3.*=-1"], "GLOB=FACTOR"),
    (["--scope", "global", "--layer-rate", "fc3.*=0.5"], "global"),
])
def test_validate_refuses_out_of_range_values(argv, needle, capsys):
    assert needle in refusal(["--preset", "quick", *argv], capsys)


def refusal(argv, capsys) -> str:
    """The one-line refusal of argv: at parse time (a flag's range, exit 2) or by validate."""
    try:
        config.validate(parse(argv).resolved())
    except LthError as e:
        message = str(e)
    except SystemExit as e:
        assert e.code == 2
        message = capsys.readouterr().err.strip()
    else:
        pytest.fail(f"{argv} was accepted")
    assert "\n" not in message
    return message


@pytest.mark.parametrize("section,key,kind", [("data", "dataset", "dataset"), ("model", "model", "model"),
                                              ("model", "init", "initialisation")])
def test_validate_refuses_unknown_names_from_a_config_file(section, key, kind):
    """A config file is not parsed by argparse: the registries refuse its unknown names."""
    with pytest.raises(LthError, match=f"unknown {kind} 'nope'; choose one of"):
        config.validate(RunConfig.from_dict({section: {key: "nope"}}).resolved())


# ---- registries: a parameter belongs to its entry; the hash covers only what a run reads --------

@pytest.mark.parametrize("argv,entry", [
    (["--schedule", "agp", "--alpha", "10"], "ocp"),            # issue 11's examples
    (["--schedule", "ocp", "--start", "0.3"], "one_shot"),
    (["--schedule", "one_shot", "--prune-steps", "4"], "iterative"),
    (["--optimizer", "sgd", "--beta2", "0.9"], "adamw"),
    (["--lr-schedule", "constant", "--div", "10"], "one_cycle"),
])
def test_a_parameter_of_an_entry_not_chosen_is_a_one_line_error_naming_its_entry(argv, entry):
    with pytest.raises(LthError) as e:
        parse(["--preset", "quick", *argv]).resolved()
    message = str(e.value)
    assert entry in message and "belongs to" in message and "\n" not in message


def test_equivalent_configs_share_a_hash():
    def h(*argv):
        return parse(["--preset", "quick", *argv]).resolved().hash()
    # --final-sparsity sets the rate: an explicit --rate beside it is not read
    assert h("--final-sparsity", "0.9") == h("--final-sparsity", "0.9", "--rate", "0.3")
    # seeds of randomness the run never draws
    assert h() == h("--prune-seed", "11")                        # magnitude pruning draws none
    assert h("--criterion", "random") != h("--criterion", "random", "--prune-seed", "11")
    assert h() == h("--augment-seed", "5")                       # quick: no augmentation
    assert h("--augment", "crop_flip") != h("--augment", "crop_flip", "--augment-seed", "5")
    # entry parameters at their defaults, given or not
    assert h("--schedule", "ocp") == h("--schedule", "ocp", "--alpha", "14", "--beta", "5")
    assert h("--schedule", "agp") == h("--schedule", "agp", "--start", "0.2")


def test_changing_a_choice_drops_the_old_entrys_parameters(tmp_path):
    """A saved config of an OCP run, reused with --schedule agp, is an AGP run (not an error)."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps(parse(["--preset", "quick", "--alpha", "10"]).resolved().to_dict()))
    cfg = parse(["--config", str(path), "--schedule", "agp"]).resolved()
    assert cfg.prune.schedule == "agp" and cfg.prune.schedule_params == {"start": 0.2, "end": 1.0}


def test_resolved_config_keeps_only_the_chosen_entries_parameters():
    cfg = parse(["--preset", "quick", "--schedule", "iterative"]).resolved()
    assert cfg.prune.schedule_params == {"start": 0.2, "end": 1.0, "prune_steps": 3}
    assert set(cfg.train.optimizer_params) == {"beta1", "beta2", "eps"}
    assert set(cfg.train.lr_schedule_params) == {"warmup", "div", "div_final", "moms"}
    assert cfg.prune.restart_params == {"rewind_step": 0}


def test_format_1_configs_migrate_to_the_same_experiment():
    """A config.json written before the registries (format 1) opens and means the same run."""
    v1 = {"data": {"dataset": "digits", "data_dir": "data", "download": False, "image_size": 0, "augment": "none",
                   "split_seed": 0},
          "model": {"model": "lenet300_100"},
          "train": {"recipe": "paper", "optimizer": "adamw", "lr": 0.003, "momentum": 0.9, "beta2": 0.99,
                    "eps": 1e-05, "weight_decay": 0.01, "decay_bn_bias": False, "lr_schedule": "one_cycle",
                    "warmup": 0.25, "div": 25.0, "div_final": 100000.0, "milestones": [], "gamma": 0.1,
                    "epochs": 10.0, "steps": 0, "batch_size": 64, "eval_every": 5, "eval_batch_size": 1024,
                    "bf16": True, "channels_last": True, "compile": False},
          "prune": {"schedule": "iterative", "alpha": 14.0, "beta": 5.0, "start": None, "end": 1.0,
                    "prune_steps": 3, "method": "global", "exclude": [], "rate": 0.2, "final_sparsity": None,
                    "rounds": 14, "rewind_step": 0, "prune_interval": 1},
          "seeds": {"init_seed": 0, "order_seed": 1, "augment_seed": 2, "prune_seed": 3},
          "runtime": {"device": "auto", "runs_root": "runs", "progress": True}}
    migrated = RunConfig.from_dict(v1).resolved()
    # format 1 had a fixed beta1, pruned every layer at one rate and updated the mask at every
    # step whose target count rose (prune_tolerance 0)
    now = parse(["--preset", "quick", "--schedule", "iterative", "--scope", "global", "--moms", "--layer-rate",
                 "--prune-tolerance", "0"]).resolved()
    assert migrated.experiment_dict() == now.experiment_dict()
    random_v1 = json.loads(json.dumps(v1))
    random_v1["prune"].update(method="random", schedule="ocp")
    assert RunConfig.from_dict(random_v1).resolved().prune.criterion == "random"
    with pytest.raises(LthError, match="format"):
        RunConfig.from_dict({**now.to_dict(), "format": 99})


def test_every_bounded_knob_refuses_a_value_outside_its_range():
    """The range checks are declared with each field (lth.knobs): walk them all."""
    from lth.knobs import check_bounds
    tried = 0
    for section, f in ALL_FIELDS:
        bounds = f.metadata["bounds"]
        for kind, bound in bounds.items():
            outside = bound - 1 if kind in ("ge", "gt") else bound + 1
            if kind in ("gt", "lt"):
                outside = bound  # the bound itself is outside an open range
            cfg = parse(["--preset", "quick"]).resolved()
            setattr(getattr(cfg, section), f.name, outside)
            with pytest.raises(LthError, match=re.escape(flag(f))):
                check_bounds(getattr(cfg, section))
            tried += 1
    for _, _, entry, f in ENTRY_PARAMS:
        for kind, bound in f.metadata["bounds"].items():
            outside = bound if kind in ("gt", "lt") else bound - 1 if kind == "ge" else bound + 1
            with pytest.raises(LthError, match=re.escape(flag(f))):
                entry.make_params({f.name: outside})
            tried += 1
    assert tried >= 30


def test_format_2_configs_read_as_tolerance_0_and_threads_default():
    """Runs made before prune_tolerance (format 2) updated the mask at every step: they open as
    prune_tolerance 0, the same experiment, and a format-3 round trip keeps the value."""
    now = parse(["--preset", "quick", "--prune-tolerance", "0"]).resolved()
    v2 = now.to_dict()
    v2["format"] = 2
    del v2["prune"]["prune_tolerance"]
    del v2["runtime"]["threads"]
    old = RunConfig.from_dict(v2).resolved()
    assert old.prune.prune_tolerance == 0.0 and old.runtime.threads == 1
    assert old.experiment_dict() == now.experiment_dict() and old.hash() == now.hash()
    assert parse(["--preset", "quick"]).resolved().prune.prune_tolerance == 1e-3  # the default now
    assert RunConfig.from_dict(parse(["--preset", "quick"]).resolved().to_dict()).prune.prune_tolerance == 1e-3


@pytest.mark.parametrize("argv, message", [(["--prune-tolerance", "-0.1"], "--prune-tolerance must be >= 0"),
                                           (["--prune-tolerance", "0.5"], "--prune-tolerance must be"),
                                           (["--threads", "-1"], "--threads must be >= 0")])
def test_tolerance_and_threads_bounds(argv, message, capsys):
    assert re.search(message, refusal(["--preset", "quick", *argv], capsys))


def test_the_main_path_resolves_and_validates_once(monkeypatch, tmp_path):
    """One resolved-config type, validated at the edge: lth.run resolves the flags into a
    ResolvedConfig, and lth.execute takes it as it is (issue 20)."""
    from lth import config as config_mod, run as lth_run
    from lth.config import sections
    calls = []
    real = config_mod.validate
    monkeypatch.setattr(sections, "validate", lambda cfg: (calls.append(1), real(cfg))[1])
    assert lth_run.main(["--preset", "quick", "--rounds", "1", "--steps", "2", "--no-progress", "--device", "cpu",
                         "--runs-root", str(tmp_path)]) == 0
    assert calls == [1]
    resolved = config_mod.resolve(config_mod.RunConfig())
    assert isinstance(resolved, config_mod.ResolvedConfig) and config_mod.resolve(resolved) is resolved
    assert resolved.experiment_dict() == config_mod.RunConfig().resolved().experiment_dict()
