"""The study driver (lth.study.driver, plan, state, report; issue 12): dependency order (a
round's copies need only that round), a failing cell isolated and retried by a rerun, status,
and the local executor's worker processes. Tiny: LeNet-300-100 on digits, a few steps."""
import json
import os
import shutil
import time

import pytest

from lth.errors import cli_main
from lth.runs.store import RunStore
from lth.study import analyses, analysis_spec, cells, driver, plan as plan_mod, report, spec
from lth.study.cli import main as study_main
from lth.study.state import StudyState
from lth.study.tasks import run_task_id

import runhelpers
import studyhelpers
from studyhelpers import Inline, TINY_STABILITY, fake_mnist, spec_file


def make_plan(tmp_path, text=TINY_STABILITY):
    s = spec.parse(text, "tiny.toml")
    a = analysis_spec.parse(s.analysis, s.where)
    return plan_mod.build(cells.expand(s), tmp_path / "runs", a.stability)


def test_stability_defaults_are_the_analysis_defaults():
    from analysis.settings import CopySettings, ProbeSettings
    s = analysis_spec.Stability()
    assert (s.bn, s.alphas, s.bn_batches) == (ProbeSettings().bn, ProbeSettings().alphas, ProbeSettings().bn_batches)
    assert (s.seed, s.epochs, s.steps) == (CopySettings().seed, CopySettings().epochs, CopySettings().steps)


def test_plan_has_a_run_two_copies_and_an_interpolation_per_measured_round(tmp_path):
    plan = make_plan(tmp_path)
    kinds = [t.kind for t in plan.tasks.values()]
    assert kinds.count("run") == 1 and kinds.count("copy") == 2 * 3 and kinds.count("interp") == 3
    interps = [t for t in plan.tasks.values() if t.kind == "interp"]
    assert all(len(t.deps) == 2 and all(plan.tasks[d].kind == "copy" for d in t.deps) for t in interps)
    assert sorted(t.needs_round for t in plan.tasks.values() if t.kind == "copy") == [1, 1, 2, 2, 2, 2]


def test_tasks_run_after_their_dependencies_and_a_rerun_does_nothing(tmp_path):
    plan = make_plan(tmp_path)
    ex = Inline()
    result = driver.drive(plan, ex, StudyState(tmp_path / "study"), tmp_path / "study", progress=False)
    assert not result.failed and len(result.done) == len(plan.tasks)
    position = {tid: i for i, tid in enumerate(ex.order)}
    for task in plan.tasks.values():
        assert all(position[d] < position[task.id] for d in task.deps), task.id
        if task.kind == "copy":
            assert position[run_task_id(plan.cells[0].name)] < position[task.id]
    assert all(plan.is_done(t) for t in plan.tasks.values())
    again = Inline()
    rerun = driver.drive(plan, again, StudyState(tmp_path / "study"), tmp_path / "study", progress=False)
    assert again.order == [] and len(rerun.skipped) == len(plan.tasks)


def test_a_rounds_copies_are_ready_while_later_rounds_train(tmp_path):
    plan = make_plan(tmp_path)
    cell = plan.cells[0]
    cells.execute_cell(cell.cfg, plan.runs_root, "cpu")
    summary = RunStore(cell.run_dir(plan.runs_root)).summary_path(2)
    summary.rename(summary.with_suffix(".hidden"))       # round 2 looks unfinished: the run is "training"
    run_id = run_task_id(cell.name)
    pending = {tid: t for tid, t in plan.tasks.items() if not plan.is_done(t)}
    assert run_id in pending
    ready = driver._ready(plan, pending, {run_id: 0.0}, set())
    assert {(t.kind, t.needs_round) for t in ready} == {("copy", 1)} and len(ready) == 2
    summary.with_suffix(".hidden").rename(summary)
    ready = driver._ready(plan, {k: v for k, v in pending.items() if k != run_id}, {}, {run_id})
    assert {(t.kind, t.needs_round) for t in ready} == {("copy", 1), ("copy", 2)} and len(ready) == 6


FAILING = """
name = "mixed"
preset = "quick"
[base]
rounds = 1
steps = 8
batch_size = 32
data_dir = "{data}"
[[zip]]
dataset = ["digits", "mnist"]
"""


