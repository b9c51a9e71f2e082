"""The description of a structured run: the toolkit's RunConfig for data, model, training,
seeds and runtime (its IMP `prune` section is unused) plus `StructuredConfig`. Every field and
every parameter of the chosen optimizer, LR schedule and in-round schedule is a flag.

Defaults follow OCSPruner's CIFAR script (scripts/prune_cifar.sh of its official code): ResNet
on CIFAR-10 at 32 px, SGD 0.1 with Nesterov momentum 0.9, weight decay 5e-4, x0.2 at
30/60/80/90 % of 300 epochs, batch 128. Precedence: those defaults < explicit flags.

    cfg, _ = from_args(["--method", "ocp", "--epochs", "15"])
    cfg.hash(), cfg.run_name()      # the run directory's name: a hash of every result-deciding field
"""
import argparse
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Optional, Tuple

from lth import config as base_config
from lth import plugins
from lth.errors import LthError, OneLineParser
from lth.knobs import check_bounds, flag, knob, range_help
from lth.pruning.schedules import SCHEDULES

SCHEDULE_METHODS = ("one_shot", "iterative", "agp", "ocp")
METHODS = ("ocspruner", "dense") + SCHEDULE_METHODS


@dataclass
class StructuredConfig:
    method: str = knob("ocspruner", "ocspruner (stability-triggered), dense (no pruning), or an in-round schedule "
                       "(lth.pruning.schedules) raising the FLOPs reduction on the same channel groups", choices=METHODS)
    flops_rr: float = knob(0.5, "target FLOPs reduction (1 - pruned/dense FLOPs, torch-pruning's counter) "
                           "[unverified default: OCSPruner's CLI says 0.6, its ResNet-56 ablation ~0.5]", ge=0, lt=1)
    tolerance: float = knob(5e-4, "binary search: stop within this of --flops-rr (OCSPruner: 5e-4)", gt=0, lt=0.5)
    layer_limit: float = knob(0.75, "per-layer floor: a group of C keeps C - int(C*limit*(1-e^-C)) (OCSPruner: 0.75)",
                              ge=0, lt=1)
    flops_aware: bool = knob(True, "discount scores by 1 - softmax(per-channel FLOPs cost / 1e6) over groups "
                             "[unverified default: the official script always passes the cost]")
    # ---- OCSPruner (related-methods.md A3-A5)
    prune_at: str = knob("stable", "when to remove channels: 'stable' (first epoch with psi >= tau, or the cap), "
                         "an epoch number E (at the start of epoch E; 0 = before training), or 'end' (after the "
                         "last epoch, no fine-tuning): the ablation of the paper")
    monitor_start: int = knob(2, "first epoch whose candidate sub-network is computed (scripts: 2)", ge=0)
    sl_start: str = knob("30", "first regularized epoch t_sl-start: an epoch number (CIFAR: 30) or 'auto' "
                         "(the first t > 3 with psi_t - psi_(t-2) <= --plateau-delta; ImageNet)")
    sl_end: int = knob(110, "cap: prune after this epoch even if psi < tau (CIFAR: 110, ImageNet: 50)", ge=0)
    cap_rule: str = knob("after", "when the cap fires: 'after' (the first epoch > --sl-end, OCSPruner's CIFAR code) "
                         "or 'at' (at epoch --sl-end itself: lth before issue 19)", choices=("after", "at"))
    tau: float = knob(0.999, "stability threshold on psi (OCSPruner: 0.999)", gt=0, le=1)
    gap: int = knob(2, "Jaccard compares the kept channels this many epochs apart (OCSPruner: 2)", ge=1)
    window: int = knob(3, "psi = running mean of this many raw Jaccard scores (OCSPruner: 3)", ge=1)
    reg: float = knob(1e-4, "lambda of the first regularized epoch (OCSPruner --reg: 1e-4)", ge=0)
    reg_delta: float = knob(1e-4, "lambda grows by this every --reg-interval epochs (OCSPruner: 1e-4)", ge=0)
    reg_interval: int = knob(1, "epochs between lambda increments (CIFAR: 1, ImageNet: 2)", ge=1)
    reg_timing: str = knob("code", "with a fixed --sl-start: 'code' (OCSPruner's CIFAR code: the first regularized "
                           "epoch is t_sl-start + 2, its lambda already --reg + --reg-delta) or 'start' (from "
                           "t_sl-start itself at lambda --reg: lth before issue 19)", choices=("code", "start"))
    plateau_delta: float = knob(1e-4, "--sl-start auto: psi_t - psi_(t-2) at most this counts as a plateau", ge=0)
    # ---- the in-round schedules: their parameters come from lth.pruning.schedules' registry
    schedule_params: dict = knob({}, "the chosen schedule's parameters (--alpha, --beta, --start, --end, --prune-steps)")
    prune_interval: int = knob(1, "schedules: update the channel mask at most every this many steps", ge=1)
    # ---- export (not hashed)
    latency_batches: Tuple[int, ...] = knob((1, 64), "batch sizes for the CPU latency of the exported network",
                                            runtime=True, ge=1)
    latency_repeats: int = knob(30, "timed forward passes per batch size (median reported)", runtime=True, ge=1)

    def check(self):
        if not (self.prune_at in ("stable", "end") or self.prune_at.isdigit()):
            raise LthError(f"--prune-at must be 'stable', 'end' or an epoch number, got {self.prune_at!r}")
        if not (self.sl_start == "auto" or self.sl_start.isdigit()):
            raise LthError(f"--sl-start must be an epoch number or 'auto', got {self.sl_start!r}")
        if self.sl_end < self.monitor_start:
            raise LthError(f"--sl-end ({self.sl_end}) must be at least --monitor-start ({self.monitor_start})")
        if self.method != "dense" and self.flops_rr <= 0:
            raise LthError(f"--flops-rr must be positive for --method {self.method}")
        if not self.latency_batches:
            raise LthError("--latency-batches needs at least one batch size")


