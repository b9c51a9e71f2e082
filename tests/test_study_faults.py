"""A study survives its processes being killed (issue 12), with real subprocesses and SIGKILL:

1. a local worker killed in the middle of a run: the driver replaces it and sends the task
   again, the run resumes from its epoch checkpoint;
2. the driver killed in the middle of the study: its worker dies with it (nothing keeps
   training), and running the same command again finishes the study without training any
   finished run or copy again (their files keep their bytes and mtimes);
and every run and stability result then equals those of a study never killed."""
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

import lth

from lth.runs.store import RunStore
from lth.study import analyses, analysis_spec, cells, driver, plan as plan_mod, spec
from lth.study.state import StudyState

import runhelpers
from studyhelpers import Inline, spec_file
from test_study_ray import stability_results

STUDY = """
name = "faults"
preset = "quick"
seeds = 3
[base]
rounds = 2
epochs = 3.0
batch_size = 32
[grid]
schedule = ["ocp"]
[analysis.stability]
rounds = "all"
epochs = 2.0
"""


def env() -> dict:
    """The test environment, importing this checkout's lth (not another installed copy)."""
    root = str(Path(lth.__file__).resolve().parent.parent)
    e = runhelpers.env()
    e["PYTHONPATH"] = os.pathsep.join(p for p in (root, e.get("PYTHONPATH")) if p)
    return e


def study_cli(args, cwd, wait: bool):
    command = [runhelpers.PY, "-m", "lth.study", *args]
    if wait:
        return subprocess.run(command, cwd=cwd, env=env(), capture_output=True, text=True, timeout=600)
    return subprocess.Popen(command, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def finished_files(runs_root):
    """Bytes and mtimes of every finished round and copy file (they must never be rewritten)."""
    snap = {}
    for run in runs_root.iterdir():
        for path in list(run.glob("round_*/*")) + list(run.glob("stability/*/*/*/copy_?.pt")):
            if path.name != "checkpoint.pt":
                st = path.stat()
                snap[str(path.relative_to(runs_root))] = (path.read_bytes(), st.st_mtime_ns)
    return snap


@pytest.mark.slow  # about a minute on 2 busy cores
def test_a_killed_worker_is_replaced_and_a_killed_driver_loses_no_finished_work(tmp_path):
    path = spec_file(tmp_path, STUDY)
    s = spec.load(str(path))
    stability = analysis_spec.parse(s.analysis, s.where).stability
    ref = plan_mod.build(cells.expand(s), tmp_path / "ref", stability)
    driver.drive(ref, Inline(), StudyState(tmp_path / "ref-study"), tmp_path / "ref-study", progress=False)

    plan = plan_mod.build(cells.expand(s), tmp_path / "runs", stability)
    study = tmp_path / "study"
    args = [str(path), "--runs-root", str(tmp_path / "runs"), "--study-dir", str(study), "--jobs", "1",
            "--device", "cpu", "--no-progress"]
    stores = [RunStore(c.run_dir(plan.runs_root)) for c in plan.cells]

    def running_pid(task_prefix):
        state = json.loads((study / "state.json").read_text())
        return next((e.get("pid") for t, e in state["tasks"].items() if t.startswith(task_prefix) and e.get("pid")),
                    None)

    # 1. a worker killed mid-run is replaced; the run resumes from its checkpoint
    proc = study_cli(args, tmp_path, wait=False)
    runhelpers.wait_until(lambda: stores[0].checkpoint_path(1).exists(), proc, timeout=300, poll=0.01)
    worker = running_pid(f"run:{plan.cells[0].name}")
    os.kill(worker, signal.SIGKILL)
    runhelpers.record_fault("study worker SIGKILL")
    # 2. the driver killed while the second run trains (the first run and some copies are done)
    runhelpers.wait_until(lambda: stores[1].checkpoint_path(1).exists() or stores[1].round_done(1), proc,
                          timeout=300, poll=0.01)
    second = running_pid(f"run:{plan.cells[1].name}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    runhelpers.record_fault("study driver SIGKILL")
    runhelpers.wait_until(lambda: not alive(second), timeout=10, poll=0.05)   # it died with the driver
    assert stores[0].finished_rounds() == [1, 2]
    before = finished_files(tmp_path / "runs")

    rerun = study_cli(args, tmp_path, wait=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "retrying it" in proc.stderr.read()
    after = finished_files(tmp_path / "runs")
    assert all(after[k] == v for k, v in before.items())      # nothing finished was trained again
    log = (study / "logs" / plan.tasks[f"run:{plan.cells[0].name}"].log_name()).read_text()
    assert len(re.findall(r"started on", log)) == 2 and "resuming from the checkpoint" in log
    for mine, theirs in zip(plan.cells, ref.cells):
        runhelpers.assert_same_run(theirs.run_dir(ref.runs_root), mine.run_dir(plan.runs_root))
        assert stability_results(mine.run_dir(plan.runs_root)) == stability_results(theirs.run_dir(ref.runs_root))
