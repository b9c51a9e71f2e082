"""Decoded datasets cached as uint8 arrays beside their source files, built once.

Caltech-101 is 9,144 JPEGs of assorted sizes; decoding and resizing them with PIL on every load
costs minutes, a study of 216 runs would pay it 216 times. So the first load writes
`<data_dir>/caltech101/lth-cache-224px.npz` (uint8 images N x 3 x 224 x 224, about 1.3 GB,
labels, and a fingerprint of the source files), and later loads read it (seconds).

The fingerprint covers every source file's relative path, size and modification time, and the
decoding settings: a changed, added or removed image, or another size, rebuilds the cache. The
cache is written to a temporary name, fsynced and renamed, so a killed writer never leaves a
half-written cache under the final name. A folder that cannot be written (a read-only shared
copy) still loads, by decoding, with a warning.
"""
import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable, Iterable, Tuple

import numpy as np

log = logging.getLogger(__name__)

FORMAT = "lth-image-cache/1"


def fingerprint(root: Path, files: Iterable[Path], settings: str) -> str:
    """SHA-256 over the settings and each file's path (relative to root), size and mtime."""
    h = hashlib.sha256(f"{FORMAT}|{settings}".encode())
    for path in files:
        st = os.stat(path)
        h.update(f"|{Path(path).relative_to(root)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def cached_arrays(path: Path, stamp: str, build: Callable[[], Tuple[np.ndarray, np.ndarray]]
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """(images, labels) from the cache at `path` when its fingerprint is `stamp`, else built by
    `build()` and cached there."""
    path = Path(path)
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as saved:
                meta = json.loads(str(saved["meta"]))
                if meta.get("format") == FORMAT and meta.get("fingerprint") == stamp:
                    log.info("loaded %s", path)
                    return saved["x"], saved["y"]
            log.info("%s is out of date (its source files or settings changed): rebuilding it", path)
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
            log.warning("%s is unreadable (%s): rebuilding it", path, type(e).__name__)
    x, y = build()
    try:
        _write(path, x, y, stamp)
        log.info("cached the decoded images in %s", path)
    except OSError as e:
        log.warning("cannot write the cache %s (%s); the images will be decoded again next time", path,
                    e.strerror or e)
    return x, y


def _write(path: Path, x: np.ndarray, y: np.ndarray, stamp: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    meta = np.array(json.dumps({"format": FORMAT, "fingerprint": stamp, "shape": list(x.shape)}))
    try:
        with open(tmp, "wb") as f:
            np.savez(f, x=x, y=y, meta=meta)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        with contextlib.suppress(OSError):  # the rename itself survives a power loss once the folder is synced
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
