"""lth.runs.provenance: versions, git commit, dirty state and diff, in a real temporary git repository."""
import os
import subprocess
from pathlib import Path

import pytest

from lth.runs import provenance

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", "-c", "core.autocrlf=false"]


def git(repo: Path, *args) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def repo(tmp_path):
    """A repository with a committed package folder `pkg/` (as lth is in its checkout)."""
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "code.py").write_text("A = 1\n")
    (root / "pkg" / "blob.bin").write_bytes(bytes(range(256)))
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-qm", "first")
    return root


def test_a_clean_checkout_records_its_commit_and_no_diff(repo):
    prov = provenance.collect(repo / "pkg")
    head = git(repo, "rev-parse", "HEAD").strip()
    assert prov.meta["git_commit"] == prov.meta["git"]["commit"] == head
    assert prov.meta["git"]["dirty"] is False and prov.meta["git"]["diff"] is None and prov.diff is None
    assert set(prov.meta["versions"]) == {"lth", "torch", "python", "numpy"}
    assert "unknown" not in prov.meta["versions"].values()


def test_a_dirty_checkout_records_a_diff_that_reproduces_it(repo):
    (repo / "pkg" / "code.py").write_text("A = 2\n")
    (repo / "pkg" / "blob.bin").write_bytes(bytes(range(255, -1, -1)))
    (repo / "pkg" / "staged.py").write_text("B = 3\n")
    git(repo, "add", "pkg/staged.py")
    (repo / "notes.txt").write_text("untracked\n")
    (repo / "pkg" / "new").mkdir()
    (repo / "pkg" / "new" / "x.py").write_text("untracked too\n")
    prov = provenance.collect(repo / "pkg")
    g = prov.meta["git"]
    assert g["dirty"] is True and g["diff"] == "provenance.diff" and not g["diff_truncated"]
    assert sorted(g["untracked"]) == ["notes.txt", "pkg/new/x.py"] and g["untracked_count"] == 2
    assert g["diff_bytes"] == len(prov.diff) and b"+A = 2" in prov.diff and b"+B = 3" in prov.diff
    # the diff is what `git apply` takes: a clean checkout of the commit plus it is the dirty tree
    (repo.parent / "p.diff").write_bytes(prov.diff)
    git(repo, "reset", "-q", "--hard")
    assert (repo / "pkg" / "code.py").read_text() == "A = 1\n" and not (repo / "pkg" / "staged.py").exists()
    git(repo, "apply", "--binary", str(repo.parent / "p.diff"))
    assert (repo / "pkg" / "code.py").read_text() == "A = 2\n" and (repo / "pkg" / "staged.py").read_text() == "B = 3\n"
    assert (repo / "pkg" / "blob.bin").read_bytes() == bytes(range(255, -1, -1))


def test_only_untracked_files_make_a_tree_dirty_without_a_diff(repo):
    (repo / "pkg" / "extra.py").write_text("C = 1\n")
    g = provenance.collect(repo / "pkg").meta["git"]
    assert g["dirty"] is True and g["untracked"] == ["pkg/extra.py"] and g["diff"] is None


def test_a_large_diff_is_truncated_at_a_line_end_and_says_so(repo):
    (repo / "pkg" / "code.py").write_text("".join(f"line {i}\n" for i in range(5000)))
    prov = provenance.collect(repo / "pkg", diff_limit=1000)
    g = prov.meta["git"]
    full = git(repo, "diff", "HEAD", "--binary").encode()
    assert g["diff_truncated"] is True and g["diff_bytes"] == len(full) > 1000
    body, note = prov.diff.rsplit(b"\n# lth: truncated", 1)
    assert len(body) + 1 <= 1000 and full.startswith(body + b"\n")
    assert f"of {len(full)} bytes".encode() in note


def test_outside_a_checkout_everything_git_is_unknown(tmp_path, repo):
    outside = tmp_path / "plain"
    outside.mkdir()
    untracked_inside = repo / "venv" / "site-packages"   # installed into a venv inside another repo
    untracked_inside.mkdir(parents=True)
    (untracked_inside / "mod.py").write_text("")
    for where in (outside, untracked_inside, tmp_path / "does-not-exist"):
        g = provenance.collect(where).meta
        assert g["git_commit"] == "unknown" and g["git"]["dirty"] == "unknown" and g["git"]["diff"] is None


def test_without_git_on_the_path_it_is_unknown_and_does_not_raise(repo, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    prov = provenance.collect(repo / "pkg")
    assert prov.meta["git"]["commit"] == "unknown" and prov.diff is None


def test_a_repository_without_commits_records_no_commit(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    g = provenance.collect(tmp_path / "pkg").meta["git"]
    assert g["commit"] == "unknown" and g["dirty"] is True and g["diff"] is None


def test_an_unexpected_failure_is_logged_not_raised(repo, monkeypatch, caplog):
    def broken(*a, **k):
        raise RuntimeError("boom")
    monkeypatch.setattr(provenance, "_git_state", broken)
    prov = provenance.collect(repo / "pkg")
    assert prov.meta["git"]["commit"] == "unknown" and "boom" in caplog.text


def test_the_git_environment_of_a_caller_does_not_redirect_it(repo, monkeypatch, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    assert provenance.collect(repo / "pkg").meta["git"]["commit"] == git(repo, "--git-dir", str(repo / ".git"),
                                                                         "rev-parse", "HEAD").strip()


def test_the_lth_package_itself_gets_a_record():
    prov = provenance.collect()
    assert prov.meta["versions"]["lth"] != "unknown" and isinstance(prov.meta["git"]["untracked"], list)
