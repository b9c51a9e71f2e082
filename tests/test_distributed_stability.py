"""The stability analysis under torchrun (issue 22): `torchrun --nproc_per_node 2 -m
analysis.stability RUN` on a 2-rank run, gloo on the CPU. Rank 0 alone writes; a SIGKILL of
either rank mid-copy, then the same command, gives results identical to an unkilled 2-rank
analysis; bad input is one line on every rank, nothing written. The kill cases are slow
(several torchruns each); the refusals take about 15 s.

    python -m pytest tests/test_distributed_stability.py -q              # the refusals
    python -m pytest tests/test_distributed_stability.py -m slow -q      # the runs and the kills
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lth.runs.files import load_tensors
from tests.test_distributed_ranks import ROOT, env, kill_rank_when
from tests.test_distributed_ranks import torchrun_module as torchrun

RUN = ["--preset", "quick", "--rounds", "2", "--steps", "120", "--device", "cpu", "--no-progress"]
ANALYSIS = ["--steps", "60", "--alphas", "5", "--no-figures", "--no-progress"]
TIMING = "timing"   # the one field of a result that differs between identical analyses




def stability_files(run_dir: Path) -> list:
    return sorted(str(p.relative_to(run_dir)) for p in (run_dir / "stability").rglob("*") if p.is_file())


def measured(run_dir: Path) -> dict:
    """Every result (timing aside) and every copy's weights, by path."""
    out = {}
    for path in (run_dir / "stability").rglob("*.json"):
        result = json.loads(path.read_text())
        result.pop(TIMING)
        out[str(path.relative_to(run_dir))] = result
    for path in (run_dir / "stability").rglob("copy_?.pt"):
        out[str(path.relative_to(run_dir))] = load_tensors(path)["model"]
    return out


def assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b) and a
    for key in a:
        if key.endswith(".pt"):
            assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
        else:
            assert a[key] == b[key], key


# ---- refusals: one line on every rank, nothing written ----------------------------------------

@pytest.fixture(scope="module")
def odd_batch_run(tmp_path_factory):
    """A one-round single-process run whose batch (63) splits over no 2 ranks."""
    run_dir = tmp_path_factory.mktemp("odd") / "run"
    r = subprocess.run([sys.executable, "-m", "lth.run", "--preset", "quick", "--rounds", "1", "--steps", "10",
                        "--batch-size", "63", "--device", "cpu", "--no-progress", "--run-dir", str(run_dir)],
                       cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return run_dir


@pytest.mark.parametrize("flags, message", [
    ([], "error: --batch-size 63 does not split over 2 ranks: the global batch must be a multiple of the world "
         "size (e.g. 62)"),
    (["--rounds", "4"], "error: round 4 of {run} is not finished (finished rounds: 1)"),
    (["--device", "cuda:0"], "error: --device cuda:0 pins one device, but torchrun started 2 ranks: use --device "
                             "cuda (rank r takes cuda:LOCAL_RANK) or --device cpu"),
])
def test_bad_input_is_one_line_on_every_rank_and_nothing_is_written(odd_batch_run, flags, message):
    code, out = torchrun("analysis.stability", odd_batch_run, *ANALYSIS, *flags)
    assert code != 0
    # each rank's one line (the two ranks share the pipe, so their lines may interleave)
    assert out.count(message.format(run=odd_batch_run)) == out.count("error:") == 2, out
    # the only traceback is torchrun's own failure report (ChildFailedError), not a rank's
    assert out.count("Traceback (most recent call last)") == out.count("ChildFailedError(") <= 1, out
    assert not (odd_batch_run / "stability").exists()


# ---- 2-rank analyses, killed and not ---------------------------------------------------------

@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("dp") / "run"
    code, out = torchrun("lth.run", *RUN, "--run-dir", run_dir)
    assert code == 0, out
    return run_dir


def fresh_copy(run_dir: Path, tmp_path: Path, name: str) -> Path:
    """The run's directory without any stability results: each analysis starts from nothing."""
    import shutil
    target = tmp_path / name
    shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("stability", ".lock"))
    return target


@pytest.fixture(scope="module")
def unkilled(two_rank_run, tmp_path_factory):
    run_dir = fresh_copy(two_rank_run, tmp_path_factory.mktemp("unkilled"), "run")
    code, out = torchrun("analysis.stability", run_dir, *ANALYSIS)
    assert code == 0, out
    return run_dir, out


