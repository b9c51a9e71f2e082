"""lth.plugins: installed packages add entries through the entry-point group `lth.plugins`.

The end-to-end test builds a real plugin package in tmp_path, installs it with pip into a
folder of its own (--target, put on PYTHONPATH: the venv stays clean) and runs `python -m
lth.run` with the plugin's model, dataset and schedule. The in-process tests load real
importlib EntryPoint objects that point at modules written to tmp_path.
Run: python -m pytest tests/test_plugins.py -q"""
import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lth import config, plugins
from lth.data.datasets import DATASETS
from lth.errors import LthError
from lth.models import MODELS
from lth.pruning.schedules import SCHEDULES

REPO = Path(__file__).resolve().parent.parent

# The plugin: a model, a dataset made in-process (4 classes of 4x4 blobs) and a schedule with a
# parameter of its own, registered by a callable entry point.
TOY = '''
"""A tiny lth plugin (tests/test_plugins.py)."""
from dataclasses import dataclass


def register():
    import torch
    from torch import nn
    from lth import models
    from lth.data.datasets import DATASETS, Dataset
    from lth.knobs import knob
    from lth.pruning.schedules import SCHEDULES

    @models.register("toy_mlp", init="glorot")
    def toy_mlp(num_classes, in_channels, image_size):
        """A 16-unit MLP."""
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size * image_size, 16), nn.ReLU(),
                             nn.Linear(16, num_classes))

    @DATASETS.register("toy_blobs", official_split=False)
    def toy_blobs(data_dir, download, split_seed):
        """200 4x4 grey blobs in 4 classes, made in memory."""
        y = torch.arange(200) % 4
        noise = torch.randn(200, 1, 4, 4, generator=torch.Generator().manual_seed(1234)) * 20
        x = (y.view(-1, 1, 1, 1).float() * 60 + 30 + noise).clamp(0, 255).to(torch.uint8)
        order = torch.randperm(200, generator=torch.Generator().manual_seed(split_seed))
        test, train = order[:40], order[40:]
        return Dataset("toy_blobs", x[train], y[train], x[test], y[test], num_classes=4)

    @dataclass
    class StairParams:
        stair_steps: int = knob(2, "number of equal pruning steps over the round", ge=1)

    @SCHEDULES.register("toy_stairs", StairParams, label="Stairs")
    def toy_stairs(t, s_i, s_f, stair_steps=2):
        """Equal steps from the round's start; s_f at its end."""
        if t >= 1.0:
            return s_f
        return s_i + (s_f - s_i) * int(t * stair_steps) / stair_steps
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1"

[project.entry-points."lth.plugins"]
{ep} = "{module}:register"

[tool.setuptools]
py-modules = ["{module}"]
'''


def install(tmp: Path, dist: str, ep: str, module: str, source: str) -> Path:
    """Build and install a one-module plugin into tmp/site with pip; the folder to put on PYTHONPATH."""
    project = tmp / dist
    project.mkdir()
    (project / "pyproject.toml").write_text(PYPROJECT.format(dist=dist, ep=ep, module=module))
    (project / f"{module}.py").write_text(textwrap.dedent(source))
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(project)], check=True, capture_output=True,
                   cwd=tmp, timeout=120)
    return site


