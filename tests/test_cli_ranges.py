"""Every numeric flag of every command-line tool declares its range, and a value outside it
exits 2 with one line as it is parsed (issue 19 item 7): the walk that the config fields have
in test_config, over every parser of lth and analysis."""
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# where parsers are only defined or extended, not a command's own parser
HELPERS = {"lth/errors.py", "lth/config/__init__.py", "lth/config/flags.py", "lth/structured/config.py", "analysis/cli.py"}


def parser_modules():
    """Every module of lth and analysis that builds an argparse parser (found in the source, so
    a new command cannot slip past this test)."""
    found = []
    for path in sorted([*ROOT.glob("lth/**/*.py"), *ROOT.glob("analysis/**/*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        if rel in HELPERS or not re.search(r"OneLineParser\(|ArgumentParser\(|build_parser\(", path.read_text()):
            continue
        found.append(rel[:-3].replace("/", "."))
    return found


MODULES = parser_modules()


def numeric_actions(parser):
    for action in parser._actions:
        if action.type in (int, float) or hasattr(action.type, "bounds"):
            yield action


def outside(action) -> str:
    """A value outside the action's declared range."""
    kind, bound = next(iter(action.type.bounds.items()))
    value = {"gt": bound, "ge": bound - 1, "lt": bound, "le": bound + 1}[kind]
    return str(int(value)) if action.type.base is int else repr(float(value))


def test_the_walk_finds_the_commands():
    assert {"lth.run", "lth.lottery.bimp", "lth.study.cli", "lth.structured.cli", "lth.bench.cli", "analysis.stability",
            "analysis.retrain", "analysis.structured", "lth.data.augment", "lth.structured.export"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_every_numeric_flag_declares_a_range_checked_at_parse_time(module, capsys):
    parser = importlib.import_module(module).parser()
    actions = list(numeric_actions(parser))
    for action in actions:
        name = action.option_strings[0] if action.option_strings else action.dest
        assert action.type not in (int, float), f"{module} {name}: a bare type={action.type.__name__}, no range"
        assert action.type.bounds, f"{module} {name}: no declared range"
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([name, outside(action)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and name in err[0] and "must be" in err[0], (module, name, err)
        with pytest.raises(SystemExit):
            parser.parse_args([name, "nan"])
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and name in err[0], (module, name, err)


def test_assume_tflops_minus_5_is_refused(tmp_path):
    """The issue's example: python -m lth.study ... --assume-tflops -5 was accepted."""
    from runhelpers import assert_one_line_error, cli
    proc = cli(["run", "smoke", "--dry-run", "--assume-tflops", "-5"], tmp_path, module="lth.study")
    assert_one_line_error(proc, "--assume-tflops must be > 0, got -5")
