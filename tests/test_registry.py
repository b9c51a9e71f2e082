"""lth.registry: one Registry type, entries that declare their traits, and choices that are read
when a parser is built or a config resolved (an entry registered after `import lth.config` is a
choice like the built-in ones). Run: python -m pytest tests/test_registry.py -q"""
import dataclasses
import json
from dataclasses import dataclass

import pytest

from lth import config
from lth.training.recipes import RECIPES
from lth.data.datasets import DATASETS
from lth.errors import LthError
from lth.knobs import knob
from lth.lottery.execution import execute
from lth.lottery.restart import RESTARTS
from lth.models import MODELS
from lth.models.init import INITS
from lth.pruning.criteria import CRITERIA
from lth.pruning.schedules import SCHEDULES
from lth.pruning.scope import SCOPES
from lth.registry import NoParams, Registry, registering_as
from lth.training.lr_schedules import LR_SCHEDULES
from lth.training.optimizers import OPTIMIZERS

ALL = [MODELS, DATASETS, INITS, SCHEDULES, LR_SCHEDULES, OPTIMIZERS, CRITERIA, SCOPES, RESTARTS, RECIPES]


@pytest.fixture
def scratch(monkeypatch):
    """Every registry's entries as a copy, restored after the test (entries added here vanish)."""
    for registry in ALL:
        monkeypatch.setattr(registry, "entries", dict(registry.entries))


def parse(argv):
    return config.from_args(argv, config.build_parser("lth", ""))[0]


@dataclass
class PowerParams:
    power: float = knob(2.0, "exponent of the ramp", gt=0)


def power(t, s_i, s_f, power=2.0):
    """s_i + (s_f - s_i) t^power."""
    return s_i + (s_f - s_i) * t ** power


# ---- one type for the ten kinds -------------------------------------------------------------

def test_every_kind_is_a_registry_of_entries_with_help_and_traits():
    kinds = {r.kind for r in ALL}
    assert len(kinds) == 10 and all(isinstance(r, Registry) for r in ALL)
    for registry in ALL:
        assert len(registry) >= 2
        for entry in registry.entries.values():
            assert dataclasses.is_dataclass(entry.params)
            assert set(entry.traits) == set(registry.traits)    # every declared trait, defaults filled
            assert entry.source == "lth"


def test_behaviour_is_declared_on_the_entries():
    assert SCHEDULES.with_trait("prunes", False) == ["dense"]
    assert OPTIMIZERS.with_trait("keeps_pruned_zero") == ["adamw", "sgd"]
    assert DATASETS.with_trait("official_split", False) == ["caltech101", "digits"]
    assert CRITERIA.with_trait("seeded") == ["random"] and CRITERIA.with_trait("magnitude") == ["magnitude"]
    assert SCOPES.with_trait("per_layer", False) == ["global"]
    assert RESTARTS.with_trait("from_dense_run") == ["continue"]
    assert LR_SCHEDULES.get("allr").traits["needs_context"] == "pruning"
    assert LR_SCHEDULES.get("one_cycle").traits["momentum"] is not None
    assert LR_SCHEDULES.with_trait("momentum", None) == [n for n in LR_SCHEDULES.names() if n != "one_cycle"]
    assert MODELS.get("resnet18").traits["init"] == "torchvision_resnet"
    assert RECIPES.get("openlth").value["optimizer"] == "sgd"


# ---- what register refuses: one line each ----------------------------------------------------