def test_a_failing_cell_keeps_its_error_does_not_stop_the_others_and_a_rerun_retries_it(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    text = FAILING.format(data=data)
    s = spec.parse(text, "mixed.toml")
    plan = plan_mod.build(cells.expand(s), tmp_path / "runs", None)
    study = tmp_path / "study"
    result = driver.drive(plan, Inline(), StudyState.load(study), study, progress=False)
    assert len(result.done) == 1 and list(result.failed) == [f"run:{plan.cells[1].name}"]
    assert "dataset mnist not found" in result.failed[f"run:{plan.cells[1].name}"]
    report.print_status(plan, StudyState.load(study), s, study)
    status = [line for line in capsys.readouterr().out.splitlines() if line.lstrip()[:1].isdigit()]
    assert "dataset=digits" in status[0] and status[0].endswith(" done")
    assert "dataset=mnist" in status[1] and "failed: dataset mnist not found" in status[1]
    saved = json.loads((study / "state.json").read_text())["tasks"]
    assert [(e["status"], e["attempts"]) for e in saved.values()] == [("failed", 1)]

    digits_run = plan.cells[0].run_dir(plan.runs_root)
    before = runhelpers.snapshot(digits_run)
    fake_mnist(data)                                         # the missing data arrives: the rerun retries
    ex = Inline()
    result = driver.drive(plan, ex, StudyState.load(study), study, progress=False)
    assert ex.order == [f"run:{plan.cells[1].name}"] and not result.failed and len(result.skipped) == 1
    assert runhelpers.snapshot(digits_run) == before         # the finished cell was not trained again
    assert json.loads((study / "state.json").read_text())["tasks"] == {}


@pytest.mark.slow  # spawns a worker process: about 5 s on an idle 2-core machine, 15 s on a busy one
def test_cli_runs_a_study_with_worker_processes_and_exits_1_on_a_failure(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    path = spec_file(tmp_path, FAILING.format(data=data))
    argv = [str(path), "--runs-root", str(tmp_path / "runs"), "--study-dir", str(tmp_path / "study"),
            "--jobs", "1", "--device", "cpu", "--no-progress"]
    assert cli_main(study_main, argv) == 1
    out = capsys.readouterr().out
    assert "1 tasks done now" in out and "1 failed" in out and "failed: run:mnist-" in out
    assert cli_main(study_main, [str(path), "status", "--runs-root", str(tmp_path / "runs"),
                                 "--study-dir", str(tmp_path / "study")]) == 0
    assert "failed: dataset mnist not found" in capsys.readouterr().out


def test_status_believes_running_only_while_the_driver_beats(tmp_path):
    state = StudyState(tmp_path)
    state.start_driver("local")
    state.submitted("run:x")
    assert state.status_of("run:x")["status"] == "running" and state.driver_alive()
    saved = StudyState.load(tmp_path)
    saved.driver["heartbeat"] = time.time() - 3600           # a driver that stopped beating an hour ago
    assert not saved.driver_alive() and saved.status_of("run:x") is None
    saved.driver.update(heartbeat=time.time(), pid=2 ** 22 + 12345)   # fresh beat, but its pid is gone
    assert not saved.driver_alive()


def test_dry_run_lists_cells_and_estimates_device_hours(tmp_path, capsys):
    path = spec_file(tmp_path, TINY_STABILITY)
    argv = [str(path), "--runs-root", str(tmp_path / "runs"), "--dry-run"]
    assert cli_main(study_main, argv) == 0
    out = capsys.readouterr().out
    assert "1 cells, 1 unique runs" in out and "run: 1 pending; copy: 6 pending; interp: 3 pending" in out
    assert "estimated cpu device-hours (an estimate" in out and "[timed here]" in out
    assert not (tmp_path / "runs").exists() and not (tmp_path / "studies").exists()   # a dry run writes nothing


def test_local_executor_one_worker_per_job_with_threads_shared():
    from lth.study.executors.local import plan_workers
    cores = len(os.sched_getaffinity(0))
    assert plan_workers(2, "cpu") == [("cpu", max(1, cores // 2))] * 2
    assert plan_workers(None, "cpu") == [("cpu", cores)]