# OCSPruner's CIFAR recipe on the toolkit's fields (lth.config flat names).
DEFAULTS = {"dataset": "cifar10", "model": "resnet20", "image_size": 0, "augment": "crop_flip",
            "recipe": "openlth", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
            "weight_decay": 5e-4, "decay_bn_bias": True, "lr_schedule": "step", "warmup": 0.0,
            "milestones": (0.3, 0.6, 0.8, 0.9), "gamma": 0.2, "epochs": 300.0, "batch_size": 128,
            "runs_root": "runs/structured"}
BASE_SECTIONS = ("data", "model", "train", "seeds", "runtime")   # RunConfig sections that apply
# Values of fields a structured.json written before them lacks: what those runs did.
LEGACY = {"cap_rule": "at", "reg_timing": "start"}


@dataclass
class StructuredRun:
    base: base_config.RunConfig
    structured: StructuredConfig

    def to_dict(self) -> dict:
        d = self.base.to_dict()
        return {"format": d["format"], **{k: d[k] for k in BASE_SECTIONS},
                "structured": json.loads(json.dumps(dataclasses.asdict(self.structured)))}

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> "StructuredRun":
        if not isinstance(d, dict) or "structured" not in d:
            raise LthError(f"{where}: not a structured-run config (no 'structured' section)")
        base = base_config.RunConfig.from_dict({k: v for k, v in d.items() if k != "structured"}, where)
        s = StructuredConfig()
        fields = {f.name for f in dataclasses.fields(s)}
        # a run made before the flags existed did what their 'at' and 'start' do: it reads so
        for key, value in {**LEGACY, **d["structured"]}.items():
            if key not in fields:
                raise LthError(f"{where}: structured: unknown key {key!r}")
            setattr(s, key, tuple(value) if isinstance(value, list) else value)
        return cls(base, s)

    def experiment_dict(self) -> dict:
        """The result-deciding fields (no runtime ones): what the hash covers."""
        base = self.base.experiment_dict()
        out = {k: v for k, v in base.items() if k in BASE_SECTIONS or k == "format"}
        out["structured"] = {f.name: json.loads(json.dumps(getattr(self.structured, f.name)))
                             for f in dataclasses.fields(StructuredConfig) if not f.metadata["runtime"]}
        return out

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.experiment_dict(), sort_keys=True).encode()).hexdigest()[:8]

    def run_name(self) -> str:
        from lth.runs.store import name_part   # issue 21: specs (torchvision:NAME, imagefolder:DIR) as path parts
        return f"{name_part(self.base.data.dataset)}-{name_part(self.base.model.model)}-ch-{self.structured.method}-{self.hash()}"


# ---- flags ------------------------------------------------------------------------------
def _default(f: dataclasses.Field):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def _base_fields():
    """(field, is an entry parameter) of the sections that apply and of the train registries."""
    for section in BASE_SECTIONS:
        for f in dataclasses.fields(base_config.SECTIONS[section]):
            if "registry" not in f.metadata:
                yield f, False
    for (section, _), params_field in base_config.CHOICES.items():
        if section in BASE_SECTIONS:
            registry = base_config.SECTIONS[section].__dataclass_fields__[params_field].metadata["registry"]
            for f in registry.param_fields().values():
                yield f, True


