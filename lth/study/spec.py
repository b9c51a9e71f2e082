"""A study spec: a base config, axes, seeds, an optional budget axis and the analyses, read from
TOML (the standard library's tomllib) or taken from the built-in studies by name.

    name = "table2"                  # the study folder is studies/<name>-<scale>
    preset = "paper"                 # optional: a preset of lth.config.PRESETS under the base
    seeds = 3                        # or [0, 1, 2]; seed s: init s, order/augment/prune 1/2/3 + 10 s
    [base]                           # flat config fields (the flags' names with _), every cell
    rounds = 1
    [grid]                           # each key is one axis; the cells are the product
    schedule = ["one_shot", "iterative", "agp", "ocp"]
    [[zip]]                          # one axis whose lists vary together
    dataset = ["cifar10", "cifar100"]
    image_size = [224, 224]
    [budget]                         # Experiment B: an axis of budget multiples (lth.study.budget)
    multiples = [1, 2, 4]
    [analysis]                       # what is computed from the runs (lth.study.analyses)
    table = "table2"
    gpus = 8                         # optional: GPUs (data-parallel ranks) per run task, default 1
                                     # (issue 22: torchrun ranks; on a CPU executor, gloo ranks)
    [scales.cpu]                     # --scale cpu: its base/grid/analysis keys are merged over
    preset = "quick"                 # the top level's; every other key replaces the top level's

Axis order in listings: grid keys as written, then the zipped axes, the budget, the seeds
(innermost). Every error is one line naming the spec, the key and what is allowed.
"""
import copy
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional

from lth.errors import LthError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI (setup.cfg)
    import tomli as tomllib

TOP_KEYS = ("name", "description", "preset", "seeds", "base", "grid", "zip", "budget", "analysis", "scales",
            "default_scale", "gpus")
SCALE_KEYS = ("description", "preset", "seeds", "base", "grid", "zip", "budget", "analysis", "gpus")
MERGED = ("base", "grid", "analysis")  # a scale merges these key by key; it replaces the others
SEED_FIELDS = ("init_seed", "order_seed", "augment_seed", "prune_seed")
SEED_STRIDE = 10  # seed s: order/augment/prune seeds 1/2/3 + 10 s (seed 0 = the config defaults)
NO_SCALE = "default"  # the scale name of a spec without [scales]


@dataclass
class Spec:
    """A study at one scale: everything needed to list its cells and run its analyses."""
    name: str
    scale: str
    where: str                          # where it came from (a path, or "built-in NAME"): for errors
    description: str = ""
    preset: Optional[str] = None
    base: Dict[str, Any] = field(default_factory=dict)
    grid: Dict[str, list] = field(default_factory=dict)
    zips: List[Dict[str, list]] = field(default_factory=list)
    seeds: Optional[List[int]] = None   # None: the base's seeds, one cell per point
    budget: Optional[Dict[str, Any]] = None
    analysis: Dict[str, Any] = field(default_factory=dict)
    gpus: int = 1                       # devices (data-parallel ranks) of each run task (issue 22)

    @property
    def folder_name(self) -> str:
        return f"{self.name}-{self.scale}"


def builtin_names() -> List[str]:
    folder = resources.files("lth.study") / "builtin"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load(spec: str, scale: Optional[str] = None) -> Spec:
    """A built-in study by name, or a TOML file by path, at `scale` (None: the spec's default)."""
    if spec in builtin_names():
        text = (resources.files("lth.study") / "builtin" / f"{spec}.toml").read_text()
        return parse(text, f"built-in study {spec}", scale)
    path = Path(spec)
    if not path.suffix == ".toml" and not path.exists():
        raise LthError(f"unknown study {spec!r}: not a built-in ({', '.join(builtin_names())}) nor a .toml file")
    try:
        text = path.read_text()
    except OSError as e:
        raise LthError(f"cannot read study file {spec}: {e.strerror}") from None
    return parse(text, str(path), scale)


def parse(text: str, where: str, scale: Optional[str] = None) -> Spec:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise LthError(f"{where} is not valid TOML: {' '.join(str(e).split())}") from None
    _check_keys(raw, TOP_KEYS, where)
    scales = raw.pop("scales", {})
    if not isinstance(scales, dict) or not all(isinstance(v, dict) for v in scales.values()):
        raise LthError(f"{where}: [scales] must hold tables like [scales.cpu]")
    default = raw.pop("default_scale", None)
    chosen = scale or default or (sorted(scales)[0] if scales else NO_SCALE)
    if scales and chosen not in scales:
        raise LthError(f"{where} has no scale {chosen!r}; it has: {', '.join(sorted(scales))}")
    if not scales and scale is not None:
        raise LthError(f"{where} defines no [scales]; drop --scale {scale}")
    merged = _merge(raw, scales.get(chosen, {}), f"{where} [scales.{chosen}]")
    return _build(merged, where, chosen)


