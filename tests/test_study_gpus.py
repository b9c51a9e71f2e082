"""Studies with multi-device run tasks (issue 22): the spec's `gpus`, packing onto a node's
devices with a fake device count, the driver's first fit, and (slow) a study whose runs are
2-rank torchrun runs on the CPU through the local executor.

    python -m pytest tests/test_study_gpus.py -q             # fast
    python -m pytest tests/test_study_gpus.py -m slow -q     # the 2-rank study
"""
import time
from typing import Dict, List

import pytest

from lth.errors import LthError
from lth.runs.store import RunStore
from lth.study import analyses, analysis_spec, cells, driver, plan as plan_mod, spec
from lth.study.executors.base import Executor, Outcome
from lth.study.executors.local import placement, wanted
from lth.study.executors.packing import Packer
from lth.study.state import StudyState

import studyhelpers

GRID = """
name = "packed"
preset = "quick"
gpus = 2
[base]
rounds = 1
steps = 8
batch_size = 32
[grid]
schedule = ["ocp", "agp", "one_shot"]
[analysis.stability]
rounds = "all"
steps = 4
"""


def test_spec_gpus_default_scale_override_and_bad_values():
    assert spec.parse('name = "a"', "a.toml").gpus == 1
    text = 'name = "a"\ngpus = 8\n[scales.cpu]\ngpus = 2\n[scales.paper]\n'
    assert spec.parse(text, "a.toml", "paper").gpus == 8 and spec.parse(text, "a.toml", "cpu").gpus == 2
    for bad in ("0", "-1", "1.5", '"two"', "true", "2000"):
        with pytest.raises(LthError, match="gpus must be a whole number of GPUs per run, 1 to 1024"):
            spec.parse(f'name = "a"\ngpus = {bad}', "a.toml")


def test_plan_gives_run_tasks_the_gpus_and_analyses_one(tmp_path):
    s = spec.parse(GRID, "packed.toml")
    plan = plan_mod.build(cells.expand(s), tmp_path / "runs", analysis_spec.parse(s.analysis, s.where).stability,
                          gpus=s.gpus)
    for task in plan.tasks.values():
        assert wanted(task.payload) == (2 if task.kind == "run" else 1)


def test_packer_takes_contiguous_devices_and_releases_them():
    p = Packer(8)                                  # a fake 8-GPU node
    assert p.take("a", 2) == [0, 1] and p.take("b", 1) == [2] and p.take("c", 4) == [3, 4, 5, 6]
    assert p.fits(1) and not p.fits(2)
    p.release("b")
    assert p.free == [2, 7] and not p.fits(3)
    assert p.take("d", 2) == [2, 7]               # no contiguous pair left: any two
    p.release("a")
    p.release("c")
    assert p.free == [0, 1, 3, 4, 5, 6] and p.take("e", 4) == [3, 4, 5, 6]
    with pytest.raises(LthError, match="already holds"):
        p.take("e", 1)
    with pytest.raises(LthError, match="needs 3 devices; 2 are free"):
        p.take("f", 3)
    with pytest.raises(LthError, match="asks for 9 devices per task but this node has 8"):
        p.check(9, "run:x")
    with pytest.raises(LthError, match="at least one device"):
        Packer(0)


def test_placement_of_one_and_several_slots():
    gpus = [f"cuda:{i}" for i in range(4)]
    assert placement(gpus, [2]) == ("cuda:2", None)
    assert placement(gpus, [1, 2]) == ("cuda", "1,2")
    assert placement(["cpu"] * 4, [0, 1, 2]) == ("cpu", None)


class Packed(Executor):
    """An executor over a fake node of `count` devices: it packs with the real Packer and
    finishes each task after `ticks` polls, recording what ran concurrently."""
    name = "packed"

    def __init__(self, count: int, ticks: int = 2):
        self.packer, self.ticks = Packer(count), ticks
        self.running: Dict[str, int] = {}
        self.peak_devices, self.log = 0, []

    def free_slots(self) -> int:
        return len(self.packer.free)

    def fits(self, payload) -> bool:
        return self.packer.fits(wanted(payload))

    def check(self, payloads) -> None:
        for p in payloads:
            self.packer.check(wanted(p), p["id"])

    def submit(self, task_id, payload, log_file) -> None:
        got = self.packer.take(task_id, wanted(payload))
        self.log.append((task_id, got))
        self.running[task_id] = self.ticks
        self.peak_devices = max(self.peak_devices, self.packer.count - len(self.packer.free))

    def poll(self, timeout) -> List[Outcome]:
        out = []
        for tid in list(self.running):
            self.running[tid] -= 1
            if self.running[tid] == 0:
                del self.running[tid]
                self.packer.release(tid)
                out.append(Outcome(tid, True, {}))
        return out


