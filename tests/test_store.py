"""lth.runs.store: atomic writes, checksummed tensor files loaded with weights_only=True, the run lock."""
import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch

from lth.runs import files, store
from lth.errors import LthError
from lth.runs.store import RunStore
from lth.runs.files import load_tensors, run_lock, save_tensors

import runhelpers


def payload():
    g = torch.Generator().manual_seed(0)
    return {"w": torch.randn(30, 20, generator=g), "mask": torch.rand(30, 20, generator=g) > 0.5,
            "ints": torch.arange(7, dtype=torch.int64), "half": torch.randn(5, generator=g).to(torch.bfloat16),
            "nested": {"a": [torch.ones(2), torch.zeros(3, dtype=torch.uint8)], "step": 12, "t": 0.25,
                       "name": "x", "none": None}, "rows": [{"epoch": 1, "acc": 0.5}]}


# ---- atomic writes ----------------------------------------------------------------------------

def test_atomic_writes_leave_no_temp_files(tmp_path):
    for i in range(3):
        files.write_json(tmp_path / "a.json", {"i": i})
        files.write_jsonl(tmp_path / "sub" / "m.jsonl", [{"i": i}, {"j": i}])
        save_tensors(tmp_path / "t.pt", {"x": torch.full((3,), float(i))})
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.json", "m.jsonl", "sub", "t.pt"]
    assert files.read_json(tmp_path / "a.json") == {"i": 2}
    assert files.read_jsonl(tmp_path / "sub" / "m.jsonl") == [{"i": 2}, {"j": 2}]
    assert torch.equal(load_tensors(tmp_path / "t.pt")["x"], torch.full((3,), 2.0))


def test_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "a.json"
    files.write_json(target, {"old": True})
    before = target.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(LthError) as e:
        files.write_json(target, {"new": True})
    assert str(target) in str(e.value) and "disk full" in str(e.value)
    assert target.read_bytes() == before
    assert runhelpers.temp_files(tmp_path) == []