def _check_keys(table: dict, allowed, where: str) -> None:
    for key in table:
        if key not in allowed:
            raise LthError(f"{where}: unknown key {key!r}; allowed: {', '.join(allowed)}")


def _merge(top: dict, scale: dict, where: str) -> dict:
    _check_keys(scale, SCALE_KEYS, where)
    out = copy.deepcopy(top)
    for key, value in scale.items():
        if key in MERGED:
            if not isinstance(value, dict):
                raise LthError(f"{where}: {key} must be a table")
            out[key] = {**out.get(key, {}), **value}
        else:
            out[key] = value
    return out


def _build(raw: dict, where: str, scale: str) -> Spec:
    name = raw.get("name")
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ "):
        raise LthError(f"{where}: name must be a non-empty word (it names the study folder), got {name!r}")
    spec = Spec(name=name, scale=scale, where=where, description=str(raw.get("description", "")))
    spec.preset = raw.get("preset")
    if spec.preset is not None and not isinstance(spec.preset, str):
        raise LthError(f"{where}: preset must be a preset name, got {spec.preset!r}")
    spec.base = _table(raw, "base", where)
    spec.grid = {k: _axis_values(v, f"{where}: grid.{k}") for k, v in _table(raw, "grid", where).items()}
    zips = raw.get("zip", [])
    if not isinstance(zips, list) or not all(isinstance(z, dict) for z in zips):
        raise LthError(f"{where}: zip must be a list of tables ([[zip]])")
    for i, z in enumerate(zips):
        lists = {k: _axis_values(v, f"{where}: zip[{i}].{k}") for k, v in z.items()}
        lengths = {len(v) for v in lists.values()}
        if len(lengths) > 1:
            sizes = ", ".join(f"{k} has {len(v)}" for k, v in lists.items())
            raise LthError(f"{where}: the lists of zip[{i}] must have equal lengths ({sizes})")
        if lists:
            spec.zips.append(lists)
    spec.seeds = _seeds(raw.get("seeds"), where)
    spec.budget = raw.get("budget")
    if spec.budget is not None and not isinstance(spec.budget, dict):
        raise LthError(f"{where}: budget must be a table")
    spec.analysis = _table(raw, "analysis", where)
    spec.gpus = raw.get("gpus", 1)
    if not isinstance(spec.gpus, int) or isinstance(spec.gpus, bool) or not 1 <= spec.gpus <= 1024:
        raise LthError(f"{where}: gpus must be a whole number of GPUs per run, 1 to 1024, got {spec.gpus!r}")
    _check_axes_disjoint(spec)
    return spec


def _table(raw: dict, key: str, where: str) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise LthError(f"{where}: {key} must be a table, got {value!r}")
    return dict(value)


def _axis_values(value, where: str) -> list:
    if not isinstance(value, list) or not value:
        raise LthError(f"{where} must be a non-empty list of values, got {value!r}")
    return value


def _seeds(value, where: str) -> Optional[List[int]]:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise LthError(f"{where}: seeds must be at least 1, got {value}")
        return list(range(value))
    if (isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                    for s in value) and len(set(value)) == len(value)):
        return list(value)
    raise LthError(f"{where}: seeds must be a count (3) or a list of distinct seeds >= 0 ([0, 1, 2]), got {value!r}")


def _check_axes_disjoint(spec: Spec) -> None:
    """A field varies on one axis only; the seed axis owns the seed fields, the budget `epochs`."""
    owner = {}
    axes = [("grid", list(spec.grid))] + [(f"zip[{i}]", list(z)) for i, z in enumerate(spec.zips)]
    if spec.seeds is not None:
        axes.append(("seeds", list(SEED_FIELDS)))
    if spec.budget is not None:  # it sets start; and epochs, from the cell's (or from base_epochs)
        axes.append(("budget", ["start", "steps"] + (["epochs"] if "base_epochs" in spec.budget else [])))
    for axis, keys in axes:
        for key in keys:
            if key in owner:
                raise LthError(f"{spec.where}: field {key!r} varies on two axes ({owner[key]} and {axis})")
            owner[key] = axis


def seed_fields(seed: int) -> Dict[str, int]:
    """The four seeds of seed index `seed` (0 gives the config defaults 0, 1, 2, 3)."""
    return {"init_seed": seed, "order_seed": 1 + SEED_STRIDE * seed, "augment_seed": 2 + SEED_STRIDE * seed,
            "prune_seed": 3 + SEED_STRIDE * seed}