def test_driver_packs_two_gpu_runs_and_one_gpu_analyses_on_a_fake_node(tmp_path, monkeypatch):
    s = spec.parse(GRID, "packed.toml")
    plan = plan_mod.build(cells.expand(s), tmp_path / "runs", None, gpus=s.gpus)
    monkeypatch.setattr(plan_mod.Plan, "is_done", lambda self, task: False)
    ex = Packed(5)
    result = driver.drive(plan, ex, StudyState(tmp_path / "st"), tmp_path / "st", progress=False)
    assert len(result.done) == 3
    assert [got for _, got in ex.log[:2]] == [[0, 1], [2, 3]]     # two 2-GPU runs at once, the 5th GPU idle
    assert ex.peak_devices == 4 and ex.log[2][1] == [0, 1]
    with pytest.raises(LthError, match="asks for 2 devices per task but this node has 1"):
        Packed(1).check([t.payload for t in plan.tasks.values()])


@pytest.mark.slow
def test_study_of_two_rank_runs_on_the_cpu_matches_the_one_rank_study(tmp_path):
    """gpus = 2 with --device cpu: each run is torchrun with 2 gloo ranks, packed on --jobs 2."""
    from lth.study.cli import main as study_main
    text = GRID.replace("gpus = 2\n", "").replace("[analysis.stability]\nrounds = \"all\"\nsteps = 4\n", "")
    text = text.replace('["ocp", "agp", "one_shot"]', '["ocp", "agp"]')
    one = studyhelpers.spec_file(tmp_path, text, "one.toml")
    two = studyhelpers.spec_file(tmp_path, text.replace('preset = "quick"', 'preset = "quick"\ngpus = 2'), "two.toml")
    for path, root in ((one, "runs1"), (two, "runs2")):
        code = study_main([str(path), "--executor", "local", "--jobs", "2", "--device", "cpu", "--runs-root",
                           str(tmp_path / root), "--study-dir", str(tmp_path / f"st-{root}"), "--no-progress"])
        assert code == 0
    for name in sorted(p.name for p in (tmp_path / "runs1").iterdir()):
        meta = RunStore(tmp_path / "runs2" / name).config()
        assert meta["world_size"] == 2 and "world_size" not in RunStore(tmp_path / "runs1" / name).config()
        a, b = RunStore(tmp_path / "runs1" / name), RunStore(tmp_path / "runs2" / name)
        assert a.load_mask(1).keys() == b.load_mask(1).keys()
        assert abs(a.load_summary(1)["test_acc"] - b.load_summary(1)["test_acc"]) <= 2 / 360


TWO_RANKS = """
name = "ranks"
preset = "quick"
gpus = 2
[base]
rounds = 1
steps = 30
batch_size = 32
[grid]
schedule = ["ocp"]
"""


@pytest.mark.slow
def test_ray_executor_runs_a_two_rank_task(tmp_path):
    """--executor ray on a local 2-CPU cluster: the run task holds 2 slots (2 CPUs) and launches 2 ranks."""
    pytest.importorskip("ray")
    from lth.study.cli import main as study_main
    path = studyhelpers.spec_file(tmp_path, TWO_RANKS)
    code = study_main([str(path), "--executor", "ray", "--jobs", "2", "--runs-root", str(tmp_path / "runs"),
                       "--study-dir", str(tmp_path / "st"), "--no-progress"])
    assert code == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert RunStore(run_dir).config()["world_size"] == 2 and RunStore(run_dir).round_done(1)
    log = next((tmp_path / "st" / "logs").glob("run_*.log")).read_text()
    assert "masks identical on all 2 ranks" in log


@pytest.mark.slow
def test_ray_refuses_a_task_larger_than_the_cluster(tmp_path, capsys):
    pytest.importorskip("ray")
    from lth.errors import cli_main
    from lth.study.cli import main as study_main
    path = studyhelpers.spec_file(tmp_path, TWO_RANKS.replace("gpus = 2", "gpus = 3"))
    code = cli_main(study_main, [str(path), "--executor", "ray", "--jobs", "2", "--runs-root", str(tmp_path / "runs"),
                                 "--study-dir", str(tmp_path / "st"), "--no-progress"])
    assert code == 2
    assert "asks for 3 CPU slots per task but the Ray cluster offers 2" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
