"""Registries of pluggable choices whose entries declare their own parameters and behaviour.

Every kind of choice lth offers is one `Registry`: models, datasets, initialisations, in-round
schedules, LR schedules, optimizers, pruning criteria, scopes, round restart policies and
training recipes. An entry is a function (or, for a recipe, a value) plus

  - a small dataclass of its parameters (knobs with help and bounds: lth.knobs),
  - a one-line help,
  - traits: the flags its registry declares, each with a default (`prunes` of a schedule,
    `keeps_pruned_zero` of an optimizer, `official_split` of a dataset, ...). Code that must
    behave differently for some entries reads the chosen entry's trait, never its name.

    SCHEDULES = Registry("schedule", traits={"prunes": True})

    @dataclass
    class OcpParams:
        alpha: float = knob(14.0, "steepness (paper: 14)", gt=0)

    @SCHEDULES.register("ocp", OcpParams)
    def ocp(t, s_i, s_f, alpha=14.0): ...

    @SCHEDULES.register("dense", prunes=False)
    def dense(t, s_i, s_f): ...

    SCHEDULES.get("dense").traits["prunes"]      # False

The CLI's flags and choice lists, the resolved config (only the chosen entry's parameters) and
the hash come from the registries when they are needed, not when lth is imported: an entry
registered later (a plugin, lth.plugins; a script) is a choice like the built-in ones.
"""
import contextlib
import dataclasses
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional

from lth.errors import LthError
from lth.knobs import check_bounds

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")   # a name is one command-line token
BUILTIN = "lth"
_source = [BUILTIN]   # who is registering now: lth, or "plugin NAME" while lth.plugins loads one


@contextlib.contextmanager
def registering_as(source: str):
    """Entries registered inside this block are recorded as registered by `source`."""
    _source.append(source)
    try:
        yield
    finally:
        _source.pop()


@dataclass
class NoParams:
    """For entries without parameters."""


@dataclass(frozen=True)
class Entry:
    name: str
    fn: Any                      # the function; for a recipe, its values (a read-only mapping)
    params: type                 # dataclass of the entry's parameters
    help: str
    traits: Mapping[str, Any] = field(default_factory=dict)   # every declared trait, defaults filled
    source: str = BUILTIN        # who registered it (errors name it)

    @property
    def value(self) -> Any:
        """What a data entry (a recipe) registered: the same object as fn."""
        return self.fn

    def param_names(self) -> List[str]:
        return [f.name for f in dataclasses.fields(self.params)]

    def make_params(self, values: dict):
        """The entry's parameter object from `values` (defaults for the rest), range-checked."""
        try:
            params = self.params(**values)
        except TypeError as e:  # a key that is not a field: callers filter, so this is a bug
            raise LthError(f"{self.name}: {e}") from None
        check_bounds(params, owner=f"{self.name}")
        return params


class Registry:
    def __init__(self, kind: str, traits: Optional[Dict[str, Any]] = None):
        self.kind = kind                       # "schedule", "LR schedule", ... (for messages)
        self.traits = dict(traits or {})       # trait name -> default: what entries may declare
        self.entries: Dict[str, Entry] = {}

    def register(self, name: str, params: type = NoParams, help: Optional[str] = None, **traits):
        """Decorator: register the function under `name` (see the module docstring)."""
        def add(fn: Callable) -> Callable:
            self.add(name, fn, params, help, **traits)
            return fn
        return add

    def add(self, name: str, fn: Any, params: type = NoParams, help: Optional[str] = None, **traits) -> Entry:
        """Register `fn` (a function, or a recipe's values) under `name`; one-line LthErrors
        for a name taken, a name that is no command-line token, an undeclared trait or
        parameters that are no dataclass of knobs with defaults."""
        source = _source[-1]
        where = f"{self.kind} {name!r}"
        if not isinstance(name, str) or not NAME.match(name):
            raise LthError(f"{self.kind} name {name!r} is not one command-line token "
                           "(letters, digits, _ . -; a letter or digit first)")
        if name in self.entries:
            raise LthError(f"{where} is registered twice (first by {self.entries[name].source}, "
                           f"again by {source})")
        unknown = sorted(set(traits) - set(self.traits))
        if unknown:
            declared = ", ".join(sorted(self.traits)) or "none"
            raise LthError(f"{where}: unknown trait {unknown[0]!r}; a {self.kind} declares {declared}")
        _check_params(where, params)
        if help is None:
            help = ((getattr(fn, "__doc__", None) or "").strip().splitlines() or [""])[0] if callable(fn) else ""
        entry = Entry(name, fn, params, help, MappingProxyType({**self.traits, **traits}), source)
        self.entries[name] = entry
        return entry

    def get(self, name: str) -> Entry:
        try:
            return self.entries[name]
        except (KeyError, TypeError):
            raise LthError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}") from None

    def names(self) -> List[str]:
        return sorted(self.entries)

    def with_trait(self, trait: str, value: Any = True) -> List[str]:
        """The names of the entries whose `trait` is `value`."""
        return [n for n in self.names() if self.entries[n].traits[trait] == value]

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name in self.entries

    def __iter__(self) -> Iterator[str]:
        """The names, sorted: a registry is a live choice list (argparse, lth.knobs)."""
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"

    def owners(self, param: str) -> List[str]:
        """The entries that declare `param` (for 'belongs to' errors)."""
        return [n for n in self.names() if param in self.entries[n].param_names()]

    def param_fields(self) -> Dict[str, dataclasses.Field]:
        """Every parameter of every entry, by name (first declaration wins for help/type)."""
        out: Dict[str, dataclasses.Field] = {}
        for name in self.names():
            for f in dataclasses.fields(self.entries[name].params):
                out.setdefault(f.name, f)
        return out


def _check_params(where: str, params) -> None:
    """Parameters become flags and config keys: a dataclass whose fields are knobs with defaults."""
    if not (isinstance(params, type) and dataclasses.is_dataclass(params)):
        raise LthError(f"{where}: its parameters must be a dataclass, got {params!r}")
    for f in dataclasses.fields(params):
        if "help" not in f.metadata or "bounds" not in f.metadata:
            raise LthError(f"{where}: parameter {f.name!r} must be declared with lth.knobs.knob(default, help)")
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise LthError(f"{where}: parameter {f.name!r} needs a default")
