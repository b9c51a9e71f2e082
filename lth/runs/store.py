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
import logging
import re
from pathlib import Path
from typing import Iterator, List, Optional


from lth.config import RunConfig
from lth.errors import LthError
from lth.runs.files import (atomic_write_bytes, folder_lock, load_tensors, make_dirs, read_json, read_jsonl,
                            remove_stale_temp_files, run_lock, save_tensors, write_json, write_jsonl)

log = logging.getLogger(__name__)

# The folders of a run the IMP driver writes: the root and round_RR/. stability/ is the
# analysis's, under its own locks, so the run's cleanup must not touch it.
RUN_SUBTREES = ("", "round_*")


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
