"""Sparsity targets: per IMP round, per layer, and along a round (docs/DESIGN.md §2).

Round r ends at s_r = 1 - (1 - p)^r, with p the per-round rate (or the rate that reaches a
requested final sparsity after R rounds). `--layer-rate GLOB=FACTOR` gives the layers whose
weight name matches GLOB the rate FACTOR * p (Frankle & Carbin prune the output layer at half
the rate: `--layer-rate 'fc3.*=0.5'`), so that layer ends round r at 1 - (1 - FACTOR * p)^r.
Inside round r a layer's target follows the in-round schedule from its s_{r-1} to its s_r.
"""
import fnmatch
from typing import Callable, List, Sequence, Tuple, Union

from lth.pruning import schedules
from lth.errors import LthError

Target = Union[float, List[float]]  # one sparsity for every layer, or one per layer


def parse_layer_rates(rules: Sequence[str]) -> List[Tuple[str, float]]:
    """['fc3.*=0.5', ...] -> [('fc3.*', 0.5), ...], with a one-line error for a bad rule."""
    parsed = []
    for rule in rules:
        glob, sep, factor = rule.rpartition("=")
        try:
            value = float(factor)
        except ValueError:
            value = None
        if not sep or not glob or value is None or not 0.0 <= value:
            raise LthError(f"--layer-rate takes GLOB=FACTOR with FACTOR >= 0 (e.g. 'fc.*=0.5'), got {rule!r}")
        parsed.append((glob, value))
    return parsed


OUTPUT = "@output"  # the GLOB that names the output layer (the last prunable layer), whatever the model


def _matches(name: str, glob: str, names: Sequence[str]) -> bool:
    return name == names[-1] if glob == OUTPUT else fnmatch.fnmatchcase(name, glob)


def layer_rates(names: Sequence[str], rate: float, rules: Sequence[str]) -> List[float]:
    """Each layer's per-round rate: rate x FACTOR of the first rule whose GLOB matches it.
    A rule that matches no layer is an error listing the layer names."""
    parsed = parse_layer_rates(rules)
    for glob, _ in parsed:
        if not any(_matches(n, glob, names) for n in names):
            raise LthError(f"--layer-rate {glob!r} matches no prunable layer; the layers are {', '.join(names)}")
    out = []
    for name in names:
        factor = next((f for glob, f in parsed if _matches(name, glob, names)), 1.0)
        layer_rate = rate * factor
        if not 0.0 <= layer_rate < 1.0:
            raise LthError(f"--layer-rate gives {name} a per-round rate of {layer_rate:g}; it must stay below 1")
        out.append(layer_rate)
    return out


def round_rate(rate: float, final_sparsity, rounds: int) -> float:
    """The per-round rate p: `rate`, or the one that reaches `final_sparsity` after `rounds`."""
    return schedules.rate_for(final_sparsity, rounds) if final_sparsity is not None else rate


def round_targets(rounds: int, rate: float) -> List[float]:
    """[s_0 = 0, s_1, ..., s_R] for one per-round rate."""
    return [0.0] + schedules.round_sparsities(rounds, rate)


def in_round_target(schedule: str, params, s_i: Target, s_f: Target) -> Callable[[float], Target]:
    """t -> the round's target: a float when every layer shares (s_i, s_f), else one per layer."""
    if isinstance(s_i, float) and isinstance(s_f, float):
        return schedules.bind(schedule, params, s_i, s_f)
    fns = [schedules.bind(schedule, params, a, b) for a, b in zip(s_i, s_f)]
    return lambda t: [fn(t) for fn in fns]
