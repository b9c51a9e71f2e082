"""The `lth` command (lth/cli.py): one entry per runner, each the same job as its `python -m`
alias; bad commands are one line and exit 2; a closed pipe is not a traceback."""
import subprocess
import sys

import pytest

from lth import cli
from lth.errors import EXIT_USAGE, cli_main

PY = sys.executable


def lth(*argv, **kwargs):
    return subprocess.run([PY, "-m", "lth.cli", *argv], capture_output=True, text=True, timeout=120, **kwargs)


def test_help_lists_every_runner_with_its_line():
    out = lth("--help")
    assert out.returncode == 0
    for name in cli.RUNNERS.names():
        assert f"  {name} " in out.stdout
    assert {"run", "study", "structured", "bimp", "stability", "figures", "tables", "bench", "runs"} <= \
        set(cli.RUNNERS.names())


@pytest.mark.parametrize("name", ["run", "study", "structured", "bimp", "stability", "figures", "tables", "bench",
                                  "runs", "retrain", "structured-report", "mask-overlap"])
def test_every_runner_loads_and_answers_help(name, capsys):
    runner = cli.RUNNERS.get(name).fn
    with pytest.raises(SystemExit) as exit_:
        runner.load()(["--help"])
    assert exit_.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [([], "usage: lth COMMAND"), (["nope"], "unknown command 'nope'"),
                                         (["--schedule", "ocp"], "give a command first")])
def test_bad_commands_are_one_line_and_exit_2(argv, words):
    out = lth(*argv)
    assert out.returncode == EXIT_USAGE
    assert "Traceback" not in out.stderr
    assert words in out.stdout + out.stderr
    if argv:
        assert len(out.stderr.strip().splitlines()) == 1


def test_a_command_is_its_alias(tmp_path):
    (tmp_path / "runs").mkdir()
    via_lth = lth("runs", "list", str(tmp_path / "runs"))
    via_module = subprocess.run([PY, "-m", "lth.runs", "list", str(tmp_path / "runs")], capture_output=True,
                                text=True, timeout=120)
    assert via_lth.returncode == via_module.returncode == 0
    assert via_lth.stdout == via_module.stdout


def test_a_command_error_keeps_its_one_line():
    out = lth("run", "--epochs", "-1")
    assert out.returncode == EXIT_USAGE and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "--epochs" in out.stderr


def test_a_closed_pipe_is_not_a_traceback():
    proc = subprocess.Popen([PY, "-m", "lth.cli", "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()   # the reader went away before the first line
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err