def test_interrupted_write_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "t.pt"
    save_tensors(target, {"x": torch.ones(2)})

    def ctrl_c(fd):
        raise KeyboardInterrupt
    monkeypatch.setattr(files.os, "fsync", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        save_tensors(target, {"x": torch.zeros(2)})
    monkeypatch.undo()
    assert runhelpers.temp_files(tmp_path) == []
    assert torch.equal(load_tensors(target)["x"], torch.ones(2))


def test_write_into_a_regular_file_is_an_error_naming_the_path(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(LthError, match=str(tmp_path / "file" / "a.json")):
        files.write_json(tmp_path / "file" / "a.json", {})


# ---- durability: the folder is fsynced after a rename and after creating a folder ------------

def _record_fsyncs(monkeypatch):
    """Log every rename and every fsync of a directory, in order (files' fsyncs are not logged)."""
    events, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            events.append(("fsync dir", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        real_replace(src, dst)
        events.append(("rename", str(dst)))
    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    return events


def test_rename_is_followed_by_an_fsync_of_its_folder(tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()
    events = _record_fsyncs(monkeypatch)
    files.write_json(tmp_path / "run" / "a.json", {"x": 1})
    assert events == [("rename", str(tmp_path / "run" / "a.json")), ("fsync dir", str(tmp_path / "run"))]


def test_created_folders_are_made_durable_outermost_first(tmp_path, monkeypatch):
    events = _record_fsyncs(monkeypatch)
    save_tensors(tmp_path / "a" / "b" / "t.pt", {"x": torch.ones(1)})
    assert events == [("fsync dir", str(tmp_path)), ("fsync dir", str(tmp_path / "a")),
                      ("rename", str(tmp_path / "a" / "b" / "t.pt")), ("fsync dir", str(tmp_path / "a" / "b"))]
    events.clear()
    with files.folder_lock(tmp_path / "s" / "round_01"):   # the analysis's result folders too
        pass
    assert events == [("fsync dir", str(tmp_path)), ("fsync dir", str(tmp_path / "s"))]
    events.clear()
    RunStore(tmp_path / "runs" / "r").create({"v": 1})
    assert events[:2] == [("fsync dir", str(tmp_path)), ("fsync dir", str(tmp_path / "runs"))]


def _dir_fsync_fails(monkeypatch, code):
    real = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(code, os.strerror(code))
        return real(fd)
    monkeypatch.setattr(files.os, "fsync", fsync)


def test_a_file_system_that_cannot_fsync_folders_is_accepted(tmp_path, monkeypatch):
    _dir_fsync_fails(monkeypatch, errno.EINVAL)
    files.write_json(tmp_path / "sub" / "a.json", {"x": 1})
    assert files.read_json(tmp_path / "sub" / "a.json") == {"x": 1}


def test_a_failing_folder_fsync_is_an_error_naming_the_file(tmp_path, monkeypatch):
    _dir_fsync_fails(monkeypatch, errno.EIO)
    with pytest.raises(LthError, match=f"wrote {tmp_path / 'a.json'} but cannot make it durable"):
        files.write_json(tmp_path / "a.json", {"x": 1})
    assert runhelpers.temp_files(tmp_path) == []


# ---- stale temporary files: this host's, dead writers, the caller's folders only ---------------

def dead_pid() -> int:
    """The pid of a process that has exited and been reaped (subprocess.run waits for it)."""
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)


def temp(folder: Path, name: str, pid: int, host=None) -> Path:
    """A temporary file as a writer killed mid-write leaves it (host None: the old format)."""
    path = folder / (f".{name}.{pid}.tmp" if host is None else f".{name}.{pid}@{host}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half")
    return path


def test_temp_names_carry_pid_and_a_sanitised_host(tmp_path, monkeypatch):
    monkeypatch.setattr(files.socket, "gethostname", lambda: "node7.cluster.local")
    name = files.temp_name(tmp_path / "final.pt").name
    assert name == f".final.pt.{os.getpid()}@node7-cluster-local.tmp"
    assert files._temp_owner(Path(name)) == (os.getpid(), "node7-cluster-local")
    assert files._temp_owner(Path(".final.pt.123.tmp")) == (123, None)        # the old format
    for foreign in (".notes.tmp", ".a.x@h.tmp", ".a.12@.tmp", "a.12@h.tmp", ".a.12@h.tmp.bak"):
        assert files._temp_owner(Path(foreign)) is None
    monkeypatch.setattr(files.socket, "gethostname", lambda: "")
    assert files.temp_name(tmp_path / "a").name.endswith("@unknown.tmp")


def test_only_this_hosts_dead_writers_temp_files_are_removed(tmp_path):
    host, dead = files._host(), dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        removed = {temp(tmp_path / "round_01", "checkpoint.pt", dead, host),
                   temp(tmp_path, "init.pt", dead),                                  # old format: this host's
                   temp(tmp_path / "round_02", "mask.pt", dead)}
        kept = [temp(tmp_path, "config.json", dead, "other-host"),                 # its pids mean nothing here
                temp(tmp_path / "round_01", "final.pt", live.pid, host),            # a live writer
                temp(tmp_path / "round_01", "summary.json", live.pid),
                temp(tmp_path, "rewind.pt", os.getpid(), host),                     # ourselves
                tmp_path / ".notes.tmp"]
        kept[-1].write_text("not ours: no pid in the name")
        stability = temp(tmp_path / "stability" / "round_01" / "ticket" / "seed0", "copy_a.pt", dead, host)
        assert set(RunStore(tmp_path).remove_stale_temp_files()) == removed
        assert all(p.exists() for p in kept) and not any(p.exists() for p in removed)
        assert stability.exists()   # the analysis's folder: not the run's to clean
        assert files.remove_stale_temp_files(tmp_path, ("stability/**",)) == [stability]
    finally:
        live.kill()
        live.wait()


def test_a_stability_folder_is_cleaned_by_whoever_takes_its_lock(tmp_path):
    s = RunStore(tmp_path)
    dead, host = dead_pid(), files._host()
    stale = temp(s.stability_dir(3, "ticket") / "seed0", "copy_a.pt", dead, host)
    foreign = temp(s.stability_dir(3, "ticket") / "seed0", "copy_b.pt", dead, "other-host")
    elsewhere = temp(s.stability_dir(4, "ticket"), "x.json", dead, host)
    with s.stability_lock(3, "ticket") as held:
        assert held and not stale.exists() and foreign.exists() and elsewhere.exists()


# ---- tensor files -----------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    p = payload()
    save_tensors(tmp_path / "p.pt", p)
    back = load_tensors(tmp_path / "p.pt")
    assert runhelpers.tensors_equal(back["w"], p["w"]) and back["mask"].dtype == torch.bool
    assert torch.equal(back["mask"], p["mask"]) and torch.equal(back["half"], p["half"])
    assert torch.equal(back["nested"]["a"][1], p["nested"]["a"][1])
    assert back["nested"]["step"] == 12 and back["nested"]["none"] is None and back["rows"] == p["rows"]
    assert files.digest(back) == files.digest(p)


def test_round_trip_of_a_model_state_and_noncontiguous_tensors(tmp_path):
    from lth import models
    torch.manual_seed(0)
    model = models.build("lenet300_100", 10, 1, 8)
    state = model.state_dict()
    state["t"] = torch.randn(4, 6).t()  # a non-contiguous view
    save_tensors(tmp_path / "m.pt", state)
    assert runhelpers.tensors_equal(load_tensors(tmp_path / "m.pt"), state)


def test_missing_file_is_an_error_naming_the_path(tmp_path):
    with pytest.raises(LthError, match=f"{tmp_path / 'nope.pt'} is missing"):
        load_tensors(tmp_path / "nope.pt")


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file_is_reported_as_corrupted_with_its_path(tmp_path, keep):
    path = tmp_path / "round_01" / "mask.pt"
    save_tensors(path, payload())
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(LthError) as e:
        load_tensors(path)
    assert str(path) in str(e.value) and "corrupted" in str(e.value) and "\n" not in str(e.value)


def _offset_of_tensor_data(data: bytes, t: torch.Tensor) -> int:
    at = data.find(t.numpy().tobytes())
    assert at > 0
    return at


@pytest.mark.parametrize("where", ["tensor data", "start", "middle"])
def test_flipped_bytes_are_reported_as_corrupted_with_their_path(tmp_path, where):
    path = tmp_path / "final.pt"
    p = payload()
    save_tensors(path, p)
    data = bytearray(path.read_bytes())
    at = {"tensor data": _offset_of_tensor_data(bytes(data), p["w"]) + 100, "start": 0,
          "middle": len(data) // 2}[where]
    for i in range(at, min(at + 4, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(LthError) as e:
        load_tensors(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_flipped_bytes_anywhere_are_caught_or_harmless(tmp_path):
    """Flip 4 bytes at 64 places across the file: each load either fails with an LthError
    naming the file, or returns exactly what was saved (zip bookkeeping the reader ignores)."""
    path = tmp_path / "final.pt"
    p = payload()
    save_tensors(path, p)
    clean = path.read_bytes()
    caught = 0
    for k in range(64):
        data = bytearray(clean)
        at = k * (len(data) - 4) // 63
        for i in range(at, at + 4):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))
        try:
            back = load_tensors(path)
        except LthError as e:
            assert str(path) in str(e) and "\n" not in str(e)
            caught += 1
        else:
            assert files.digest(back) == files.digest(p), f"flip at {at} changed the payload unnoticed"
    assert caught >= 48, caught


def test_a_single_flipped_bit_in_the_data_fails_the_checksum(tmp_path):
    path = tmp_path / "final.pt"
    p = {"w": torch.linspace(-1, 1, 1000)}
    save_tensors(path, p)
    data = bytearray(path.read_bytes())
    data[_offset_of_tensor_data(bytes(data), p["w"]) + 2001] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(LthError, match="corrupted"):
        load_tensors(path)


def test_plain_torch_file_without_header_is_refused(tmp_path):
    torch.save({"w": torch.ones(3)}, tmp_path / "plain.pt")
    with pytest.raises(LthError, match=f"{tmp_path / 'plain.pt'} is not an lth tensor file"):
        load_tensors(tmp_path / "plain.pt")


class _Evil:
    marker = ""

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("wrapped", [False, True], ids=["bare", "inside-an-lth-header"])
def test_crafted_pickle_is_refused_and_does_not_run(tmp_path, wrapped):
    marker = Path(f"/tmp/pwned_lth_{uuid.uuid4().hex}")
    evil = _Evil()
    evil.marker = str(marker)
    path = tmp_path / "round_01" / "mask.pt"
    path.parent.mkdir()
    obj = {"format": files.FORMAT, "sha256": "0" * 64, "payload": {"w": evil}} if wrapped else evil
    torch.save(obj, path)
    # the file really is dangerous: an unsafe load would run the command
    assert b"system" in path.read_bytes()
    try:
        with pytest.raises(LthError) as e:
            load_tensors(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)
        assert not marker.exists(), "the crafted pickle ran code"
        with pytest.raises(LthError):
            RunStore(tmp_path).load_mask(1)
        assert not marker.exists()
    finally:
        marker.unlink(missing_ok=True)


# ---- the run directory ------------------------------------------------------------------------

def test_round_done_only_when_summary_exists_and_checkpoint_is_removed(tmp_path):
    s = RunStore(tmp_path / "run")
    s.create({"config": {}})
    s.save_checkpoint(1, {"step": 3})
    assert s.finished_rounds() == [] and s.load_checkpoint(1) == {"step": 3}
    s.save_round(1, {"m": torch.ones(2, dtype=torch.bool)}, {"w": torch.ones(2)}, [{"epoch": 1}], {"round": 1})
    assert s.finished_rounds() == [1] and not s.checkpoint_path(1).exists() and s.load_checkpoint(1) is None
    s.round_dir(2).mkdir()                      # a round folder without a summary is not done
    s.save_checkpoint(2, {"step": 1})
    assert s.finished_rounds() == [1]
    assert s.load_summary(1) == {"round": 1} and s.load_metrics(1) == [{"epoch": 1}]


def test_create_keeps_an_existing_config(tmp_path):
    s = RunStore(tmp_path / "run")
    s.create({"v": 1})
    s.create({"v": 2}, provenance_diff=b"diff")
    assert s.config() == {"v": 1} and not s.provenance_path.exists()


def test_create_writes_the_provenance_diff_before_config_json(tmp_path, monkeypatch):
    s, order, real = RunStore(tmp_path / "run"), [], files.atomic_write_bytes
    spy = lambda path, data: (order.append(path.name), real(path, data))  # noqa: E731
    monkeypatch.setattr(store, "atomic_write_bytes", spy)   # the store's own writes
    monkeypatch.setattr(files, "atomic_write_bytes", spy)   # and write_json's (lth.runs.files)
    s.create({"v": 1}, provenance_diff=b"diff --git a/x b/x\n")
    assert order == ["provenance.diff", "config.json"]
    assert s.provenance_path.read_bytes() == b"diff --git a/x b/x\n" and s.config() == {"v": 1}


def test_open_run_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(LthError, match="not a directory"):
        store.open_run(tmp_path / "nope")
    with pytest.raises(LthError, match="no config.json"):
        store.open_run(tmp_path)


def test_corrupted_json_is_an_error_naming_the_path(tmp_path):
    (tmp_path / "summary.json").write_text('{"round": 1')
    with pytest.raises(LthError, match=str(tmp_path / "summary.json")):
        files.read_json(tmp_path / "summary.json")
    (tmp_path / "m.jsonl").write_text('{"a": 1}\n{"b"\n')
    with pytest.raises(LthError, match=str(tmp_path / "m.jsonl")):
        files.read_jsonl(tmp_path / "m.jsonl")


# ---- the lock ---------------------------------------------------------------------------------

HOLD = textwrap.dedent("""
    import sys, time
    from lth.runs.files import run_lock
    with run_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(120)
""")

TRY = textwrap.dedent("""
    import sys
    from lth.errors import LthError
    from lth.runs.files import run_lock
    try:
        with run_lock(sys.argv[1]):
            print("acquired")
    except LthError as e:
        print(e)
""")


def test_second_holder_in_another_process_is_refused_with_our_pid(tmp_path):
    with run_lock(tmp_path):
        out = subprocess.run([sys.executable, "-c", TRY, str(tmp_path)], capture_output=True, text=True,
                             env=runhelpers.env(), timeout=120).stdout
        assert f"in use by another process (pid {os.getpid()})" in out, out
    out = subprocess.run([sys.executable, "-c", TRY, str(tmp_path)], capture_output=True, text=True,
                         env=runhelpers.env(), timeout=120).stdout
    assert "acquired" in out


def test_lock_of_a_live_process_refuses_and_of_a_killed_one_is_taken_over(tmp_path, caplog):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env=runhelpers.env())
    try:
        assert holder.stdout.readline().strip() == "held"
        assert (tmp_path / ".lock").read_text() == str(holder.pid)
        with pytest.raises(LthError, match=f"pid {holder.pid}"):
            with run_lock(tmp_path):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    runhelpers.record_fault("store: stale lock of a SIGKILLed holder", "taken over")
    assert (tmp_path / ".lock").read_text() == str(holder.pid)  # stale: the dead holder's pid remains
    with caplog.at_level("INFO", logger="lth.runs.files"):
        with run_lock(tmp_path):
            assert (tmp_path / ".lock").read_text() == str(os.getpid())
    assert f"from pid {holder.pid}" in caplog.text
    assert (tmp_path / ".lock").read_text() == ""  # released cleanly


def test_lock_in_an_unusable_folder_is_an_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(LthError, match="cannot create lock file"):
        with run_lock(tmp_path / "file"):
            pass