@pytest.mark.slow
def test_two_rank_analysis_writes_once_and_agrees_with_one_process(two_rank_run, unkilled, tmp_path):
    run_dir, out = unkilled
    assert out.count("instability error") == 2 + 1                 # one log line per round (rank 0), + the table's
    assert out.count("run  round  kind") == 1 and "Traceback" not in out
    assert out.count("masks identical on all 2 ranks") == 4         # each round's two copies
    files = stability_files(run_dir)
    assert not [f for f in files if ".tmp" in f or "checkpoint" in f], files
    for r in (1, 2):
        [result] = [json.loads((run_dir / f).read_text()) for f in files if f.startswith(f"stability/round_0{r}/")
                    and f.endswith(".json")]
        assert result["world_size"] == 2 and result["budget"]["batch_size"] == 64   # the global batch
    # one process, the same run and flags: the same starting points, budget and seeds; the copies
    # agree to float summation order (docs/distributed.md), so accuracies agree within 2 images
    one = fresh_copy(two_rank_run, tmp_path, "run")
    r = subprocess.run([sys.executable, "-m", "analysis.stability", str(one), *ANALYSIS], cwd=ROOT, env=env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    a, b = measured(run_dir), measured(one)
    assert sorted(a) == sorted(b)
    for key in (k for k in a if k.endswith(".json")):
        assert b[key]["world_size"] == 1
        for field in ("start", "budget", "settings", "sparsity", "round"):
            assert a[key][field] == b[key][field]
        for copy in "ab":
            assert abs(a[key]["copies"][copy]["test_acc"] - b[key]["copies"][copy]["test_acc"]) <= 2 / 360
    for key in (k for k in a if k.endswith(".pt")):
        assert all(torch.allclose(a[key][k], b[key][k], atol=1e-4) for k in a[key]), key


def mid_copy_a(run_dir: Path) -> bool:
    """Round 2's copy a has an epoch checkpoint: the analysis is mid-copy."""
    return bool(list((run_dir / "stability" / "round_02").glob("ticket/*/copy_a.checkpoint.pt")))


@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0])
def test_sigkill_of_a_rank_mid_copy_then_rerun_equals_the_unkilled_analysis(two_rank_run, unkilled, tmp_path, victim):
    run_dir = fresh_copy(two_rank_run, tmp_path, "run")   # the same name: results record it
    proc = torchrun("analysis.stability", run_dir, *ANALYSIS, wait=False)
    kill_rank_when(proc, lambda: mid_copy_a(run_dir), victim)   # mid round 2's copy a
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert not list((run_dir / "stability" / "round_02").rglob("*.json"))   # round 2 unfinished
    code, out = torchrun("analysis.stability", run_dir, *ANALYSIS)            # the same command again
    assert code == 0, out
    assert "round 1 ticket: already measured" in out
    assert "resuming from the checkpoint" in out or "copy a: already trained" in out
    assert_same(measured(unkilled[0]), measured(run_dir))
    assert stability_files(unkilled[0]) == stability_files(run_dir)


# ---- lth's launcher: python -m analysis.stability --nproc-per-node 2 ----------------------------

def test_launcher_checks_the_batch_before_any_rank_starts(odd_batch_run):
    r = subprocess.run([sys.executable, "-m", "analysis.stability", "--nproc-per-node", "2", str(odd_batch_run),
                        *ANALYSIS], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["error: --batch-size 63 does not split over 2 ranks: the global batch "
                                             "must be a multiple of the world size (e.g. 62)"]
    assert "rank 0 of 2" not in r.stderr and not (odd_batch_run / "stability").exists()


@pytest.mark.slow
def test_launcher_reports_a_killed_rank_in_one_line_and_the_rerun_finishes(two_rank_run, unkilled, tmp_path):
    run_dir = fresh_copy(two_rank_run, tmp_path, "run")
    cmd = [sys.executable, "-m", "analysis.stability", "--nproc-per-node", "2", str(run_dir), *ANALYSIS]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kill_rank_when(proc, lambda: mid_copy_a(run_dir), 1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors[-1] == ("error: rank 1 was killed by signal 9; the other ranks were stopped; finished copies and "
                          "the last epoch checkpoint are kept: run the same command again to resume")
    assert all(e.startswith("error: rank 0 stopped: a collective failed") for e in errors[:-1]), errors
    assert "Traceback" not in err and "ChildFailedError" not in err
    again = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("run  round  kind") == 1
    assert_same(measured(unkilled[0]), measured(run_dir))