def lth_run(args, site: Path, cwd: Path, **extra_env) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{site}{os.pathsep}{REPO}")
    env.pop(plugins.DISABLE, None)
    env.update(extra_env)
    return subprocess.run([sys.executable, "-m", "lth.run", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_an_installed_plugin_runs_from_the_command_line(tmp_path):
    site = install(tmp_path, "lth-toy-plugin", "toy", "lth_toy_plugin", TOY)
    assert list(site.glob("lth_toy_plugin-0.1.dist-info/entry_points.txt"))
    args = ["--preset", "quick", "--model", "toy_mlp", "--dataset", "toy_blobs", "--schedule", "toy_stairs",
            "--stair-steps", "3", "--layer-rate", "--rounds", "2", "--steps", "6", "--batch-size", "16", "--eval-every", "0",
            "--no-progress", "--device", "cpu", "--runs-root", str(tmp_path / "runs")]
    proc = lth_run(args, site, tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("toy_blobs-toy_mlp-toy_stairs-")
    saved = json.loads((run_dir / "config.json").read_text())["config"]
    assert (saved["data"]["dataset"], saved["model"]["model"], saved["prune"]["schedule"]) == \
        ("toy_blobs", "toy_mlp", "toy_stairs")
    assert saved["prune"]["schedule_params"] == {"stair_steps": 3}
    assert saved["data"]["split_seed"] == 0          # the dataset's trait: no official split
    summaries = [json.loads((run_dir / f"round_{r:02d}" / "summary.json").read_text()) for r in (1, 2)]
    assert [s["sparsity"] for s in summaries] == pytest.approx([0.2, 0.36], abs=0.002)   # no --layer-rate


def test_a_plugin_that_fails_to_import_is_one_line_naming_it(tmp_path):
    site = install(tmp_path, "lth-broken-plugin", "broken", "lth_broken_plugin",
                   "import lth_no_such_module_anywhere\n\ndef register():\n    pass\n")
    proc = lth_run(["--preset", "quick", "--device", "cpu"], site, tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "plugin 'broken' (lth_broken_plugin:register) failed to load: ModuleNotFoundError" in lines[0]
    assert "LTH_NO_PLUGINS=1" in lines[0]
    assert not (tmp_path / "runs").exists()


# ---- in process: real EntryPoint objects over modules in tmp_path --------------------------------

@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """Plugins not yet loaded, registries restored after the test, tmp_path importable."""
    for registry in (MODELS, DATASETS, SCHEDULES):
        monkeypatch.setattr(registry, "entries", dict(registry.entries))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(plugins.DISABLE, raising=False)
    plugins.reset()
    yield tmp_path
    plugins.reset()
    for name in [m for m in sys.modules if m.startswith("lthtest_")]:
        del sys.modules[name]


def entry_point(name: str, value: str):
    return importlib.metadata.EntryPoint(name=name, value=value, group=plugins.GROUP)


def write(tmp_path: Path, module: str, source: str) -> None:
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))


def test_a_module_plugin_registers_on_import_and_loads_once(fresh):
    write(fresh, "lthtest_mod", '''
        from lth.pruning.schedules import SCHEDULES
        LOADS = []
        LOADS.append(1)

        @SCHEDULES.register("mod_linear")
        def mod_linear(t, s_i, s_f):
            return s_i + (s_f - s_i) * t
        ''')
    eps = [entry_point("mod", "lthtest_mod")]
    assert plugins.load(eps) == ["mod"]
    assert plugins.load(eps) == ["mod"]                  # once per process
    assert sys.modules["lthtest_mod"].LOADS == [1]
    assert SCHEDULES.get("mod_linear").source == "plugin 'mod'"
    cfg = config.from_args(["--schedule", "mod_linear"], config.build_parser("lth", ""))[0].resolved()
    assert cfg.prune.schedule == "mod_linear"


def test_a_plugin_registering_a_taken_name_is_refused_in_one_line(fresh):
    write(fresh, "lthtest_dup", '''
        def register():
            from lth.pruning.schedules import SCHEDULES
            SCHEDULES.register("ocp")(lambda t, s_i, s_f: s_f)
        ''')
    with pytest.raises(LthError) as e:
        plugins.load([entry_point("dup", "lthtest_dup:register")])
    assert str(e.value) == ("plugin 'dup' (lthtest_dup:register): schedule 'ocp' is registered twice "
                            "(first by lth, again by plugin 'dup')")
    with pytest.raises(LthError, match="plugin 'dup'"):
        plugins.load()                                   # raised again: never half a plugin
    assert SCHEDULES.get("ocp").source == "lth"


def test_two_plugins_taking_one_name_name_both(fresh):
    for module in ("lthtest_a", "lthtest_b"):
        write(fresh, module, '''
            def register():
                from lth import models
                models.register("same_net", init="pytorch")(lambda c, i, s: None)
            ''')
    with pytest.raises(LthError, match=r"plugin 'b' .*model 'same_net' is registered twice \(first by plugin 'a', "
                                       r"again by plugin 'b'\)"):
        plugins.load([entry_point("b", "lthtest_b:register"), entry_point("a", "lthtest_a:register")])


@pytest.mark.parametrize("source,value,message", [
    ("raise RuntimeError('boom\\nsecond line')\n", "lthtest_bad:register",
     "plugin 'bad' (lthtest_bad:register) failed to load: RuntimeError: boom"),
    ("def other():\n    pass\n", "lthtest_bad:register",
     "plugin 'bad' (lthtest_bad:register) failed to load: AttributeError"),
    ("register = 3\n", "lthtest_bad:register", "plugin 'bad' (lthtest_bad:register) is neither a module nor a callable"),
    ("def register():\n    raise KeyError('x')\n", "lthtest_bad:register",
     "plugin 'bad' (lthtest_bad:register) failed while registering: KeyError: 'x'"),
    ("def register(required):\n    pass\n", "lthtest_bad:register",
     "plugin 'bad' (lthtest_bad:register) failed while registering: TypeError"),
    ("def register():\n    from lth.pruning.schedules import SCHEDULES\n"
     "    SCHEDULES.register('x y')(lambda t, s_i, s_f: s_f)\n", "lthtest_bad:register",
     "plugin 'bad' (lthtest_bad:register): schedule name 'x y' is not one command-line token"),
    ("def register(:\n", "lthtest_bad:register", "plugin 'bad' (lthtest_bad:register) failed to load: SyntaxError"),
])
def test_every_kind_of_broken_plugin_is_one_line_naming_it(fresh, source, value, message):
    write(fresh, "lthtest_bad", source)
    with pytest.raises(LthError) as e:
        plugins.load([entry_point("bad", value)])
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_no_plugins_env_skips_loading(fresh, monkeypatch):
    write(fresh, "lthtest_never", "raise RuntimeError('must not be imported')\n")
    monkeypatch.setenv(plugins.DISABLE, "1")
    assert plugins.load([entry_point("never", "lthtest_never")]) == []


def test_a_script_or_study_reaches_the_plugins_through_the_config(fresh):
    """No explicit load: from_overrides (what studies and scripts call) loads the installed
    plugins first, so a plugin's parameter is a known name. The distribution is installed by
    hand into tmp_path (a dist-info folder: what pip writes), found on sys.path."""
    write(fresh, "lthtest_ramp", '''
        from dataclasses import dataclass
        from lth.knobs import knob

        @dataclass
        class RampParams:
            ramp_power: float = knob(2.0, "exponent", gt=0)

        def register():
            from lth.pruning.schedules import SCHEDULES
            SCHEDULES.register("ramp", RampParams)(lambda t, s_i, s_f, ramp_power=2.0: s_i + (s_f - s_i) * t ** ramp_power)
        ''')
    info = fresh / "lthtest_ramp-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lthtest-ramp\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[lth.plugins]\nramp = lthtest_ramp:register\n")
    cfg = config.from_overrides({"schedule": "ramp", "ramp_power": 3.0, "rounds": 2}, preset="quick")
    assert cfg.prune.schedule_params == {"ramp_power": 3.0}
    assert "ramp" in plugins.load()
