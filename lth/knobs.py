"""Config fields that carry their own help and bounds, and the one check that reads them.

Every field of a config section or of a registry entry's parameters is declared with `knob`:

    lr: float = knob(1e-3, "peak learning rate", gt=0)
    start: float = knob(0.2, "progress where pruning starts", ge=0, le=1)

`check_bounds(obj, flag_of)` is the only range check: it walks the dataclass fields and raises
one LthError naming the flag, the value and the allowed range. Non-finite floats are refused
everywhere (nan slips past every comparison). Cross-field rules (agp start < end) live in the
owning dataclass's `check()` method, which `check_bounds` calls last. A new field therefore
cannot forget its range check: leaving the bounds out is visible in its declaration.

Command-line flags that are not config fields declare theirs the same way, through
`number(int, "jobs", ge=1)` as the argparse type: the value is checked as it is parsed (one
line, exit 2), and the bounds stay on the type for --help and for tests/test_cli_ranges.py,
which walks every parser of lth and analysis.
"""
import argparse
import dataclasses
import math
from dataclasses import field
from typing import Callable, Optional

from lth.errors import LthError

SEED_BOUNDS = {"ge": 0, "lt": 2 ** 63}  # torch.Generator.manual_seed takes any non-negative int64


def knob(default, help: str, *, choices=None, runtime: bool = False, gt=None, ge=None, lt=None, le=None):
    """A config field. runtime=True: where/how it runs, not what it computes (never hashed).
    gt/ge/lt/le: the allowed range (checked by check_bounds, shown in --help)."""
    kwargs = {"default_factory": lambda: default} if isinstance(default, (list, dict)) else {"default": default}
    bounds = {k: v for k, v in (("gt", gt), ("ge", ge), ("lt", lt), ("le", le)) if v is not None}
    return field(metadata={"help": help, "choices": choices, "runtime": runtime, "bounds": bounds}, **kwargs)


_TESTS = {"gt": (lambda v, b: v > b, ">"), "ge": (lambda v, b: v >= b, ">="),
          "lt": (lambda v, b: v < b, "<"), "le": (lambda v, b: v <= b, "<=")}


def describe_bounds(bounds: dict) -> str:
    """'> 0', '>= 0 and < 1', ... for help texts and errors."""
    return " and ".join(f"{_TESTS[k][1]} {v:g}" for k, v in bounds.items())


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_value(name: str, value, bounds: dict, choices=None) -> None:
    """One field's value against its declared range and choices (None always passes: unset)."""
    values = value if isinstance(value, (tuple, list)) else (value,)
    for v in values:
        if v is None or isinstance(v, bool):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise LthError(f"{flag(name)} must be a finite number, got {v}")
        if choices is not None and v not in choices:
            raise LthError(f"{flag(name)} must be one of {', '.join(map(str, choices))}, got {v!r}")
        if isinstance(v, (int, float)):
            for kind, bound in bounds.items():
                test, _ = _TESTS[kind]
                if not test(v, bound):
                    raise LthError(f"{flag(name)} must be {describe_bounds(bounds)}, got {v}")


def check_bounds(obj, owner: Optional[str] = None) -> None:
    """Check every field of dataclass `obj` against its knob bounds, then obj.check() if any.
    owner (e.g. 'schedule agp') prefixes cross-field errors."""
    for f in dataclasses.fields(obj):
        meta = f.metadata
        check_value(f.name, getattr(obj, f.name), meta.get("bounds", {}), meta.get("choices"))
    extra: Optional[Callable[[], None]] = getattr(obj, "check", None)
    if extra is not None:
        try:
            extra()
        except LthError as e:
            raise LthError(f"{owner}: {e}" if owner else str(e)) from None


def number(base: type, name: str, **bounds):
    """An argparse type for flag --name: `base` (int or float) within `bounds` (gt/ge/lt/le),
    finite, checked at parse time. Its `.bounds` and `.base` say what it accepts."""
    bounds = {k: v for k, v in bounds.items() if v is not None}

    def parse(text: str):
        try:
            value = base(text)
        except ValueError:
            kind = {int: "an integer", float: "a number"}.get(base, f"a {base.__name__}")
            raise argparse.ArgumentTypeError(f"{flag(name)} takes {kind}, got {text!r}") from None
        try:
            check_value(name, value, bounds)
        except LthError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value
    parse.__name__ = base.__name__  # argparse names the type in its messages
    parse.base, parse.bounds = base, bounds
    return parse


def range_help(bounds: dict) -> str:
    """'; >= 1' for a help text's [default: ...] bracket ('' without bounds)."""
    return f"; {describe_bounds(bounds)}" if bounds else ""
