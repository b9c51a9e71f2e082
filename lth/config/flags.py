"""The command line of a run config: a flag per section field and per registry entry parameter,
each range- or name-checked as it is parsed (one line, exit 2), and the config they describe."""
import argparse
import dataclasses
from typing import Callable, Optional, Tuple

from lth import plugins
from lth.config.presets import PRESETS
from lth.config.sections import (RunConfig, _check_dataset, _entry_params, _field_type, _flat_owners,
                                 _section_fields, apply_overrides, load_config_file)
from lth.errors import LthError, OneLineParser
from lth.knobs import flag, number, range_help
from lth.models import check as check_model
from lth.registry import Registry

def _flag_type(base, name, bounds=None):
    """The argparse type of a config flag: its knob's range checked as it is parsed (the same
    check lth.knobs.check_bounds runs on the whole config later)."""
    if base in (int, float):
        return number(base, name, **(bounds or {}))
    def parse(text):   # a str flag: no range, so no .bounds (lth's numeric-flag checks skip it)
        try:
            return base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag(name)} takes a {base.__name__}, got {text!r}") from None
    parse.__name__ = base.__name__
    return parse


# Fields whose value is a registry name or a spec (issue 21): no choice list can hold them all,
# so their flags check each value as it is parsed, with the one-line error a choice would give.
NAMED_BY_SPEC = {"model": check_model, "dataset": _check_dataset}


def _spec_type(name: str, check: Callable[[str], None]):
    def parse(text: str) -> str:
        try:
            check(text)
        except LthError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return text
    parse.__name__ = "str"
    return parse


def _add_flag(parser, f: dataclasses.Field, text: str) -> None:
    base, _, is_tuple = _field_type(f)
    kwargs = dict(dest=f.name, default=argparse.SUPPRESS, help=text.replace("%", "%%"))  # argparse %-formats help
    if base is bool:
        parser.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, **kwargs)
    else:
        choices = f.metadata.get("choices")
        if isinstance(choices, Registry):   # read now, not at import: a plugin's entries are choices too
            choices = choices.names()
        kind = _flag_type(base, f.name, f.metadata.get("bounds"))
        if f.name in NAMED_BY_SPEC:   # a registered name or a spec: checked as it is parsed, like a choice
            kind = _spec_type(f.name, NAMED_BY_SPEC[f.name])
        parser.add_argument(flag(f.name), type=kind,
                            choices=choices, nargs="*" if is_tuple else None,
                            metavar=base.__name__.upper(), **kwargs)


def _default(f: dataclasses.Field):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    plugins.load()   # before the flags and choice lists are read from the registries
    _flat_owners()  # refuses an entry parameter named like a config field (one flag, two meanings)
    parser = OneLineParser(prog=prog, description=description)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="a named setting; explicit flags override it (see lth.config.PRESETS)")
    parser.add_argument("--config", default=None, metavar="FILE.json",
                        help="start from a config file (the 'config' of a run's config.json, or that whole file)")
    for _, f in _section_fields():
        bounds = f.metadata["bounds"]
        choices = f.metadata.get("choices")
        listed = f"; one of {', '.join(choices)}" if isinstance(choices, Registry) else ""
        _add_flag(parser, f, f"{f.metadata['help']} [default: {_default(f)}{listed}"
                             f"{range_help(bounds)}]")
    seen = set()
    for _, _, registry, name, f in _entry_params():
        if name in seen:
            continue
        seen.add(name)
        owners = registry.owners(name)
        defaults = ", ".join(f"{o} {_default(registry.get(o).params.__dataclass_fields__[name])}" for o in owners)
        bounds = f.metadata["bounds"]
        _add_flag(parser, f, f"{registry.kind} {', '.join(owners)}: {f.metadata['help']} [default: {defaults}"
                             f"{range_help(bounds)}]")
    return parser


def from_args(argv=None, parser: Optional[argparse.ArgumentParser] = None) -> Tuple[RunConfig, argparse.Namespace]:
    """Parse argv into a RunConfig (not yet resolved) and the raw namespace."""
    parser = parser or build_parser("lth", "")
    args = parser.parse_args(argv)
    cfg = load_config_file(args.config) if args.config else RunConfig()
    if args.preset:
        apply_overrides(cfg, PRESETS[args.preset], f"preset {args.preset}")
    apply_overrides(cfg, explicit_flags(args), "flags")
    return cfg, args


def explicit_flags(args: argparse.Namespace) -> dict:
    """The config flags given on the command line, by flat name (lists as tuples)."""
    names = _flat_owners()
    return {k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items() if k in names}
