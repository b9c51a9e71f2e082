"""The description of a structured run: the toolkit's RunConfig (data, model, training, seeds,
runtime; its IMP `prune` section is unused) plus `StructuredConfig`, one flag per field.

Defaults follow OCSPruner's CIFAR script (/work/shared/papers/related-methods.md A5): ResNet
on CIFAR-10 at 32 px, SGD 0.1 momentum 0.9, weight decay 5e-4, x0.2 at 30/60/80/90 % of 300
epochs, batch 128. Precedence: those defaults < explicit flags.

    cfg = from_args(["--method", "ocp", "--epochs", "15"])
    cfg.hash(), cfg.run_name()      # the run directory's name: a hash of every result-deciding field
"""
import argparse
import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Optional

from lth import config as base_config
from lth.errors import LthError, OneLineParser

METHODS = ("ocspruner", "dense", "one_shot", "iterative", "agp", "ocp")
SCHEDULE_METHODS = ("one_shot", "iterative", "agp", "ocp")


def knob(default, help: str, choices=None, runtime: bool = False):
    return field(default=default, metadata={"help": help, "choices": choices, "runtime": runtime})


@dataclass
class StructuredConfig:
    method: str = knob("ocspruner", "ocspruner (stability-triggered), dense (no pruning), or an in-round schedule "
                       "raising the FLOPs reduction on the same channel groups", choices=METHODS)
    flops_rr: float = knob(0.5, "target FLOPs reduction (1 - pruned/dense FLOPs, torch-pruning's counter) "
                           "[unverified default: OCSPruner's CLI says 0.6, its ResNet-56 ablation ~0.5]")
    tolerance: float = knob(5e-4, "binary search: stop within this of --flops-rr (OCSPruner: 5e-4)")
    layer_limit: float = knob(0.75, "per-layer floor: a group of C keeps C - int(C*limit*(1-e^-C)) (OCSPruner: 0.75)")
    flops_aware: bool = knob(True, "discount scores by 1 - softmax(per-channel FLOPs cost / 1e6) over groups "
                             "[unverified default: the official script always passes the cost]")
    # ---- OCSPruner (related-methods.md A3-A5)
    prune_at: str = knob("stable", "when to remove channels: 'stable' (first epoch with psi >= tau, or the cap), "
                         "an epoch number E (at the start of epoch E; 0 = before training), or 'end' (after the "
                         "last epoch, no fine-tuning): the ablation of the paper")
    monitor_start: int = knob(2, "first epoch whose candidate sub-network is computed (scripts: 2)")
    sl_start: str = knob("30", "first regularized epoch t_sl-start: an epoch number (CIFAR: 30) or 'auto' "
                         "(the first t > 3 with psi_t - psi_(t-2) <= 1e-4; ImageNet)")
    sl_end: int = knob(110, "cap: prune after this epoch even if psi < tau (CIFAR: 110, ImageNet: 50)")
    tau: float = knob(0.999, "stability threshold on psi (OCSPruner: 0.999)")
    gap: int = knob(2, "Jaccard compares the kept channels this many epochs apart (OCSPruner: 2)")
    window: int = knob(3, "psi = running mean of this many raw Jaccard scores (OCSPruner: 3)")
    reg: float = knob(1e-4, "lambda of the first regularized epoch (OCSPruner --reg: 1e-4)")
    reg_delta: float = knob(1e-4, "lambda grows by this every --reg-interval epochs (OCSPruner: 1e-4)")
    reg_interval: int = knob(1, "epochs between lambda increments (CIFAR: 1, ImageNet: 2)")
    plateau_delta: float = knob(1e-4, "--sl-start auto: psi_t - psi_(t-2) at most this counts as a plateau")
    # ---- in-round schedules at channel granularity (lth.schedules; paper defaults)
    alpha: float = knob(14.0, "ocp: steepness (Hubens et al.: 14)")
    beta: float = knob(5.0, "ocp: horizontal offset (Hubens et al.: 5)")
    start: Optional[float] = knob(None, "one_shot/iterative/agp: progress where pruning starts (default: the "
                                  "schedule's: 0.4/0.2/0.2)")
    end: float = knob(1.0, "iterative/agp: progress where pruning ends")
    prune_steps: int = knob(3, "iterative: number of equal pruning steps")
    prune_interval: int = knob(1, "schedules: update the channel mask at most every this many steps")
    # ---- export (not hashed)
    latency_batches: typing.Tuple[int, ...] = knob((1, 64), "batch sizes for the CPU latency of the exported "
                                                   "network", runtime=True)
    latency_repeats: int = knob(30, "timed forward passes per batch size (median reported)", runtime=True)


