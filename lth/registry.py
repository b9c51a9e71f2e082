"""Registries of pluggable choices whose entries declare their own parameters.

An entry is a function plus a small dataclass of its parameters (knobs with help and bounds).
The CLI's flags and choice lists, the resolved config (only the chosen entry's parameters) and
the hash all come from the registries, so adding an entry is one decorated function:

    SCHEDULES = Registry("schedule")

    @dataclass
    class OcpParams:
        alpha: float = knob(14.0, "steepness (paper: 14)", gt=0)

    @SCHEDULES.register("ocp", OcpParams)
    def ocp(t, s_i, s_f, alpha=14.0): ...

Registries are filled at import time and never changed afterwards.
"""
import dataclasses
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from lth.errors import LthError
from lth.knobs import check_bounds


@dataclass
class NoParams:
    """For entries without parameters."""


@dataclass(frozen=True)
class Entry:
    name: str
    fn: Callable
    params: type                 # dataclass of the entry's parameters
    help: str

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
    def __init__(self, kind: str):
        self.kind = kind                     # "schedule", "LR schedule", ... (for messages)
        self.entries: Dict[str, Entry] = {}

    def register(self, name: str, params: type = NoParams, help: Optional[str] = None):
        def add(fn: Callable) -> Callable:
            if name in self.entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            first_line = ((fn.__doc__ or "").strip().splitlines() or [""])[0]
            self.entries[name] = Entry(name, fn, params, help if help is not None else first_line)
            return fn
        return add

    def get(self, name: str) -> Entry:
        try:
            return self.entries[name]
        except KeyError:
            raise LthError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}") from None

    def names(self) -> List[str]:
        return sorted(self.entries)

    def __contains__(self, name) -> bool:
        return name in self.entries

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