def _schedule_fields():
    return SCHEDULES.param_fields()


def _add(parser, f: dataclasses.Field, default, prefix: str = "") -> None:
    base, _, is_tuple = base_config._field_type(f)
    bounds = f.metadata.get("bounds", {})
    text = f"{prefix}{f.metadata.get('help', '')} [default: {default}{range_help(bounds)}]"
    kwargs = dict(dest=f.name, default=argparse.SUPPRESS, help=text.replace("%", "%%"))
    if base is bool:
        parser.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, **kwargs)
    else:
        parser.add_argument(flag(f.name), type=base_config._flag_type(base, f.name, bounds),
                            choices=f.metadata.get("choices"), nargs="*" if is_tuple else None,
                            metavar=base.__name__.upper(), **kwargs)


def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    plugins.load()   # a plugin's models and datasets are choices here too (lth.plugins)
    parser = OneLineParser(prog=prog, description=description)
    seen = set()
    for f, is_param in _base_fields():
        if f.name not in seen:
            seen.add(f.name)
            _add(parser, f, DEFAULTS.get(f.name, "per recipe/entry" if is_param else _default(f)))
    for f in dataclasses.fields(StructuredConfig):
        if f.name != "schedule_params":
            _add(parser, f, _default(f))
    for name, f in _schedule_fields().items():
        owners = [o for o in SCHEDULES.owners(name) if o in SCHEDULE_METHODS]
        defaults = ", ".join(f"{o} {_default(SCHEDULES.get(o).params.__dataclass_fields__[name])}" for o in owners)
        _add(parser, f, defaults, prefix=f"schedule {', '.join(owners)}: ")
    parser.add_argument("--run-dir", default=None, help="use this run directory instead of RUNS_ROOT/<name>")
    return parser


def from_args(argv, parser: Optional[argparse.ArgumentParser] = None):
    """(resolved, validated StructuredRun, argparse namespace)."""
    parser = parser or build_parser("lth.structured", "")
    args = parser.parse_args(argv)
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items()}
    base = base_config.RunConfig()
    base_config.apply_overrides(base, DEFAULTS, "defaults")
    base_config.apply_overrides(base, {k: v for k, v in given.items() if k in {f.name for f, _ in _base_fields()}},
                                "flags")
    s = StructuredConfig()
    for f in dataclasses.fields(s):
        if f.name in given:
            setattr(s, f.name, given[f.name])
    s.schedule_params = _schedule_params(s.method, {k: v for k, v in given.items() if k in _schedule_fields()})
    base = base_config.resolve(base)
    check_bounds(s)
    return StructuredRun(base, s), args


def _schedule_params(method: str, given: dict) -> dict:
    """The chosen schedule's complete parameters; a parameter of another entry is refused."""
    if method not in SCHEDULE_METHODS:
        if given:
            raise LthError(f"{flag(sorted(given)[0])} is a schedule parameter; it needs --method "
                           f"{' or '.join(SCHEDULES.owners(sorted(given)[0]))}")
        return {}
    entry = SCHEDULES.get(method)
    for key in given:
        if key not in entry.param_names():
            raise LthError(f"{flag(key)} belongs to schedule {', '.join(SCHEDULES.owners(key))}, "
                           f"not to the chosen --method {method}")
    return json.loads(json.dumps(dataclasses.asdict(entry.make_params(given))))


def check_epochs(cfg: StructuredRun, epochs: int) -> None:
    """Checks that need the run's length in epochs (known once the data is loaded)."""
    s = cfg.structured
    if s.prune_at.isdigit() and int(s.prune_at) > epochs:
        raise LthError(f"--prune-at {s.prune_at} is beyond the run's {epochs} epochs; use 0..{epochs} or 'end'")
    if s.method == "ocspruner" and s.prune_at == "stable":
        if s.monitor_start >= epochs:
            raise LthError(f"--monitor-start {s.monitor_start} leaves no epoch to monitor in a run of {epochs} epochs")
        last = epochs - 1 if s.cap_rule == "at" else epochs - 2   # the cap fires at sl_end or sl_end + 1
        if s.sl_end > last:
            raise LthError(f"--sl-end {s.sl_end} (the cap, --cap-rule {s.cap_rule}) is not within the run's {epochs} "
                           f"epochs; set it to at most {last}")