# OCSPruner's CIFAR recipe on the toolkit's fields. Nesterov momentum is not offered by
# lth.train.make_optimizer: plain momentum here (a documented deviation).
DEFAULTS = {"dataset": "cifar10", "model": "resnet20", "image_size": 0, "augment": "crop_flip",
            "recipe": "openlth", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
            "decay_bn_bias": True, "lr_schedule": "step", "warmup": 0.0, "milestones": (0.3, 0.6, 0.8, 0.9),
            "gamma": 0.2, "epochs": 300.0, "batch_size": 128, "runs_root": "runs/structured"}
BASE_SECTIONS = ("data", "model", "train", "seeds", "runtime")   # RunConfig sections that apply


@dataclass
class StructuredRun:
    base: base_config.RunConfig
    structured: StructuredConfig

    def to_dict(self) -> dict:
        d = self.base.to_dict()
        return {**{k: d[k] for k in BASE_SECTIONS}, "structured": json.loads(json.dumps(dataclasses.asdict(self.structured)))}

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> "StructuredRun":
        if not isinstance(d, dict) or "structured" not in d:
            raise LthError(f"{where}: not a structured-run config (no 'structured' section)")
        base = base_config.RunConfig.from_dict({k: v for k, v in d.items() if k != "structured"}, where)
        return cls(base, _fill(StructuredConfig(), d["structured"], f"{where}: structured"))

    def experiment_dict(self) -> dict:
        """The result-deciding fields (no runtime ones): what the hash covers."""
        out = {k: v for k, v in self.base.experiment_dict().items() if k in BASE_SECTIONS}
        out["structured"] = {f.name: json.loads(json.dumps(getattr(self.structured, f.name)))
                             for f in dataclasses.fields(StructuredConfig) if not f.metadata["runtime"]}
        return out

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.experiment_dict(), sort_keys=True).encode()).hexdigest()[:8]

    def run_name(self) -> str:
        return f"{self.base.data.dataset}-{self.base.model.model}-ch-{self.structured.method}-{self.hash()}"


def _fill(obj, values: dict, where: str):
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in values.items():
        if key not in fields:
            raise LthError(f"{where}: unknown key {key!r}")
        setattr(obj, key, tuple(value) if isinstance(value, list) else value)
    return obj


# ---- flags ------------------------------------------------------------------------------
def _base_fields():
    for section in BASE_SECTIONS:
        for f in dataclasses.fields(type(getattr(base_config.RunConfig(), section))):
            yield f


def _add_flag(parser, f: dataclasses.Field, default):
    tp, nargs = f.type, None
    if typing.get_origin(tp) is typing.Union:
        tp = [a for a in typing.get_args(tp) if a is not type(None)][0]
    if typing.get_origin(tp) in (tuple, typing.Tuple):
        tp, nargs = typing.get_args(tp)[0], "*"
    meta = f.metadata
    text = f"{meta.get('help', '')} [default: {default}]".replace("%", "%%")
    flag = "--" + f.name.replace("_", "-")
    if tp is bool:
        parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text)
    else:
        parser.add_argument(flag, dest=f.name, type=tp, nargs=nargs, choices=meta.get("choices"),
                            default=argparse.SUPPRESS, metavar=tp.__name__.upper(), help=text)


def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = OneLineParser(prog=prog, description=description)
    defaults = base_config.RunConfig()
    base_config.apply_overrides(defaults, DEFAULTS, "defaults")
    flat = {k: v for s in BASE_SECTIONS for k, v in dataclasses.asdict(getattr(defaults, s)).items()}
    for f in _base_fields():
        _add_flag(parser, f, flat[f.name])
    for f in dataclasses.fields(StructuredConfig):
        _add_flag(parser, f, f.default)
    parser.add_argument("--run-dir", default=None, help="use this run directory instead of RUNS_ROOT/<name>")
    return parser