def test_register_refuses_bad_declarations():
    r = Registry("widget", traits={"shiny": False})
    r.register("a")(power)
    assert r.get("a").traits == {"shiny": False} and r.get("a").help == "s_i + (s_f - s_i) t^power."

    @dataclass
    class Plain:
        x: float = 1.0                       # not a knob: no help, no bounds

    @dataclass
    class NoDefault:
        x: float = dataclasses.field(metadata={"help": "x", "bounds": {}, "choices": None, "runtime": False})

    cases = [
        (lambda: r.register("a")(power), "widget 'a' is registered twice (first by lth, again by lth)"),
        (lambda: r.register("b", shiny=True, glossy=True)(power), "unknown trait 'glossy'; a widget declares shiny"),
        (lambda: r.register("two words")(power), "not one command-line token"),
        (lambda: r.register("")(power), "not one command-line token"),
        (lambda: r.register("--flag")(power), "not one command-line token"),
        (lambda: r.register(3)(power), "not one command-line token"),
        (lambda: r.register("c", dict)(power), "must be a dataclass"),
        (lambda: r.register("c", Plain)(power), "parameter 'x' must be declared with lth.knobs.knob"),
        (lambda: r.register("c", NoDefault)(power), "parameter 'x' needs a default"),
    ]
    for register, message in cases:
        with pytest.raises(LthError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
            register()
        assert "\n" not in str(e.value)
    assert r.names() == ["a"]   # nothing half-registered


def test_the_source_of_an_entry_is_recorded_and_named_on_a_clash():
    r = Registry("widget")
    with registering_as("plugin 'toy'"):
        r.register("a")(power)
    assert r.get("a").source == "plugin 'toy'"
    with pytest.raises(LthError, match=r"registered twice \(first by plugin 'toy', again by lth\)"):
        r.register("a")(power)


def test_a_parameter_named_like_a_config_field_is_one_line_error(scratch):
    @dataclass
    class Clash:
        epochs: float = knob(1.0, "clashes with --epochs", gt=0)

    SCHEDULES.register("clashing", Clash)(power)
    with pytest.raises(LthError, match="parameter 'epochs' of schedule 'clashing' .lth. is named like a config field"):
        config.build_parser("lth", "")


def test_a_recipe_with_an_unknown_key_is_refused(scratch):
    RECIPES.add("typo", {"optimizer": "sgd", "lr": 0.1, "momentun": 0.9})
    with pytest.raises(LthError, match="recipe 'typo' .lth. sets 'momentun'"):
        parse(["--recipe", "typo"]).resolved()


# ---- choices are read at parse time ------------------------------------------------------------

def test_a_schedule_registered_after_import_is_parsed_validated_and_run(scratch, tmp_path, capsys):
    assert "power_test" not in SCHEDULES   # lth.config was imported long before
    SCHEDULES.register("power_test", PowerParams, label="Power")(power)
    assert "power_test" in config.build_parser("lth", "").format_help()
    cfg = parse(["--preset", "quick", "--schedule", "power_test", "--power", "3", "--rounds", "2", "--steps", "6",
                 "--eval-every", "0", "--no-progress"]).resolved()
    config.validate(cfg)
    assert cfg.prune.schedule == "power_test" and cfg.prune.schedule_params == {"power": 3.0}
    with pytest.raises(LthError, match="--power belongs to schedule power_test, not to the chosen schedule 'ocp'"):
        parse(["--schedule", "ocp", "--power", "3"]).resolved()
    with pytest.raises(SystemExit) as refused:   # refused as it is parsed, like a built-in entry's flag
        parse(["--schedule", "power_test", "--power", "0"])
    assert refused.value.code == 2 and "--power must be > 0" in capsys.readouterr().err
    result = execute(cfg, run_dir=tmp_path / "run", device="cpu", progress=False)
    # rounds of rate 0.2 (the output layer at half the rate: the quick preset)
    assert [s["sparsity"] for s in result.summaries] == pytest.approx([0.2, 0.36], abs=0.005)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["config"]["prune"]["schedule"] == "power_test"
    assert saved["config"]["prune"]["schedule_params"] == {"power": 3.0}


def test_a_model_dataset_init_optimizer_registered_after_import_are_choices(scratch):
    MODELS.register("model_test", init="pytorch")(lambda c, i, s: None)
    DATASETS.register("data_test", official_split=False)(lambda d, dl, seed: None)
    INITS.register("init_test")(lambda model: None)
    OPTIMIZERS.register("opt_test")(lambda groups, lr: None)
    cfg = parse(["--model", "model_test", "--dataset", "data_test", "--init", "init_test",
                 "--optimizer", "opt_test"]).resolved()
    config.validate(cfg)
    assert cfg.data.split_seed == 0          # the trait official_split=False keeps the split seed
    assert cfg.train.optimizer_params == {}


# ---- traits decide, not names -------------------------------------------------------------------

def test_a_non_pruning_schedule_resolves_like_dense(scratch):
    SCHEDULES.register("flat_test", prunes=False)(lambda t, s_i, s_f: s_i)
    mine = parse(["--schedule", "flat_test", "--rounds", "5", "--scope", "global"]).resolved()
    dense = parse(["--schedule", "dense"]).resolved()
    assert (mine.prune.rounds, mine.prune.rate, mine.prune.layers) == (dense.prune.rounds, None, "all") == (1, None, "all")


def test_a_seeded_criterion_keeps_the_prune_seed(scratch):
    CRITERIA.register("noisy_test", seeded=True)(lambda p, g=None: p.abs())
    assert parse(["--criterion", "noisy_test"]).resolved().seeds.prune_seed == 3
    assert parse(["--criterion", "magnitude"]).resolved().seeds.prune_seed is None


def test_official_split_decides_the_split_seed():
    assert parse(["--dataset", "digits"]).resolved().data.split_seed == 0
    assert parse(["--dataset", "mnist"]).resolved().data.split_seed is None


def test_one_threshold_scopes_refuse_layer_rates():
    with pytest.raises(LthError, match="--scope global .one threshold. cannot follow; use --scope local"):
        config.validate(parse(["--scope", "global", "--layer-rate", "fc*=0.5"]).resolved())


def test_no_params_entries_take_no_flags():
    assert SCHEDULES.get("dense").params is NoParams
    assert SCHEDULES.get("dense").param_names() == []
