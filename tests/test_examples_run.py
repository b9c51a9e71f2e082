"""Every example command in the code blocks of the README and its docs/ pages, and in the docstrings of lth and analysis
runs, and the ones that train learn (issue 19 item 5: a documented example trained a dead
network). Each command is run as written where it is already tiny; otherwise at a tiny budget
on digits (the only dataset a test has: scikit-learn ships it), with the flags below added.
A command that cannot run here is skipped with its reason, so a new example is never silently
left out: test_every_example_is_run_or_skipped_for_a_reason lists them all.

Heavy models (ResNet-18, VGG-16, ResNet-20 at several epochs) and the benchmarks are
@pytest.mark.slow; the fast ones take about a minute on 2 shared cores.
"""
import ast
import json
import re
import shlex
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

from lth.cli import BUILTIN_RUNNERS
from runhelpers import cli

ROOT = Path(__file__).resolve().parents[1]
CHANCE = 0.1     # digits: ten classes
MARGIN = 0.2     # "learns": final test accuracy at least chance + this
TINY_STEPS = "40"


# `lth COMMAND` lines are run as their `python -m` alias (the same job: tests/test_cli.py)
ALIASES = {name: alias for name, _, alias, _ in BUILTIN_RUNNERS}


def _commands(text: str) -> List[str]:
    """`python -m ...` and `lth COMMAND ...` lines of a text (the latter as their `python -m`
    alias), continuation lines joined, comments and env prefixes dropped."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        line = re.sub(r"^\s*(\w+=\S+\s+)*", "", line).strip()
        words = line.split()
        if len(words) > 1 and words[0] == "lth" and words[1] in ALIASES:
            line = " ".join([ALIASES[words[1]], *words[2:]])
        if line.startswith("python -m "):
            out.append(" ".join(re.sub(r"\s+#.*$", "", line).split()))
    return out


def examples() -> List[Tuple[str, str]]:
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:   # the README and its pages
        for block in re.findall(r"```[a-z]*\n(.*?)```", page.read_text(), re.S):
            found += [(page.relative_to(ROOT).as_posix(), c) for c in _commands(block)]
    for path in sorted([*ROOT.glob("lth/**/*.py"), *ROOT.glob("analysis/**/*.py")]):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        if doc:
            found += [(path.relative_to(ROOT).as_posix(), c) for c in _commands(doc)]
    return list(dict.fromkeys(found))


EXAMPLES = examples()


def skip_reason(cmd: str) -> Optional[str]:
    """Why an example cannot run in a test, or None."""
    argv = shlex.split(cmd.split("&&")[0])
    module = argv[2]
    if not module.startswith(("lth", "analysis")):
        return "not an lth command"
    if re.search(r"<[^>]*>|\bRUN(_DIR)?\b|RUN\.\.\.|\bFLAGS\b|\[|\$", cmd):
        return "a template (RUN_DIR, <name>, FLAGS, $var): the commands it stands for are the others"
    if re.search(r"\bDIR\b|(^|[\s=:])/data\b|my_pkg|path/to|\bRUN_[A-Z]\b|tinytext:", cmd):
        return "a template (a folder, package or runs of the user's: DIR, /data, my_pkg, path/to, RUN_A, tinytext)"
    if "--device cuda" in cmd:
        return "needs a GPU"
    if "--nproc-per-node" in argv:
        return "starts data-parallel ranks: tests/test_distributed.py runs 2-rank runs and kills one"
    if re.search(r"--model (torchvision|timm|hf):", cmd) and "--dry-run" not in argv and "--layers-list" not in argv:
        return ("an ImageNet-sized or text model (digits is 8 px, 1 channel): tests/test_external_models.py and "
                "tests/test_layers.py build and train them on generated data")
    if re.search(r"--dataset (glue|hf-text):|--preset bert\b", cmd) and "--dry-run" not in argv:
        return ("text data from the Hub or the user's disk (glue:, hf-text:, the bert preset): "
                "tests/test_text_glue.py runs them on local GLUE-shaped copies")
    if "ray" in argv:
        return "needs a Ray cluster"
    if any(a.startswith("runs/") or "*" in a for a in argv[3:]):
        return "reads runs other commands make (tests/test_analysis.py and test_retrain.py run it on runs they make)"
    if module == "lth.study" and any(a.endswith(".toml") for a in argv):
        return "a study file of the user's own"
    if module == "lth.study" and "--dry-run" not in argv and "status" not in argv:
        return "runs a whole study (hours); tests/test_study_driver.py runs a small one"
    if module == "analysis.tables":
        return "tables of studies run by the commands above"
    return None


def _value(argv: List[str], name: str) -> Optional[str]:
    return argv[argv.index(name) + 1] if name in argv else None


def _drop(argv: List[str], *names: str) -> List[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in names:
            skip = True
        else:
            out.append(a)
    return out


def _on_digits(argv: List[str]) -> List[str]:
    """The same flags on digits: other datasets are not in a test."""
    argv = _drop(argv, "--data-dir")
    if _value(argv, "--dataset") == "digits" or _value(argv, "--preset") == "quick":
        return argv
    heavy = _value(argv, "--preset") in (None, "paper", "paper32") and _value(argv, "--model") is None
    return [*argv, "--dataset", "digits", "--image-size", "32" if heavy else "0"]


def tiny(cmd: str) -> Tuple[str, List[str]]:
    """(module, argv) of the example at a tiny budget."""
    argv = shlex.split(cmd)
    module, argv = argv[2], [a for a in argv[3:] if a != "..."]   # "...": the rest of the example's flags
    if module == "lth.run" and "--dry-run" in argv:
        return module, argv   # writes nothing, reads no data: run as written
    if module == "lth.run" and "--layers-list" in argv:   # writes nothing; the model's classes from digits
        return module, argv if "--dataset" in argv else [*argv, "--dataset", "digits"]
    if module == "lth.run":
        argv = _on_digits(argv)
        if _value(argv, "--rounds"):
            argv[argv.index("--rounds") + 1] = str(min(int(_value(argv, "--rounds")), 2))
        else:
            argv += ["--rounds", "2"]   # not the default 14
        if _value(argv, "--rewind-step"):
            argv[argv.index("--rewind-step") + 1] = "5"
        steps = "16" if _value(argv, "--image-size") == "32" else TINY_STEPS   # ResNet-18 and VGG-16: fewer
        return module, [*argv, "--steps", steps, "--device", "cpu", "--no-progress"]
    if module == "lth.bimp":
        argv = _drop(_on_digits(argv), "--budget-epochs")
        return module, [*argv, "--budget-steps", "120", "--device", "cpu", "--no-progress"]
    if module == "lth.structured":
        if _value(argv, "--dataset") != "digits":   # CIFAR's 300 epochs, on the digits example's recipe
            argv = [*_drop(argv, "--data-dir"), "--dataset", "digits", "--model", "conv2", "--augment", "none",
                    "--lr", "0.02", "--epochs", "8", "--milestones", "0.75", "--monitor-start", "1",
                    "--sl-start", "1", "--sl-end", "3"]
        return module, [*argv, "--device", "cpu", "--no-progress", "--latency-repeats", "2"]
    if module == "lth.bench":
        return module, [*_drop(argv, "--data-dir"), "--size", "tiny", "--synthetic", "--device", "cpu"]
    if module == "lth.data.augment":
        return module, _drop(argv, "--samples") + ["--samples", "2000"]
    return module, argv


# near-copies of a fast example (the same code path): slow, to keep the fast suite short
COVERED = {"python -m analysis.figures",
           "python -m lth.bimp --preset mnist --recipe openlth --lr 0.05 --budget-epochs 20 --rounds 3 "
           "--final-sparsity 0.9 --baselines ocp agp"}


def is_slow(cmd: str) -> bool:
    module, argv = tiny(cmd)
    if cmd in COVERED:
        return True
    if module == "lth.bench":
        return True
    if "--log" in argv:   # the quick run with a logger: tests/test_loggers.py reads each one back
        return True
    if module == "lth.structured":
        return "--dataset digits" not in cmd           # the CIFAR examples: five more 15 s runs
    if module == "lth.run":
        return _value(argv, "--image-size") == "32" or _value(argv, "--preset") == "openlth"
    return module == "lth.models.reference" and "resnet20" not in argv


def must_learn(cmd: str) -> bool:
    """Whether a tiny run of the example must beat chance: on its own data (digits) or on a
    like-for-like stand-in (MNIST's recipe on digits). A CIFAR recipe moved to 8 px digits for
    40 steps (crop+flip erases 8 px digits) says nothing about the example; it must still run
    to the end, which now also means it did not diverge (lth.divergence exits 2)."""
    module, argv = tiny(cmd)
    if module not in ("lth.run", "lth.bimp"):
        return module == "lth.structured"   # always on the digits example's recipe (tiny())
    return _value(argv, "--preset") in ("quick", "mnist") or "--dataset digits" in cmd


def final_accuracies(root: Path) -> List[Tuple[str, float]]:
    """(run, final test accuracy) of every run under root: the last round's, or a structured run's."""
    out = []
    for summary in root.rglob("summary.json"):
        run = summary.parent
        if run.name.startswith("round_"):
            rounds = sorted(run.parent.glob("round_*/summary.json"))
            if summary != rounds[-1]:
                continue
            run = run.parent
        out.append((run.name, json.loads(summary.read_text())["test_acc"]))
    return out


def _param(source: str, cmd: str):
    marks = [pytest.mark.slow] if skip_reason(cmd) is None and is_slow(cmd) else []
    return pytest.param(cmd, id=f"{source}: {cmd[10:70]}", marks=marks)


RUNNABLE = [_param(s, c) for c, s in {c: s for s, c in reversed(EXAMPLES)}.items() if skip_reason(c) is None]


def test_every_example_is_run_or_skipped_for_a_reason():
    assert len(EXAMPLES) >= 30
    runnable = {c for _, c in EXAMPLES if skip_reason(c) is None}
    for must in ("python -m lth.run --preset quick --schedule ocp --rounds 14",
                 "python -m lth.structured --dataset digits --model conv2 --augment none --lr 0.02 --epochs 8 "
                 "--milestones 0.75 --monitor-start 1 --sl-start 1 --sl-end 3"):
        assert must in runnable
    assert any(c.startswith("python -m lth.bimp") for c in runnable)


@pytest.mark.parametrize("cmd", RUNNABLE)
def test_example_runs_and_learns(cmd, tmp_path):
    module, argv = tiny(cmd)
    (tmp_path / "runs").mkdir()
    proc = cli(argv, tmp_path, module=module, timeout=900)
    assert proc.returncode == 0, (module, argv, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    for run, acc in final_accuracies(tmp_path) if must_learn(cmd) else []:
        assert acc >= CHANCE + MARGIN, f"{cmd}: {run} ends at {acc:.3f} accuracy, chance is {CHANCE}"
