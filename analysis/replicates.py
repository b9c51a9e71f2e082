"""Which runs are seed replicates: the one rule every analysis and table pools runs by.

Two runs are replicates when their whole resolved experiment config (every field that decides
the results: lth.config's experiment_dict, or a structured run's) is equal once the seeds
section is dropped. A continue run's --from-run path differs per seed (each seed has its own
dense run), so it is replaced by its dense run's experiment without seeds.

An analysis names its groups as it likes (a schedule, a method and lambda); `split` then
refuses to pool runs under one name that are not replicates: each set of replicates keeps the
name plus the fields that tell it apart, e.g. `LLR [batch_size=32]` and `LLR [batch_size=64]`.
"""
import json
from collections import OrderedDict
from typing import Callable, Dict, Hashable, List, Sequence, Tuple, TypeVar

from lth.config import RunConfig, differing_fields
from lth.errors import LthError
from lth.runs.store import open_run

T = TypeVar("T")
SEEDS = "seeds"


def without_seeds(experiment: dict) -> dict:
    return {k: v for k, v in experiment.items() if k != SEEDS}


def run_experiment(cfg: RunConfig) -> dict:
    """An lth run's experiment without seeds; a continue run's dense run by its experiment too."""
    cfg = cfg.resolved()
    experiment = without_seeds(cfg.experiment_dict())
    params = experiment.get("prune", {}).get("restart_params", {})
    if params.get("from_run"):
        try:
            params["from_run"] = run_experiment(open_run(params["from_run"]).run_config())
        except LthError:
            pass  # the dense run is gone: its path is all that tells it apart
    return experiment


def key(experiment: dict) -> str:
    """The replicate key: equal for runs that differ only in their seeds."""
    return json.dumps(without_seeds(experiment), sort_keys=True)


def _leaf(experiment: dict, dotted: str):
    value = experiment
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _name(dotted: str) -> str:
    """A differing field's name in a label: the field, 'dense <field>' for the dense run's."""
    return ("dense " if ".from_run." in dotted else "") + dotted.split(".")[-1]


def _value(value) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def split(items: Sequence[T], name_of: Callable[[T], Hashable], experiment_of: Callable[[T], dict]
          ) -> List[Tuple[Hashable, str, List[T]]]:
    """(name, suffix, members) per set of replicates, in first-seen order. suffix is '' when the
    name holds one set; else ` [field=value, ...]` with the fields that tell the sets apart, so
    that runs which are not replicates are never silently pooled under one name."""
    by_name: "OrderedDict[Hashable, OrderedDict[str, List[T]]]" = OrderedDict()
    for item in items:
        by_name.setdefault(name_of(item), OrderedDict()).setdefault(key(experiment_of(item)), []).append(item)
    out = []
    for name, sets in by_name.items():
        if len(sets) == 1:
            out.append((name, "", next(iter(sets.values()))))
            continue
        firsts = [without_seeds(experiment_of(members[0])) for members in sets.values()]
        fields = sorted({f for other in firsts[1:] for f in differing_fields(firsts[0], other)})
        for members, experiment in zip(sets.values(), firsts):
            parts = ", ".join(f"{_name(f)}={_value(_leaf(experiment, f))}" for f in fields)
            out.append((name, f" [{parts}]", members))
    return out


def labels(items: Sequence[T], name_of: Callable[[T], str], experiment_of: Callable[[T], dict]) -> Dict[int, str]:
    """id(item) -> its group's label: its name, plus the suffix that split gives it."""
    return {id(item): f"{name}{suffix}" for name, suffix, members in split(items, name_of, experiment_of)
            for item in members}
