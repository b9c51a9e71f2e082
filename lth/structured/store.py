"""The directory of one structured run (writes through lth.runs.store: atomic, checksummed).

    runs/structured/<dataset>-<model>-ch-<method>-<hash8>/
      structured.json   resolved config, hash, provenance (versions, git commit), dataset shape
      provenance.diff   the uncommitted changes of the code, when there were any
      checkpoint.pt     after every epoch but the last (resume); removed when the run is done
      epochs.jsonl      one record per epoch: losses, accuracy, lr; OCSPruner: J, psi, lambda,
                        candidate FLOPs reduction, kept channels per group (counts and indices)
      pruned.pt         the exported network (lth.structured.export)
      summary.json      written last: its presence marks the run done (never overwritten)

The config file is not called config.json, so `python -m lth.runs` (IMP runs) skips these.
"""
import contextlib
from pathlib import Path
from typing import List, Optional

from lth.errors import LthError
from lth.runs.files import (atomic_write_bytes, folder_lock, load_tensors, make_dirs, read_json, read_jsonl,
                            remove_stale_temp_files, save_tensors, write_json, write_jsonl)


class StructuredStore:
    def __init__(self, root):
        self.root = Path(root)

    @property
    def meta_path(self) -> Path:
        return self.root / "structured.json"

    @property
    def checkpoint_path(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def epochs_path(self) -> Path:
        return self.root / "epochs.jsonl"

    @property
    def export_path(self) -> Path:
        return self.root / "pruned.pt"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    def exists(self) -> bool:
        return self.meta_path.exists()

    def done(self) -> bool:
        return self.summary_path.exists()

    def meta(self) -> dict:
        if not self.exists():
            raise LthError(f"{self.root} is not a structured run directory (no structured.json)")
        return read_json(self.meta_path)

    def create(self, meta: dict, provenance_diff: Optional[bytes] = None) -> None:
        """structured.json (and provenance.diff when the code had uncommitted changes), once."""
        try:
            make_dirs(self.root)
        except OSError as e:
            raise LthError(f"cannot create run directory {self.root}: {e.strerror}") from None
        if not self.exists():
            if provenance_diff is not None:
                atomic_write_bytes(self.root / "provenance.diff", provenance_diff)
            write_json(self.meta_path, meta)

    @contextlib.contextmanager
    def lock(self):
        """One process writes a run at a time; a second one is refused (not queued)."""
        with folder_lock(self.root, wait=False) as held:
            if not held:
                raise LthError(f"{self.root} is in use by another process; wait for it or stop it")
            remove_stale_temp_files(self.root)
            yield

    def save_checkpoint(self, state: dict) -> None:
        save_tensors(self.checkpoint_path, state)

    def load_checkpoint(self) -> Optional[dict]:
        return load_tensors(self.checkpoint_path) if self.checkpoint_path.exists() else None

    def write_epochs(self, records: List[dict]) -> None:
        write_jsonl(self.epochs_path, records)

    def epochs(self) -> List[dict]:
        return read_jsonl(self.epochs_path)

    def finish(self, summary: dict) -> None:
        write_json(self.summary_path, summary)
        with contextlib.suppress(FileNotFoundError):
            self.checkpoint_path.unlink()

    def summary(self) -> dict:
        return read_json(self.summary_path)
