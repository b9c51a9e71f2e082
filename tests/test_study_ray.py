"""The Ray executor for real (lth.study.executors.ray_cluster; issue 12): a local Ray cluster
(ray.init(num_cpus=2, include_dashboard=False)) runs a tiny study with stability analysis and
gives the same runs and results as the in-process executor; a Ray worker SIGKILLed in the
middle of a run task is retried by Ray, resumes from the run's checkpoint, and the run is
identical to one never killed. Without Ray, --executor ray is a one-line error."""
import os
import re
import signal
import sys
import threading

import pytest

from lth.errors import LthError, cli_main
from lth.runs.store import RunStore
from lth.runs.files import read_json
from lth.study import analyses, analysis_spec, cells, driver, plan as plan_mod, spec
from lth.study.state import StudyState

import runhelpers
from studyhelpers import Inline, TINY_STABILITY

ray = pytest.importorskip("ray")

# A run of 3 rounds x 3 epochs (epoch checkpoints exist), then its tickets' stability.
KILLABLE = TINY_STABILITY.replace("steps = 12\nbatch_size = 32", "epochs = 3.0\nbatch_size = 32\nrounds = 3") \
    .replace("rounds = 2\n", "")


def stability_results(run_dir):
    out = {}
    for path in sorted(RunStore(run_dir).root.glob("stability/*/*/*/interpolation-*.json")):
        result = read_json(path)
        out[str(path.relative_to(run_dir))] = runhelpers.strip_timing(
            {k: v for k, v in result.items() if k not in ("timing", "run", "device")})
    return out


def plan_for(root, text):
    s = spec.parse(text, "t.toml")
    return plan_mod.build(cells.expand(s), root / "runs", analysis_spec.parse(s.analysis, s.where).stability)


@pytest.mark.slow  # starts a Ray cluster: 20-40 s on 2 busy cores
def test_ray_runs_a_study_like_the_local_executor_and_retries_a_killed_worker(tmp_path):
    from lth.study.executors.ray_cluster import RayExecutor
    ref = plan_for(tmp_path / "ref", KILLABLE)
    driver.drive(ref, Inline(), StudyState(tmp_path / "ref" / "s"), tmp_path / "ref" / "s", progress=False)

    plan = plan_for(tmp_path / "ray", KILLABLE)
    study = tmp_path / "ray" / "s"
    run_dir = plan.cells[0].run_dir(plan.runs_root)
    run_log = study / "logs" / plan.tasks[f"run:{plan.cells[0].name}"].log_name()
    killed = {}

    def kill_mid_run():   # SIGKILL the Ray worker once round 1 has an epoch checkpoint
        runhelpers.wait_until(lambda: RunStore(run_dir).checkpoint_path(1).exists(), timeout=300, poll=0.01)
        pid = int(re.search(r"pid (\d+)", run_log.read_text()).group(1))
        os.kill(pid, signal.SIGKILL)
        killed["pid"] = pid

    killer = threading.Thread(target=kill_mid_run, daemon=True)
    killer.start()
    executor = RayExecutor(jobs=2)
    try:
        result = driver.drive(plan, executor, StudyState(study), study, progress=False)
    finally:
        executor.close()
    killer.join(5)
    assert killed and not result.failed and len(result.done) == len(plan.tasks)
    starts = re.findall(r"started on \S+ pid (\d+)", run_log.read_text())
    assert len(starts) == 2 and int(starts[0]) == killed["pid"] and starts[1] != starts[0]   # retried elsewhere
    assert "resuming from the checkpoint" in run_log.read_text()
    runhelpers.assert_same_run(ref.cells[0].run_dir(ref.runs_root), run_dir)
    assert stability_results(run_dir) == stability_results(ref.cells[0].run_dir(ref.runs_root)) != {}


def test_executor_ray_without_ray_is_one_line(tmp_path, monkeypatch, capsys):
    from lth.study.cli import main
    monkeypatch.setitem(sys.modules, "ray", None)          # `import ray` raises ImportError
    path = tmp_path / "t.toml"
    path.write_text(TINY_STABILITY)
    code = cli_main(main, [str(path), "--executor", "ray", "--runs-root", str(tmp_path / "runs"),
                           "--study-dir", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and 'pip install -e ".[ray]"' in err[0]
