"""Faults (issue 6), with real `python -m lth.run` processes and real signals.

- SIGKILL at many points (when a given file appears, inside a given atomic write, after a
  seeded random delay), then the same command again: the run finishes with artefacts equal
  to those of a run never killed (masks bit-identical, weights identical, metrics and
  summaries equal but for timing).
- SIGINT: exit code 130, no traceback, one line saying how to resume; resuming finishes
  identically.
- A run root that cannot be used, a full disk (RLIMIT_FSIZE), bad input of every kind, a
  corrupted file, a conflicting config, two processes on one run, a stale lock: one-line
  errors, exit code 2, nothing created or changed that should not be.

Every fault inflicted is counted (runhelpers.record_fault) and the counts are printed at the
end of the session (and written to $LTH_FAULT_LOG as JSON when that is set).
The run: digits, LeNet-300-100, 3 rounds x 3 epochs x 44 steps (about 1.5 s of training).
"""
import concurrent.futures
import json
import random
import resource
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

import runhelpers
from runhelpers import (TINY, assert_one_line_error, assert_same_run, cli, only_run_dir, record_fault, snapshot,
                        start, temp_files, wait_until)
from lth.runs.store import RunStore

ARGS = [*TINY, "--runs-root", "runs"]  # run from a per-test folder: runs/<name>
STEPS_PER_ROUND = 132                  # 3 epochs of 1438 // 32 = 44 steps


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: the artefacts every interrupted-and-resumed run must reproduce."""
    cwd = tmp_path_factory.mktemp("reference")
    proc = start(ARGS, cwd=cwd)
    assert wait_until(file_appears(cwd / "runs", "*/init.pt"), proc)
    t = time.monotonic()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    run_dir = only_run_dir(cwd / "runs")
    assert RunStore(run_dir).finished_rounds() == [1, 2, 3]
    # seconds from W0 on disk to the end: the window random kills are drawn from
    return {"dir": run_dir, "name": run_dir.name, "train_seconds": time.monotonic() - t}


def state_after_kill(root: Path) -> str:
    """Where the kill landed: rounds finished, an epoch checkpoint, a torn temporary file."""
    dirs = [d for d in root.iterdir() if d.is_dir()] if root.exists() else []
    if not dirs:
        return "before the run directory existed"
    store = RunStore(dirs[0])
    parts = [f"{len(store.finished_rounds())} rounds done"]
    if not store.is_run():
        parts.append("no config.json")
    elif not store.init_path.exists():
        parts.append("no init.pt")
    if list(dirs[0].glob("round_*/checkpoint.pt")):
        parts.append("a checkpoint")
    if temp_files(dirs[0]):
        parts.append("a torn temp file")
    return ", ".join(parts)


def resume_and_compare(cwd: Path, reference, argv=ARGS) -> str:
    """Run the same command again: it must finish and match the reference. Returns its stderr."""
    proc = cli(argv, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    run_dir = only_run_dir(cwd / "runs")
    assert run_dir.name == reference["name"]
    assert_same_run(reference["dir"], run_dir)
    return proc.stderr


def file_appears(root: Path, pattern: str):
    """A condition: `pattern` exists under root. An epoch checkpoint lives only until its round
    ends, so for one the round's summary counts too (a poller starved by a busy machine would
    otherwise miss it; the kill then lands a little later, which is as good a point)."""
    patterns = [pattern]
    if pattern.endswith("/checkpoint.pt"):
        patterns.append(pattern.replace("/checkpoint.pt", "/summary.json"))
    return lambda: any(any(root.glob(p)) for p in patterns)


# ---- SIGKILL ----------------------------------------------------------------------------------

# (glob under the runs root that triggers the kill as soon as it exists)
KILL_WHEN = [
    "*/round_01/checkpoint.pt",    # during round 1's training, after its first epoch
    "*/round_02/summary.json",     # between rounds 2 and 3
]
KILL_WHEN_SLOW = ["*/config.json", "*/init.pt", "*/round_01/summary.json", "*/round_02/checkpoint.pt",
                  "*/round_03/checkpoint.pt", "*/round_03/mask.pt"]


def _kill_when(tmp_path, reference, pattern):
    proc = start(ARGS, cwd=tmp_path)
    fired = wait_until(file_appears(tmp_path / "runs", pattern), proc)
    assert fired, "the run finished before the kill point"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    landed = state_after_kill(tmp_path / "runs")
    locks = list((tmp_path / "runs").glob("*/.lock"))
    held = bool(locks) and locks[0].read_text() == str(proc.pid)   # killed while holding the lock
    record_fault(f"SIGKILL when {pattern} appears", f"resumed identically ({landed})")
    err = resume_and_compare(tmp_path, reference)
    if held:
        assert f"from pid {proc.pid}, which is no longer running" in err  # the stale lock was taken over
        record_fault("stale lock of a SIGKILLed lth.run", "taken over")


@pytest.mark.parametrize("pattern", KILL_WHEN)
def test_sigkill_when_a_file_appears_then_resume(tmp_path, reference, pattern):
    _kill_when(tmp_path, reference, pattern)


@pytest.mark.slow
@pytest.mark.parametrize("pattern", KILL_WHEN_SLOW)
def test_sigkill_when_a_file_appears_then_resume_more(tmp_path, reference, pattern):
    _kill_when(tmp_path, reference, pattern)


# A real SIGKILL from inside an atomic write: lth.runs.files' os.fsync is wrapped so that the
# nth write whose temporary file matches a glob is torn (cut to half) and the process killed,
# after the data went to the temporary file and before the rename.
KILL_IN_WRITE = textwrap.dedent("""
    import fnmatch, os, runpy, signal, sys
    import lth.runs.files
    pattern, nth, sig = sys.argv[1], int(sys.argv[2]), getattr(signal, sys.argv[3])
    del sys.argv[1:4]
    seen = 0

    class Os:
        def __getattr__(self, name):
            return getattr(os, name)

        def fsync(self, fd):
            global seen
            if fnmatch.fnmatch(os.readlink(f"/proc/self/fd/{fd}"), pattern):
                seen += 1
                if seen == nth:
                    if sig == signal.SIGKILL:
                        os.ftruncate(fd, os.fstat(fd).st_size // 2)
                    os.kill(os.getpid(), sig)
            os.fsync(fd)

    lth.runs.files.os = Os()
    sys.argv[0] = "lth.run"
    runpy.run_module("lth.run", run_name="__main__", alter_sys=True)
""")

# A signal from inside the process right after a file matching a glob is renamed into place:
# deterministic "the file has just appeared", however fast the run (a poller can miss a
# checkpoint that lives a fraction of a second).
SIGNAL_AFTER_RENAME = textwrap.dedent("""
    import fnmatch, os, runpy, signal, sys
    import lth.runs.files
    pattern, sig = sys.argv[1], getattr(signal, sys.argv[2])
    del sys.argv[1:3]

    class Os:
        def __getattr__(self, name):
            return getattr(os, name)

        def replace(self, src, dst):
            os.replace(src, dst)
            if fnmatch.fnmatch(os.path.abspath(dst), pattern):
                os.kill(os.getpid(), sig)

    lth.runs.files.os = Os()
    sys.argv[0] = "lth.run"
    runpy.run_module("lth.run", run_name="__main__", alter_sys=True)
""")

# (glob of the temporary file, which write of that kind)
IN_WRITE = [
    ("*/round_02/.checkpoint.pt.*.tmp", 2),   # replacing round 2's first epoch checkpoint
    ("*/round_02/.final.pt.*.tmp", 1),        # round 2 being saved: mask.pt written, final.pt torn
]
IN_WRITE_SLOW = [
    ("*/round_01/.checkpoint.pt.*.tmp", 1),   # the first checkpoint of the run
    ("*/round_01/.summary.json.*.tmp", 1),    # round 1's files all written but the summary
    ("*/.config.json.*.tmp", 1), ("*/.init.pt.*.tmp", 1), ("*/round_03/.mask.pt.*.tmp", 1),
    ("*/round_03/.metrics.jsonl.*.tmp", 1), ("*/round_03/.checkpoint.pt.*.tmp", 1),
]


def _kill_in_write(tmp_path, reference, pattern, nth):
    proc = start([pattern, str(nth), "SIGKILL", *ARGS], cwd=tmp_path, code=KILL_IN_WRITE)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err
    run_dir = only_run_dir(tmp_path / "runs")
    torn = temp_files(run_dir)
    assert len(torn) == 1 and Path(torn[0]).match(pattern.replace("*/", "", 1)), torn
    landed = state_after_kill(tmp_path / "runs")
    record_fault(f"SIGKILL inside write #{nth} of {pattern}", f"resumed identically ({landed})")
    err = resume_and_compare(tmp_path, reference)   # also: the torn temporary file is gone
    assert "left by a writer that was killed mid-write" in err


@pytest.mark.parametrize("pattern,nth", IN_WRITE)
def test_sigkill_inside_an_atomic_write_then_resume(tmp_path, reference, pattern, nth):
    _kill_in_write(tmp_path, reference, pattern, nth)


@pytest.mark.slow
@pytest.mark.parametrize("pattern,nth", IN_WRITE_SLOW)
def test_sigkill_inside_an_atomic_write_then_resume_more(tmp_path, reference, pattern, nth):
    _kill_in_write(tmp_path, reference, pattern, nth)


RNG_SEED = 20240601
# percent of the reference's time from init.pt on disk to its end, drawn once from a seeded RNG
DELAYS = random.Random(RNG_SEED).sample(range(80), 12)


def _kill_after(tmp_path, reference, percent):
    delay = reference["train_seconds"] * percent / 100
    proc = start(ARGS, cwd=tmp_path)
    assert wait_until(file_appears(tmp_path / "runs", "*/init.pt"), proc)
    try:
        proc.communicate(timeout=delay)
        finished = True  # it beat the clock (the machine got faster than for the reference)
    except subprocess.TimeoutExpired:
        finished = False
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    landed = "after it finished" if finished else state_after_kill(tmp_path / "runs")
    record_fault("SIGKILL after a seeded random delay", f"resumed identically ({landed})")
    resume_and_compare(tmp_path, reference)


@pytest.mark.parametrize("percent", DELAYS[:1])
def test_sigkill_after_a_random_delay_then_resume(tmp_path, reference, percent):
    _kill_after(tmp_path, reference, percent)


@pytest.mark.slow
@pytest.mark.parametrize("percent", DELAYS[1:])
def test_sigkill_after_a_random_delay_then_resume_more(tmp_path, reference, percent):
    _kill_after(tmp_path, reference, percent)


@pytest.mark.slow
def test_killed_three_times_then_finished(tmp_path, reference):
    for pattern in ("*/round_01/checkpoint.pt", "*/round_02/checkpoint.pt", "*/round_03/checkpoint.pt"):
        proc = start(ARGS, cwd=tmp_path)
        assert wait_until(file_appears(tmp_path / "runs", pattern), proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    record_fault("SIGKILL three times in one run", "resumed identically")
    resume_and_compare(tmp_path, reference)


@pytest.mark.slow
@pytest.mark.parametrize("extra", [["--rewind-step", "60"], ["--criterion", "random"],
                                   ["--scope", "global", "--schedule", "iterative", "--layer-rate"]],
                         ids=["late-rewinding", "random-pruning", "global-iterative"])
def test_sigkill_with_other_settings_then_resume(tmp_path, extra):
    """Resuming restores what these settings add: W_k and the loader position (rewind.pt,
    from 60 dense steps; each round then trains steps 60..131, its first checkpoint after the
    partial epoch at step 88), the random-pruning generator, a global threshold."""
    argv = [*ARGS, *extra]
    ref_cwd = tmp_path / "ref"
    ref_cwd.mkdir()
    assert cli(argv, cwd=ref_cwd).returncode == 0
    ref_dir = only_run_dir(ref_cwd / "runs")
    reference = {"dir": ref_dir, "name": ref_dir.name}
    for pattern in ("*/round_01/checkpoint.pt", "*/round_02/checkpoint.pt"):
        cwd = tmp_path / pattern.split("/")[1]
        cwd.mkdir()
        proc = start(argv, cwd=cwd)
        assert wait_until(file_appears(cwd / "runs", pattern), proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        landed = state_after_kill(cwd / "runs")
        record_fault(f"SIGKILL when {pattern} appears, with {' '.join(extra)}", f"resumed identically ({landed})")
        resume_and_compare(cwd, reference, argv)


# ---- SIGINT -----------------------------------------------------------------------------------

def _check_interrupted(proc, err):
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert len(lines) == 1 and err.strip().splitlines()[-1] == lines[0], err
    assert "--resume" in lines[0] and "runs/" in lines[0] and "run the same command again" in lines[0]
    return lines[0]


@pytest.mark.parametrize("pattern", ["*/round_02/checkpoint.pt",
                                     pytest.param("*/round_01/checkpoint.pt", marks=pytest.mark.slow),
                                     pytest.param("*/round_01/summary.json", marks=pytest.mark.slow)])
def test_sigint_stops_cleanly_and_resume_finishes(tmp_path, reference, pattern):
    proc = start([pattern, "SIGINT", *ARGS], cwd=tmp_path, code=SIGNAL_AFTER_RENAME)
    _, err = proc.communicate(timeout=120)
    line = _check_interrupted(proc, err)
    run_dir = only_run_dir(tmp_path / "runs")
    assert temp_files(run_dir) == [] and (run_dir / ".lock").read_text() == ""  # lock released
    record_fault(f"SIGINT when {pattern} appears", f"exit 130, one line; {state_after_kill(tmp_path / 'runs')}")
    # resume as the message says
    resume_dir = line.split("--resume ")[1].split(")")[0].strip()
    assert Path(tmp_path / resume_dir).resolve() == run_dir.resolve()
    resume_and_compare(tmp_path, reference, ["--resume", resume_dir])


def test_sigint_inside_a_checkpoint_write(tmp_path, reference):
    """Ctrl-C in the middle of an atomic write: exit 130, no temporary file left behind."""
    proc = start(["*/round_02/.checkpoint.pt.*.tmp", "1", "SIGINT", *ARGS], cwd=tmp_path, code=KILL_IN_WRITE)
    _, err = proc.communicate(timeout=300)
    _check_interrupted(proc, err)
    run_dir = only_run_dir(tmp_path / "runs")
    assert temp_files(run_dir) == [] and not (run_dir / "round_02" / "checkpoint.pt").exists()
    record_fault("SIGINT inside a checkpoint write", "exit 130, one line, no temp file; resumed identically")
    resume_and_compare(tmp_path, reference)


# ---- unusable run root, full disk -------------------------------------------------------------

@pytest.mark.parametrize("where", ["--runs-root", pytest.param("--run-dir", marks=pytest.mark.slow)])
def test_run_root_under_a_regular_file_is_a_one_line_error(tmp_path, where):
    (tmp_path / "afile").write_text("not a folder")
    before = snapshot(tmp_path)
    proc = cli([*TINY, where, "afile/runs"], cwd=tmp_path)
    assert_one_line_error(proc, "afile/runs")
    assert snapshot(tmp_path) == before
    record_fault(f"unusable {where} (under a regular file)", "one-line error, exit 2")


def _fsize_limit(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_during_a_round_keeps_finished_rounds_and_resumes(tmp_path, reference):
    # a run that has finished round 1: the reference's config, W0 and round 1
    run_dir = tmp_path / "runs" / reference["name"]
    run_dir.mkdir(parents=True)
    for name in ("config.json", "init.pt"):
        shutil.copy2(reference["dir"] / name, run_dir / name)
    shutil.copytree(reference["dir"] / "round_01", run_dir / "round_01")
    before = snapshot(run_dir)
    # every file may hold 300 kB: enough for init.pt and round 1's files, not for a checkpoint
    proc = cli(ARGS, cwd=tmp_path, preexec_fn=_fsize_limit(300_000))
    line = assert_one_line_error(proc, "cannot write", str(Path("runs") / reference["name"] / "round_02"),
                                 "earlier results are intact", only_line=False)
    assert "File too large" in line or "disk full" in line
    after = snapshot(run_dir)
    assert {k: v for k, v in after.items() if k != ".lock"} == before   # round 1 untouched
    store = RunStore(run_dir)
    assert store.finished_rounds() == [1] and temp_files(run_dir) == []
    store.load_mask(1), store.load_final(1), store.load_init(), store.load_metrics(1), store.load_summary(1)
    record_fault("full disk (RLIMIT_FSIZE 300 kB) in round 2", "one-line error, exit 2, round 1 intact")
    resume_and_compare(tmp_path, reference)


@pytest.mark.slow
def test_full_disk_from_the_start(tmp_path, reference):
    proc = cli(ARGS, cwd=tmp_path, preexec_fn=_fsize_limit(100))
    assert_one_line_error(proc, "cannot write", "config.json", only_line=False)
    assert temp_files(tmp_path) == []
    record_fault("full disk (RLIMIT_FSIZE 100 B) at the start", "one-line error, exit 2")
    resume_and_compare(tmp_path, reference)


# ---- bad input --------------------------------------------------------------------------------

UNKNOWN_KEY = {"prune": {"roundz": 3}}

# (id, argv, strings the error line must contain, slow?)
BAD_INPUT = [
    ("unknown schedule", ["--schedule", "nope"], ["schedule", "'nope'"], False),
    ("unknown model", ["--model", "nope"], ["model", "'nope'"], False),
    ("unknown dataset", ["--dataset", "nope"], ["dataset", "'nope'"], False),
    ("unknown preset", ["--preset", "nope"], ["--preset", "'nope'"], False),
    ("final-sparsity 1.0", ["--final-sparsity", "1.0"], ["--final-sparsity", "1.0"], False),
    ("final-sparsity -0.1", ["--final-sparsity", "-0.1"], ["--final-sparsity", "-0.1"], False),
    ("rounds 0", ["--rounds", "0"], ["--rounds", "0"], False),
    ("epochs abc", ["--epochs", "abc"], ["--epochs", "'abc'"], False),
    ("epochs -1", ["--epochs", "-1"], ["--epochs", "-1"], False),
    ("steps -5", ["--steps", "-5"], ["--steps", "-5"], False),
    ("alpha abc", ["--alpha", "abc"], ["--alpha", "'abc'"], False),
    ("rewind-step beyond the budget", ["--rewind-step", "1000"],
     ["--rewind-step 1000", f"{STEPS_PER_ROUND} steps"], False),
    ("config file with an unknown key", ["--config", "unknown_key.json"], ["unknown_key.json", "'roundz'"], False),
    ("exclude every weight", ["--exclude", "*"], ["'*'"], False),
    ("unknown scope", ["--scope", "nope"], ["--scope", "'nope'"], True),
    ("final-sparsity 0", ["--final-sparsity", "0"], ["--final-sparsity", "0"], True),
    ("rounds abc", ["--rounds", "abc"], ["--rounds", "'abc'"], True),
    ("epochs inf", ["--epochs", "inf"], ["--epochs", "inf"], True),
    ("alpha nan", ["--alpha", "nan"], ["--alpha", "nan"], True),
    ("batch-size beyond the data", ["--batch-size", "5000"], ["5000"], True),
    ("unknown flag", ["--no-such-flag"], ["--no-such-flag"], True),
    ("config file that is not JSON", ["--config", "broken.json"], ["broken.json", "not valid JSON"], True),
    ("config file missing", ["--config", "missing.json"], ["missing.json"], True),
    ("resume of a missing run", ["--resume", "runs/nope"], ["runs/nope"], True),
    ("resume of a folder that is no run", ["--resume", "empty"], ["empty", "config.json"], True),
    ("unknown device", ["--device", "tpu"], ["'tpu'"], True),
]
BAD_BY_NAME = {case[0]: case for case in BAD_INPUT}


@pytest.fixture(scope="module")
def bad_input_results(request, tmp_path_factory):
    """The bad-input processes of the selected tests, two at a time, each in its own folder
    holding the input files it may name."""
    base = tmp_path_factory.mktemp("bad_input")
    selected = [item.callspec.params["name"] for item in request.session.items
                if item.originalname == "test_bad_input_is_a_one_line_error_and_creates_nothing"]

    def one(name):
        _, argv, _, _ = BAD_BY_NAME[name]
        cwd = base / name.replace(" ", "_")
        cwd.mkdir()
        (cwd / "unknown_key.json").write_text(json.dumps(UNKNOWN_KEY))
        (cwd / "broken.json").write_text("{not json")
        (cwd / "empty").mkdir()
        before = snapshot(cwd)
        # --resume takes the run's saved config: --preset with it is refused first, so it goes alone
        base_argv = ["--no-progress"] if "--resume" in argv else [*TINY, "--runs-root", "runs"]
        proc = cli([*base_argv, *argv], cwd=cwd)
        return name, (proc, before, snapshot(cwd), cwd)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return dict(pool.map(one, selected))


@pytest.mark.parametrize("name", [pytest.param(c[0], marks=[pytest.mark.slow] if c[3] else [], id=c[0])
                                  for c in BAD_INPUT])
def test_bad_input_is_a_one_line_error_and_creates_nothing(bad_input_results, name):
    _, argv, needles, _ = BAD_BY_NAME[name]
    proc, before, after, cwd = bad_input_results[name]
    assert_one_line_error(proc, *needles)
    assert proc.stdout == ""
    assert not (cwd / "runs").exists() and after == before   # NOTHING created
    record_fault(f"bad input: {name}", "one-line error, exit 2, nothing created")


# ---- corrupted files --------------------------------------------------------------------------

@pytest.mark.parametrize("victim", ["round_02/mask.pt", pytest.param("init.pt", marks=pytest.mark.slow),
                                    pytest.param("round_03/checkpoint.pt", marks=pytest.mark.slow)])
def test_corrupted_file_is_named_on_resume(tmp_path, reference, victim):
    run_dir = tmp_path / "runs" / reference["name"]
    shutil.copytree(reference["dir"], run_dir)
    shutil.rmtree(run_dir / "round_03")             # round 3 unfinished: it needs m_2 and W0
    if victim == "round_03/checkpoint.pt":          # ... and has an epoch checkpoint
        (run_dir / "round_03").mkdir()
        shutil.copy2(reference["dir"] / "round_01" / "final.pt", run_dir / victim)
    runhelpers.flip_bytes(run_dir / victim)
    before = snapshot(run_dir)
    proc = cli(ARGS, cwd=tmp_path)
    assert_one_line_error(proc, str(Path("runs") / reference["name"] / victim), "corrupted", only_line=False)
    assert {k: v for k, v in snapshot(run_dir).items() if k != ".lock"} == \
        {k: v for k, v in before.items() if k != ".lock"}
    record_fault(f"flipped bytes in {victim}, then resume", "one-line error naming the file, exit 2")


# ---- conflicting config, two processes --------------------------------------------------------

@pytest.mark.parametrize("how", [["--run-dir", "RUN", "--lr", "0.01"],
                                 pytest.param(["--resume", "RUN", "--rounds", "5"], marks=pytest.mark.slow),
                                 pytest.param(["--config", "other.json", "--run-dir", "RUN"], marks=pytest.mark.slow)])
def test_conflicting_config_for_an_existing_run_changes_nothing(tmp_path, reference, how):
    run_dir = tmp_path / "old"
    shutil.copytree(reference["dir"], run_dir)
    shutil.rmtree(run_dir / "round_03")             # unfinished, so a wrong resume would write
    (tmp_path / "other.json").write_text(json.dumps({"prune": {"schedule": "agp"}}))
    time.sleep(0.01)
    before = snapshot(run_dir)
    argv = [a.replace("RUN", str(run_dir)) for a in how]
    proc = cli([*(["--no-progress"] if "--resume" in argv else TINY), *argv], cwd=tmp_path)
    assert_one_line_error(proc, str(run_dir), "different config", "nothing was changed")
    assert snapshot(run_dir) == before              # bytes and mtimes, .lock included
    assert not (tmp_path / "runs").exists()
    record_fault(f"conflicting config ({how[0]} ... {how[-2]})", "one-line error, exit 2, old run unchanged")


def test_second_process_on_a_run_is_refused_with_the_holders_pid(tmp_path, reference):
    first = start(ARGS, cwd=tmp_path)
    try:
        assert wait_until(file_appears(tmp_path / "runs", "*/round_01/checkpoint.pt"), first)
        first.send_signal(signal.SIGSTOP)            # hold it mid-run, lock taken, for as long as we need
        run_dir = only_run_dir(tmp_path / "runs")
        assert (run_dir / ".lock").read_text() == str(first.pid)
        before = snapshot(run_dir)
        second = cli(ARGS, cwd=tmp_path)
        assert_one_line_error(second, f"pid {first.pid}", str(Path("runs") / reference["name"]), "in use",
                              only_line=False)
        assert snapshot(run_dir) == before
        third = cli(["--resume", str(run_dir)], cwd=tmp_path)
        assert_one_line_error(third, f"pid {first.pid}", only_line=False)
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert_same_run(reference["dir"], run_dir)
    record_fault("second lth.run on a locked run (x2: same command, --resume)", "refused with the holder's pid")
