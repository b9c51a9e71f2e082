"""Durable files: atomic writes, JSON, checksummed tensor files, folder locks (docs/DESIGN.md §7).

Every file is written to a temporary name in the same folder, flushed, fsynced and renamed, and
the folder is fsynced after the rename, so a reader sees the old file or the new one, never half
of one. Tensor files carry a SHA-256 of their contents and are read with `weights_only=True`.
lth.runs.store lays a run directory out on top of these; lth.Pruner saves its masks with them.
"""
import contextlib
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import socket
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import torch

from lth.errors import LthError

log = logging.getLogger(__name__)

FORMAT = "lth-tensors/1"


# ---- atomic files ---------------------------------------------------------------------------

def _host() -> str:
    """This machine's name as it goes into temporary names: letters, digits, '-' and '_' only
    (no '.' or '@', which the name's parser splits on), at most 64 characters."""
    name = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:64]
    return name or "unknown"


def temp_name(path: Path) -> Path:
    """The temporary file atomic_write_bytes writes `path` through: `.<name>.<pid>@<host>.tmp`.
    The host tells writers on machines that share the file system apart (a pid means nothing on
    another machine); '@' keeps the name unambiguous next to the old `.<name>.<pid>.tmp`."""
    return path.with_name(f".{path.name}.{os.getpid()}@{_host()}.tmp")


