"""The run directory: one module owns its layout, and every write and read goes through it.

    runs/<dataset>-<model>-<schedule>-<hash8>/
      config.json            resolved config, versions, git commit, device
      provenance.diff        `git diff HEAD` of a dirty checkout, when create() is given one (lth.runs.provenance)
      init.pt                W0 (model state: weights and BatchNorm buffers)
      rewind.pt              W_k and the loader position, with --rewind-step k (lth.lottery.rewinding)
      round_01/ mask.pt final.pt loader.pt metrics.jsonl summary.json   (checkpoint.pt while running;
                             loader.pt: the data order's position at the round's end, which the
                             next prune-retrain phase continues from)
      stability/round_01/<kind>/<copy settings>/ copy_a.pt copy_b.pt interpolation-<probe settings>.json
                             (written by the analysis package; analysis/settings.py names them)

Guarantees (docs/DESIGN.md §7): every file is written to a temporary name in the same folder,
flushed, fsynced and renamed, and the folder is fsynced after the rename (and after creating a
folder), so a reader sees the old file or the new one, never half of one, and a finished write
survives a power failure. Temporary names carry the writer's pid and host
(`.<name>.<pid>@<host>.tmp`); the cleanup of a killed writer's leftovers removes only this
host's files of dead pids, and only in the folders of whoever cleans (the run: root and rounds;
the analysis: the stability folder it holds the lock of). A round is done only when its
summary.json exists (written last). Tensor files carry a SHA-256 of their contents,
recorded at write time and checked at read time, and are read with `weights_only=True`, so a
corrupted file is reported with its path and a crafted pickle cannot run code. One process at
a time writes a run: `RunStore.lock()` holds an flock on `.lock` (released by the kernel when
the holder dies, so a stale lock is simply taken over).
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

from lth.config import RunConfig
from lth.errors import LthError

log = logging.getLogger(__name__)

FORMAT = "lth-tensors/1"
# The folders of a run the IMP driver writes: the root and round_RR/. stability/ is the
# analysis's, under its own locks, so the run's cleanup must not touch it.
RUN_SUBTREES = ("", "round_*")


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

class RunStore:
    """Paths and reads/writes of one run directory."""

    def __init__(self, root):
        self.root = Path(root)

    # layout
    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def init_path(self) -> Path:
        return self.root / "init.pt"

    @property
    def rewind_path(self) -> Path:
        return self.root / "rewind.pt"

    @property
    def provenance_path(self) -> Path:
        return self.root / "provenance.diff"

    def round_dir(self, r: int) -> Path:
        return self.root / f"round_{r:02d}"

    def mask_path(self, r: int) -> Path:
        return self.round_dir(r) / "mask.pt"

    def final_path(self, r: int) -> Path:
        return self.round_dir(r) / "final.pt"

    def metrics_path(self, r: int) -> Path:
        return self.round_dir(r) / "metrics.jsonl"

    def loader_path(self, r: int) -> Path:
        return self.round_dir(r) / "loader.pt"

    def summary_path(self, r: int) -> Path:
        return self.round_dir(r) / "summary.json"

    def checkpoint_path(self, r: int) -> Path:
        return self.round_dir(r) / "checkpoint.pt"

    def stability_dir(self, r: int, kind: str) -> Path:
        return self.root / "stability" / f"round_{r:02d}" / kind

    @contextlib.contextmanager
    def stability_lock(self, r: int, kind: str, wait: bool = True) -> Iterator[bool]:
        """folder_lock on stability_dir(r, kind): one process at a time fills that folder. The
        holder first removes the stale temporary files of that folder (the run's own cleanup,
        remove_stale_temp_files, leaves stability/ alone: it is not under the run's lock)."""
        folder = self.stability_dir(r, kind)
        with folder_lock(folder, wait) as held:
            if held:
                for path in remove_stale_temp_files(folder):
                    log.info("removed %s, left by a writer that was killed mid-write", path)
            yield held

    # queries
    def is_run(self) -> bool:
        return self.config_path.exists()

    def round_done(self, r: int) -> bool:
        return self.summary_path(r).exists()

    def finished_rounds(self) -> List[int]:
        rounds = []
        for d in sorted(self.root.glob("round_*")):
            if d.name[6:].isdigit() and (d / "summary.json").exists():
                rounds.append(int(d.name[6:]))
        return rounds

    def config(self) -> dict:
        """The whole config.json: {'config': ..., 'hash': ..., 'versions': ..., ...}."""
        return read_json(self.config_path)

    def run_config(self) -> RunConfig:
        """The run's config as config.json records it (an unknown key is a one-line error)."""
        return RunConfig.from_dict(self.config()["config"], where=str(self.config_path))

    # writes
    def make_root(self) -> None:
        """Create the (empty) run directory, so its lock can be taken before anything is written."""
        try:
            make_dirs(self.root)
        except OSError as e:
            raise LthError(f"cannot create run directory {self.root}: {e.strerror}") from None

    def create(self, meta: dict, provenance_diff: Optional[bytes] = None) -> None:
        """Write config.json (the run's identity) if the run is new. provenance_diff
        (lth.runs.provenance.Provenance.diff) goes to provenance.diff first, so that a config.json
        that exists always has the diff it refers to beside it."""
        self.make_root()
        if not self.config_path.exists():
            if provenance_diff is not None:
                atomic_write_bytes(self.provenance_path, provenance_diff)
            write_json(self.config_path, meta)

    def lock(self):
        return run_lock(self.root)

    def remove_stale_temp_files(self) -> List[Path]:
        """Stale temporary files of the IMP driver's folders (call under lock()); stability/ is
        left to stability_lock, which cleans its own folder under its own lock."""
        return remove_stale_temp_files(self.root, RUN_SUBTREES)

    def save_init(self, state: dict) -> None:
        save_tensors(self.init_path, state)

    def save_rewind(self, state: dict) -> None:
        save_tensors(self.rewind_path, state)

    def save_checkpoint(self, r: int, state: dict) -> None:
        save_tensors(self.checkpoint_path(r), state)

    def save_round(self, r: int, mask: dict, final: dict, metrics: List[dict], summary: dict,
                   loader: Optional[dict] = None) -> None:
        """The round's artefacts; summary.json last, since its presence marks the round done."""
        save_tensors(self.mask_path(r), mask)
        save_tensors(self.final_path(r), final)
        if loader is not None:
            save_tensors(self.loader_path(r), loader)
        write_jsonl(self.metrics_path(r), metrics)
        write_json(self.summary_path(r), summary)
        self.discard_checkpoint(r)

    def discard_checkpoint(self, r: int) -> None:
        """Remove round r's epoch checkpoint (once the round is done it is dead weight)."""
        with contextlib.suppress(FileNotFoundError):
            self.checkpoint_path(r).unlink()

    # reads
    def load_init(self) -> dict:
        return load_tensors(self.init_path)

    def load_rewind(self) -> dict:
        return load_tensors(self.rewind_path)

    def load_mask(self, r: int) -> dict:
        return load_tensors(self.mask_path(r))

    def load_final(self, r: int) -> dict:
        return load_tensors(self.final_path(r))

    def load_loader(self, r: int) -> Optional[dict]:
        """The training loader's position at round r's end (None: a round saved before lth kept it)."""
        return load_tensors(self.loader_path(r)) if self.loader_path(r).exists() else None

    def load_summary(self, r: int) -> dict:
        return read_json(self.summary_path(r))

    def load_metrics(self, r: int) -> List[dict]:
        return read_jsonl(self.metrics_path(r))

    def load_checkpoint(self, r: int) -> Optional[dict]:
        return load_tensors(self.checkpoint_path(r)) if self.checkpoint_path(r).exists() else None


def run_name(cfg: RunConfig) -> str:
    """The run directory's name: <dataset>-<model>-<schedule>-<hash8 of the normalised config>."""
    return f"{name_part(cfg.data.dataset)}-{name_part(cfg.model.model)}-{cfg.prune.schedule}-{cfg.hash()}"


NAME_PART_LIMIT = 48   # characters of a spec kept in a run name (the hash keeps names unique)


def name_part(text: str) -> str:
    """A dataset or model name as a path component (issue 21): a spec's folder or file keeps
    only its last part (imagefolder:/data/birds -> imagefolder_birds), ':' and anything not
    [A-Za-z0-9_.,=+] becomes '_'. Built-in names pass unchanged."""
    if ":" not in text and "/" not in text:
        return text
    prefix, _, rest = text.rpartition(":") if text.count(":") == 1 else ("", "", text)
    rest = rest.rstrip("/").rsplit("/", 1)[-1]
    joined = f"{prefix}_{rest}" if prefix else rest
    return re.sub(r"[^A-Za-z0-9_.,=+]", "_", joined)[:NAME_PART_LIMIT]


def open_run(path) -> RunStore:
    """A RunStore for an existing run, or an LthError saying why `path` is not one."""
    store = RunStore(path)
    if not store.root.is_dir():
        raise LthError(f"{path} is not a directory")
    if not store.is_run():
        raise LthError(f"{path} is not an lth run directory (no config.json)")
    return store
