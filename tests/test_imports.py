"""Imports point one way (docs/DESIGN.md §1, §8): no import circles anywhere in lth or analysis;
the layers, bottom up: foundation (errors, knobs, registry) < the registries' entry modules
(schedules, optimizers, datasets, models, ...) < config < data loader, pruning machinery <
training < lottery, runs < analysis < study < the `lth` command. Read from the source with ast,
so the test needs no imports of its own and fails on a new arrow the moment it is written.

Every import counts, at module level or inside a function, except in an `if __name__ ==
"__main__":` block: a `python -m` alias is a script, not library code."""
import ast
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parent.parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_main_guard(node: ast.AST) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def imports_of(path: Path):
    """Every (module, names) an import in `path` names, outside `if __name__ == "__main__"`."""
    def walk(node):
        for child in ast.iter_child_nodes(node):
            if _is_main_guard(child):
                continue
            if isinstance(child, ast.Import):
                yield from ((a.name, None) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                yield child.module, [a.name for a in child.names]
            yield from walk(child)
    yield from walk(ast.parse(path.read_text()))


FILES = {module_name(p): p for package in ("lth", "analysis") for p in (ROOT / package).rglob("*.py")}


def edges() -> Dict[str, Set[str]]:
    """module -> the modules of this tree it imports (`from pkg import sub` points at pkg.sub)."""
    out = {m: set() for m in FILES}
    for m, path in FILES.items():
        for module, names in imports_of(path):
            targets = [f"{module}.{n}" for n in names or [] if f"{module}.{n}" in FILES]
            if len(targets) < len(names or []) or not names:
                targets.append(module)
            out[m].update(t for t in targets if t in FILES and t != m)
    return out


EDGES = edges()


def circles() -> List[List[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in EDGES[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))
    for v in sorted(EDGES):
        if v not in index:
            visit(v)
    return found


def under(dep: str, modules) -> bool:
    """Whether `dep` is one of `modules` or inside one (`lth.run` is the CLI module, not `lth.runs`)."""
    return any(dep == m or dep.startswith(m + ".") for m in modules)


def importers(target: str):
    return sorted(m for m, deps in EDGES.items() if any(d == target or d.startswith(target + ".") for d in deps))


def under(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_no_import_circles_in_the_whole_tree():
    assert circles() == []


def test_the_circle_finder_finds_a_circle():
    """The test above could fail: two modules importing each other are one circle."""
    saved = {m: set(EDGES[m]) for m in ("lth.registry", "lth.errors")}
    try:
        EDGES["lth.registry"].add("lth.errors")
        EDGES["lth.errors"].add("lth.registry")
        assert any({"lth.errors", "lth.registry"} <= set(c) for c in circles())
    finally:
        EDGES.update(saved)


def test_only_the_study_layer_and_the_command_reach_into_analysis():
    offenders = [m for m in EDGES if under(m, "lth") and any(under(d, "analysis") for d in EDGES[m])]
    assert all(under(m, "lth.study") for m in offenders), offenders


def test_analysis_sits_below_the_study_layer_and_the_drivers():
    upward = ("lth.study", "lth.cli", "lth.run", "lth.lottery.imp", "lth.lottery.execution")
    for m, deps in EDGES.items():
        if under(m, "analysis") or under(m, "lth.bench"):
            assert not [d for d in deps if under(d, *upward)], m


def test_only_execution_imports_the_driver_and_nothing_imports_the_commands():
    assert importers("lth.lottery.imp") == ["lth.lottery.execution"]
    assert importers("lth.run") == []
    assert importers("lth.cli") == []


def test_the_run_store_and_the_foundation_are_leaves():
    foundation = ("lth.errors", "lth.knobs", "lth.registry")
    for m in foundation:
        assert not [d for d in EDGES[m] if not under(d, *foundation)], m
    # the files layer (atomic writes, checksummed tensors, locks) is a leaf too
    assert not [d for d in EDGES["lth.runs.files"] if not under(d, *foundation)]
    assert not [d for d in EDGES["lth.runs.store"] if not under(d, "lth.config", "lth.runs.files", *foundation)]


def test_lower_layers_do_not_reach_up():
    """Each package imports only its own layer and the ones below it."""
    above = {
        # the config reads the registries (their entry modules sit below it), nothing that runs
        "lth.config": ("lth.data.loader", "lth.lottery.imp", "lth.lottery.execution", "lth.lottery.assemble",
                       "lth.lottery.rewinding", "lth.lottery.bimp", "lth.runs", "lth.training.loop",
                       "lth.training.callbacks", "lth.study", "lth.structured", "lth.bench", "lth.lmc", "lth.cli"),
        "lth.data": ("lth.pruning", "lth.training.loop", "lth.training.callbacks", "lth.lottery", "lth.runs", "lth.study", "lth.structured"),
        "lth.models": ("lth.pruning", "lth.training", "lth.lottery", "lth.runs", "lth.study", "lth.structured"),
        "lth.pruning": ("lth.training", "lth.lottery", "lth.config", "lth.run", "lth.runs.store", "lth.runs.index",
                        "lth.runs.provenance", "lth.study",
                        "lth.structured"),
        "lth.training": ("lth.lottery", "lth.runs", "lth.study", "lth.structured", "lth.bench"),
        "lth.runs": ("lth.lottery", "lth.training", "lth.study", "lth.structured", "lth.bench"),
        "lth.lottery": ("lth.study", "lth.structured", "lth.bench"),
    }
    for m, deps in EDGES.items():
        for layer, forbidden in above.items():
            if under(m, layer):
                assert not [d for d in deps if under(d, *forbidden)], (m, sorted(d for d in deps if under(d, *forbidden)))
