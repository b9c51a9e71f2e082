"""Where a run's code came from: versions, the git commit, and the changes not committed.

    prov = provenance.collect()                          # never raises: "unknown" where it cannot tell
    meta = {"config": ..., **prov.meta}                  # config.json keys: versions, git_commit, git
    store.create(meta, provenance_diff=prov.diff)        # provenance.diff beside config.json when dirty

`prov.meta`:
    versions     lth, torch, python, numpy
    git_commit   the commit of the checkout lth is imported from, or "unknown"
    git          {commit, dirty, untracked, untracked_count, diff, diff_bytes, diff_truncated}:
                 dirty is true when tracked files differ from HEAD or untracked (not ignored)
                 files exist, "unknown" outside a git checkout; untracked lists the first
                 UNTRACKED_LIMIT of those files; diff names the file holding `git diff HEAD`
                 (None when clean), diff_bytes its full size, diff_truncated whether only the
                 first DIFF_LIMIT bytes were kept.

The diff goes to its own file, `provenance.diff`, not into config.json: config.json stays small
enough to read (a dirty tree's diff can be megabytes), and the file is what `git apply` takes
(`--binary`, so changed binary files are in it too). A truncated diff ends with a comment line
saying so. Untracked files are listed, not copied: they can be data of any size.

"A git checkout" means one that tracks lth's own files: lth installed into a virtual
environment that lies inside some other repository reports "unknown", not that repository.
"""
import logging
import os
import platform
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
DIFF_LIMIT = 1 << 20       # bytes of `git diff HEAD` kept: a code change fits, a changed data file not
UNTRACKED_LIMIT = 1000     # untracked files listed by name (the count is recorded in full)
GIT_TIMEOUT_S = 30.0       # a git command slower than this (a huge tree on a slow disk) is given up
# Environment of every git command: no optional locks (a status or diff would otherwise take
# index.lock and could fail a git command the user runs meanwhile), no prompts, plain output,
# and no GIT_DIR & co. inherited from a caller that points git at another repository.
_GIT_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY")


@dataclass
class Provenance:
    meta: dict                # for config.json (see the module docstring)
    diff: Optional[bytes]     # the contents of provenance.diff; None when clean or unknown


def collect(where: Optional[Path] = None, diff_limit: int = DIFF_LIMIT) -> Provenance:
    """The provenance of the code in `where` (default: the lth package). Never raises."""
    try:
        git, diff = _git_state(Path(where) if where is not None else _package_dir(), diff_limit)
    except Exception as e:  # provenance is a record, never a reason for a run to fail
        log.warning("could not record the git state (%s: %s)", type(e).__name__, e)
        git, diff = _unknown_git(), None
    return Provenance({"versions": versions(), "git_commit": git["commit"], "git": git}, diff)


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("lth", "torch", "numpy"):
        try:
            out[name] = str(__import__(name).__version__)
        except Exception:
            out[name] = UNKNOWN
    return out


def _package_dir() -> Path:
    return Path(__file__).resolve().parent.parent   # lth/ (this file is lth/runs/provenance.py)


def _unknown_git() -> dict:
    return {"commit": UNKNOWN, "dirty": UNKNOWN, "untracked": [], "untracked_count": 0, "diff": None,
            "diff_bytes": None, "diff_truncated": False}


def _git(args: List[str], cwd: Path, stdout=subprocess.PIPE) -> Optional[subprocess.CompletedProcess]:
    """`git args` in cwd; None when git is missing, fails or times out."""
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_DROP}
    env.update(GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, stdout=stdout, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL, env=env, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc if proc.returncode == 0 else None


def _git_state(where: Path, diff_limit: int):
    git = _unknown_git()
    top = _git(["rev-parse", "--show-toplevel"], where)
    if top is None or _git(["ls-files", "--error-unmatch", "--", "."], where) is None:
        return git, None   # not in a git checkout, or in one that does not track this code
    root = Path(top.stdout.decode(errors="replace").strip())
    head = _git(["rev-parse", "--verify", "HEAD"], root)
    if head is not None:
        git["commit"] = head.stdout.decode().strip()
    status = _git(["status", "--porcelain=v1", "-z", "--untracked-files=all"], root)
    if status is None:
        return git, None
    entries = _status_entries(status.stdout)
    untracked = [path for code, path in entries if code == "??"]
    git.update(dirty=bool(entries), untracked=untracked[:UNTRACKED_LIMIT], untracked_count=len(untracked))
    if head is None or not any(code != "??" for code, _ in entries):
        return git, None   # nothing tracked differs from HEAD (or there is no HEAD to differ from)
    diff, total = _bounded_diff(root, diff_limit)
    if diff is None:
        return git, None
    git.update(diff="provenance.diff", diff_bytes=total, diff_truncated=total > diff_limit)
    return git, diff


def _status_entries(raw: bytes) -> List[tuple]:
    """(XY code, path) of `git status --porcelain=v1 -z`; a rename's second field (its old
    path) is skipped."""
    fields, entries, i = raw.split(b"\0"), [], 0
    while i < len(fields):
        item = fields[i]
        i += 1
        if len(item) < 4:
            continue
        code = item[:2].decode(errors="replace")
        entries.append((code, item[3:].decode(errors="replace")))
        if "R" in code or "C" in code:
            i += 1
    return entries


def _bounded_diff(root: Path, limit: int):
    """(the first `limit` bytes of `git diff HEAD --binary`, cut at a line end and followed by a
    note when cut, the full size), or (None, None). Spooled to a temporary file so that a diff of
    gigabytes costs no memory."""
    with tempfile.TemporaryFile() as out:
        if _git(["diff", "HEAD", "--binary", "--no-color", "--no-ext-diff", "--no-textconv"], root,
                stdout=out) is None:
            return None, None
        total = out.seek(0, os.SEEK_END)
        out.seek(0)
        text = out.read(limit)
    if total > limit:
        cut = text.rfind(b"\n") + 1
        text = text[:cut] + (f"# lth: truncated: the first {cut} of {total} bytes of "
                             f"`git diff HEAD --binary`\n").encode()
    return text, total
