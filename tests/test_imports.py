"""Imports point one way (docs/DESIGN.md §1): lth never imports analysis; analysis and lth.bench
use lth's public modules, never the driver (lth.lottery.imp) or the CLI (lth.run); only lth.lottery.execution
imports the driver, and nothing imports the CLI module. Read from the source with ast, so the
test needs no imports of its own and fails on a new arrow the moment it is written."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports_of(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = {module_name(p): set(imports_of(p)) for package in ("lth", "analysis")
           for p in (ROOT / package).rglob("*.py")}


def under(dep: str, modules) -> bool:
    """Whether `dep` is one of `modules` or inside one (`lth.run` is the CLI module, not `lth.runs`)."""
    return any(dep == m or dep.startswith(m + ".") for m in modules)


def importers(target: str):
    return sorted(m for m, deps in SOURCES.items() if any(d == target or d.startswith(target + ".") for d in deps)
                  and m != target)


# The study layer runs analyses (stability copies, Fig. 3, Tables 1-3) as tasks: one module of it,
# and no other module of lth, reaches into analysis (docs/DESIGN.md §9).
STUDY_BRIDGE = "lth.study.analyses"


def test_lth_never_imports_analysis():
    offenders = [m for m in SOURCES if m.startswith("lth") and any(d.split(".")[0] == "analysis" for d in SOURCES[m])]
    assert set(offenders) <= {STUDY_BRIDGE}, offenders


def test_only_execution_imports_the_driver_and_nothing_imports_the_cli():
    assert importers("lth.lottery.imp") == ["lth.lottery.execution"]
    assert importers("lth.run") == []


def test_analysis_and_bench_use_public_modules_only():
    private = ("lth.lottery.imp", "lth.run", "lth.lottery.execution")
    for m, deps in SOURCES.items():
        if m.startswith("analysis") or m.startswith("lth.bench"):
            assert not [d for d in deps if under(d, private)], m


def test_pruning_does_not_reach_up():
    """lth.pruning sits below training, the driver and the config: it imports none of them."""
    upward = ("lth.training.loop", "lth.lottery.imp", "lth.lottery.execution", "lth.config", "lth.run", "lth.lottery.assemble")
    for m, deps in SOURCES.items():
        if m.startswith("lth.pruning"):
            assert not [d for d in deps if under(d, upward)], m