def from_args(argv, parser: Optional[argparse.ArgumentParser] = None):
    """(resolved, validated StructuredRun, argparse namespace)."""
    parser = parser or build_parser("lth.structured", "")
    args = parser.parse_args(argv)
    base = base_config.RunConfig()
    base_config.apply_overrides(base, DEFAULTS, "defaults")
    names = {f.name for f in _base_fields()}
    explicit = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items() if k in names}
    base_config.apply_overrides(base, explicit, "flags")
    structured = _fill(StructuredConfig(), {k: v for k, v in vars(args).items()
                                            if k in {f.name for f in dataclasses.fields(StructuredConfig)}}, "flags")
    cfg = StructuredRun(base.resolved(), structured)
    validate(cfg)
    return cfg, args


def validate(cfg: StructuredRun) -> None:
    """Range checks before anything is read or written; one line naming the value."""
    base_config.validate(cfg.base)
    s = cfg.structured
    for f in dataclasses.fields(s):
        value = getattr(s, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise LthError(f"--{f.name.replace('_', '-')} must be a finite number, got {value}")
    prune_at_ok = s.prune_at in ("stable", "end") or (s.prune_at.isdigit())
    sl_start_ok = s.sl_start == "auto" or s.sl_start.isdigit()
    checks = [
        (s.method in METHODS, f"--method must be one of {', '.join(METHODS)}, got {s.method!r}"),
        (0.0 <= s.flops_rr < 1.0, f"--flops-rr must be in [0, 1), got {s.flops_rr}"),
        (s.method == "dense" or s.flops_rr > 0, f"--flops-rr must be positive for --method {s.method}"),
        (0.0 < s.tolerance < 0.5, f"--tolerance must be in (0, 0.5), got {s.tolerance}"),
        (0.0 <= s.layer_limit < 1.0, f"--layer-limit must be in [0, 1), got {s.layer_limit}"),
        (prune_at_ok, f"--prune-at must be 'stable', 'end' or an epoch number, got {s.prune_at!r}"),
        (sl_start_ok, f"--sl-start must be an epoch number or 'auto', got {s.sl_start!r}"),
        (s.monitor_start >= 0, f"--monitor-start must be at least 0, got {s.monitor_start}"),
        (s.sl_end >= s.monitor_start, f"--sl-end ({s.sl_end}) must be at least --monitor-start ({s.monitor_start})"),
        (0.0 < s.tau <= 1.0, f"--tau must be in (0, 1], got {s.tau}"),
        (s.gap >= 1, f"--gap must be at least 1, got {s.gap}"),
        (s.window >= 1, f"--window must be at least 1, got {s.window}"),
        (s.reg >= 0 and s.reg_delta >= 0, f"--reg and --reg-delta must be at least 0, got {s.reg}, {s.reg_delta}"),
        (s.reg_interval >= 1, f"--reg-interval must be at least 1, got {s.reg_interval}"),
        (s.plateau_delta >= 0, f"--plateau-delta must be at least 0, got {s.plateau_delta}"),
        (s.start is None or 0.0 <= s.start <= 1.0, f"--start must be in [0, 1], got {s.start}"),
        (0.0 < s.end <= 1.0, f"--end must be in (0, 1], got {s.end}"),
        (s.prune_steps >= 1, f"--prune-steps must be at least 1, got {s.prune_steps}"),
        (s.prune_interval >= 1, f"--prune-interval must be at least 1, got {s.prune_interval}"),
        (len(s.latency_batches) >= 1 and min(s.latency_batches) >= 1,
         f"--latency-batches must be one or more positive sizes, got {list(s.latency_batches)}"),
        (s.latency_repeats >= 1, f"--latency-repeats must be at least 1, got {s.latency_repeats}"),
    ]
    for ok, message in checks:
        if not ok:
            raise LthError(message)


def check_epochs(cfg: StructuredRun, epochs: int) -> None:
    """Checks that need the run's length in epochs (known once the data is loaded)."""
    s = cfg.structured
    if s.prune_at.isdigit() and int(s.prune_at) > epochs:
        raise LthError(f"--prune-at {s.prune_at} is beyond the run's {epochs} epochs; use 0..{epochs} or 'end'")
    if s.method == "ocspruner" and s.prune_at == "stable":
        if s.monitor_start >= epochs:
            raise LthError(f"--monitor-start {s.monitor_start} leaves no epoch to monitor in a run of {epochs} epochs")
        if s.sl_end >= epochs:
            raise LthError(f"--sl-end {s.sl_end} (the cap) is not within the run's {epochs} epochs; "
                           f"set it to at most {epochs - 1}")