def fsync_dir(folder: Path) -> None:
    """fsync a directory, so that the entries created or renamed in it survive a power failure
    (fsync of a file makes its contents durable, not its name). File systems that cannot fsync
    a directory (EINVAL, ENOTSUP: some network and FUSE file systems) are left at that."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


def make_dirs(folder: Path) -> None:
    """mkdir -p, then fsync the parent of every folder it created (outermost first), so that a
    durable file is never left in a folder whose own entry was lost. OSError passes through."""
    folder = Path(folder)
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for created in reversed(missing):
        try:
            created.mkdir()
        except FileExistsError:   # made meanwhile by another writer; a file there fails below
            if not created.is_dir():
                raise
        fsync_dir(created.parent)


def _reason(e: OSError) -> str:
    return "disk full" if e.errno == errno.ENOSPC else (e.strerror or str(e))


def _check_writer(path: Path) -> None:
    """Issue 22: only rank 0 of a data-parallel run writes (lth.runs.follower.FollowerStore for the
    others); a write from another rank is a bug, refused before it can race rank 0's."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        raise LthError(f"rank {dist.get_rank()} tried to write {path}: only rank 0 writes a data-parallel run")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically and durably: temporary file, fsync, rename, fsync of the
    folder. An OSError (full disk, no permission) becomes an LthError naming the path, and the
    old file, if any, is left as it was."""
    path = Path(path)
    _check_writer(path)
    tmp = temp_name(path)
    try:
        make_dirs(path.parent)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:  # OSError, and Ctrl-C in the middle of a write: leave no temp file
        with contextlib.suppress(OSError):
            tmp.unlink()
        if not isinstance(e, OSError):
            raise
        raise LthError(f"cannot write {path}: {_reason(e)}; earlier results are intact") from None
    try:
        fsync_dir(path.parent)   # the rename itself: without this a power failure can undo it
    except OSError as e:
        raise LthError(f"wrote {path} but cannot make it durable (fsync of {path.parent}: {_reason(e)})") from None


def _temp_owner(path: Path) -> Optional[Tuple[int, Optional[str]]]:
    """(pid, host) of a temporary name made by atomic_write_bytes: `.<name>.<pid>@<host>.tmp`,
    or (pid, None) for the old `.<name>.<pid>.tmp` (before hosts were recorded); else None."""
    parts = path.name.split(".")
    if len(parts) < 4 or parts[0] != "" or parts[-1] != "tmp":
        return None
    pid, at, host = parts[-2].partition("@")
    if not pid.isdigit() or (at and not host):
        return None
    return int(pid), host or None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_files(folder: Path, subtrees: Sequence[str] = ("**",)) -> List[Path]:
    """Delete the temporary files that writers killed mid-write (SIGKILL, power loss) left in
    `folder`; returns those deleted. Only files of this host whose writer's pid is no longer
    running go: another machine's pids cannot be checked from here, so its files stay (a name
    without a host predates hosts and counts as this host's). `subtrees`: the folders scanned,
    each for its own files, as glob patterns relative to `folder` ("" is `folder` itself, "**"
    it and every folder below it)."""
    folder, host, removed, folders = Path(folder), _host(), [], set()
    for pattern in subtrees:
        folders.update([folder] if pattern == "" else folder.glob(pattern))
    for d in sorted(f for f in folders if f.is_dir()):
        for path in sorted(d.glob(".*.tmp")):
            owner = _temp_owner(path)
            if owner is None or owner[1] not in (None, host) or owner[0] == os.getpid() or _alive(owner[0]):
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise LthError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LthError(f"{path} is corrupted (not valid JSON: {e})") from None


def write_jsonl(path: Path, rows: List[dict]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())


def read_jsonl(path: Path) -> List[dict]:
    try:
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise LthError(f"{path} is missing") from None
    except json.JSONDecodeError as e:
        raise LthError(f"{path} is corrupted (not valid JSON lines: {e})") from None


# ---- checksummed tensor files ---------------------------------------------------------------

def digest(obj: Any) -> str:
    """SHA-256 over a nest of dicts, lists, tensors and scalars, in a canonical order."""
    h = hashlib.sha256()

    def visit(x):
        if torch.is_tensor(x):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(x, dict):
            h.update(b"D")
            for k in sorted(x, key=str):
                h.update(repr(k).encode())
                visit(x[k])
        elif isinstance(x, (list, tuple)):
            h.update(b"L")
            for v in x:
                visit(v)
        else:
            h.update(repr(x).encode())
    visit(obj)
    return h.hexdigest()


def save_tensors(path: Path, payload: Any) -> None:
    """torch.save {format, sha256, payload} atomically (plain tensors and containers only)."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "sha256": digest(payload), "payload": payload}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_tensors(path: Path, map_location="cpu") -> Any:
    """Load a file written by save_tensors: weights_only=True, checksum verified."""
    path = Path(path)
    if not path.exists():
        raise LthError(f"{path} is missing")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, a refused global: all one failure
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LthError(f"{path} is corrupted or not an lth file (refused to load: {first[:160]})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or "payload" not in blob:
        raise LthError(f"{path} is not an lth tensor file (no {FORMAT} header)")
    if digest(blob["payload"]) != blob.get("sha256"):
        raise LthError(f"{path} is corrupted (checksum mismatch with the one recorded when it was written)")
    return blob["payload"]


# ---- the lock -------------------------------------------------------------------------------

@contextlib.contextmanager
def _flock(folder: Path, on_busy: str) -> Iterator[bool]:
    """An exclusive flock on folder/.lock holding this process's pid. When another process
    holds it: on_busy="refuse" raises an LthError naming the holder's pid, "wait" blocks until
    it is free, "skip" yields False at once. The kernel releases a dead holder's lock, so a
    stale lock file is simply taken over."""
    path = Path(folder) / ".lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise LthError(f"cannot create lock file {path}: {e.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            if on_busy == "refuse":
                raise LthError(f"{folder} is in use by another process (pid {holder}); wait for it or stop it") from None
            if on_busy == "skip":
                yield False
                return
            log.info("%s is in use by pid %s; waiting for it to finish", folder, holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            previous = os.pread(fd, 64, 0).decode(errors="replace").strip()
            if previous and previous != str(os.getpid()):
                log.info("took over the lock of %s from pid %s, which is no longer running", folder, previous)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield True
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold the run's lock; refuse with the holder's pid if another process has it."""
    with _flock(folder, "refuse"):
        yield


@contextlib.contextmanager
def folder_lock(folder: Path, wait: bool = True) -> Iterator[bool]:
    """The lock of a folder that several processes may want to fill with the same results
    (the stability analysis). Creates the folder. It does not refuse: with wait=True it blocks
    until the holder is done (the waiter then finds the holder's results and reuses them) and
    yields True; with wait=False it yields False at once when the lock is taken, so the caller
    can do other work first and come back."""
    try:
        make_dirs(folder)
    except OSError as e:
        raise LthError(f"cannot create {folder}: {e.strerror}") from None
    with _flock(folder, "wait" if wait else "skip") as held:
        yield held


# ---- the run directory ----------------------------------------------------------------------
