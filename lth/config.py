"""The one description of a run: dataclasses that generate the CLI, presets, recipes, hash.

Every field is a flag (`--field-name`), its help and default taken from where it is defined.
Precedence: field defaults < `--config FILE.json` < `--preset` < explicit flags. Training
hyperparameters left at None take their value from the chosen `--recipe` when the config
is resolved; the resolved config is what `config.json` records and what the run hash covers.

    cfg = config.from_args(["--preset", "quick", "--schedule", "ocp"])
    cfg.resolved().hash()   # names the run directory
"""
import argparse
import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Optional, Tuple

from lth.errors import LthError, OneLineParser


def knob(default, help: str, choices=None, runtime: bool = False):
    """A config field. runtime=True: where/how it runs, not what it computes (not hashed)."""
    kwargs = {"default_factory": lambda: default} if isinstance(default, (list, dict)) else {"default": default}
    return field(metadata={"help": help, "choices": choices, "runtime": runtime}, **kwargs)


@dataclass
class DataConfig:
    dataset: str = knob("cifar10", "dataset name (cifar10, cifar100, mnist, caltech101, digits: built in, offline)")
    data_dir: str = knob("data", "folder holding the datasets in their standard layouts", runtime=True)
    download: bool = knob(False, "download a missing dataset (needs network)", runtime=True)
    image_size: int = knob(224, "train/test image size in px; 0 = the dataset's own (paper: 224)")
    augment: str = knob("fastai", "training augmentation", choices=("none", "crop_flip", "fastai"))
    split_seed: int = knob(0, "seed of the train/test split for datasets without an official one")


@dataclass
class ModelConfig:
    model: str = knob("resnet18", "model name (resnet18, vgg16, resnet20, lenet300_100, conv2, conv4, conv6)")


# Training recipes. A None field of TrainConfig takes the recipe's value.
RECIPES = {
    # Hubens et al.: fastai fit_one_cycle, AdamW, lr 1e-3, cosine warm-up over 25 % from lr/25,
    # cosine decay to lr/1e5, decoupled wd 0.01, no wd on BatchNorm and biases.
    "paper": dict(optimizer="adamw", lr=1e-3, momentum=0.9, beta2=0.99, eps=1e-5, weight_decay=0.01,
                  decay_bn_bias=False, lr_schedule="one_cycle", warmup=0.25, div=25.0, div_final=1e5,
                  milestones=(), gamma=0.1),
    # OpenLTH's CIFAR recipe: SGD 0.1, momentum 0.9, wd 1e-4 on everything, x0.1 at 50 % and 75 %.
    "openlth": dict(optimizer="sgd", lr=0.1, momentum=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-4,
                    decay_bn_bias=True, lr_schedule="step", warmup=0.0, div=25.0, div_final=1e5,
                    milestones=(0.5, 0.75), gamma=0.1),
}


@dataclass
class TrainConfig:
    recipe: str = knob("paper", "optimizer and LR-schedule preset; fields left unset take its values",
                       choices=tuple(RECIPES))
    optimizer: Optional[str] = knob(None, "optimizer", choices=("adamw", "sgd"))
    lr: Optional[float] = knob(None, "peak learning rate")
    momentum: Optional[float] = knob(None, "SGD momentum, or AdamW beta1")
    beta2: Optional[float] = knob(None, "AdamW beta2")
    eps: Optional[float] = knob(None, "AdamW epsilon")
    weight_decay: Optional[float] = knob(None, "weight decay (decoupled for AdamW)")
    decay_bn_bias: Optional[bool] = knob(None, "apply weight decay to BatchNorm weights and biases too")
    lr_schedule: Optional[str] = knob(None, "LR schedule", choices=("one_cycle", "step", "constant"))
    warmup: Optional[float] = knob(None, "fraction of the budget spent warming the LR up")
    div: Optional[float] = knob(None, "one_cycle: the LR starts at lr/div")
    div_final: Optional[float] = knob(None, "one_cycle: the LR ends at lr/div_final")
    milestones: Optional[Tuple[float, ...]] = knob(None, "step: fractions of the budget where the LR is multiplied by gamma")
    gamma: Optional[float] = knob(None, "step: LR factor at each milestone")
    epochs: float = knob(50.0, "training budget of one round, in epochs (paper: 50)")
    steps: int = knob(0, "training budget in optimizer steps; overrides --epochs when > 0")
    batch_size: int = knob(128, "training batch size")
    eval_every: int = knob(1, "evaluate on the test split every this many epochs (0: only at the end)")
    eval_batch_size: int = knob(1024, "batch size for evaluation")
    bf16: bool = knob(True, "bf16 autocast (CUDA only)")
    channels_last: bool = knob(True, "channels_last memory format for the model and its batches (CPU: resnet20 step 0.75-0.84x the NCHW time)")
    compile: bool = knob(False, "torch.compile the model once per process", runtime=True)


@dataclass
class PruneConfig:
    schedule: str = knob("ocp", "in-round sparsity schedule (lth.schedules: one_shot, iterative, agp, ocp)")
    alpha: float = knob(14.0, "ocp: steepness (paper: 14)")
    beta: float = knob(5.0, "ocp: horizontal offset (paper: 5; fasterai's code: 6)")
    start: Optional[float] = knob(None, "one_shot/iterative/agp: progress where pruning starts (default: the schedule's: 0.4/0.2/0.2)")
    end: float = knob(1.0, "iterative/agp: progress where pruning ends")
    prune_steps: int = knob(3, "iterative: number of equal pruning steps")
    method: str = knob("local", "which weights to prune", choices=("local", "global", "random"))
    exclude: Tuple[str, ...] = knob((), "glob patterns of weight names never pruned (e.g. 'fc.*')")
    rate: float = knob(0.2, "fraction of remaining weights pruned per round (14 rounds of 0.2: 95.6 %)")
    final_sparsity: Optional[float] = knob(None, "sparsity after the last round; sets the per-round rate")
    rounds: int = knob(14, "IMP rounds")
    rewind_step: int = knob(0, "rewind to the weights after this many steps of round 1 (0: to W0)")
    prune_interval: int = knob(1, "update the mask at most every this many steps")


@dataclass
class SeedConfig:
    init_seed: int = knob(0, "seed of the weight initialisation W0")
    order_seed: int = knob(1, "seed of the data order")
    augment_seed: int = knob(2, "seed of the data augmentation")
    prune_seed: int = knob(3, "seed of random pruning")


@dataclass
class RuntimeConfig:
    device: str = knob("auto", "cpu, cuda, cuda:N or auto", runtime=True)
    runs_root: str = knob("runs", "where run directories are created", runtime=True)
    progress: bool = knob(True, "progress bar on a terminal", runtime=True)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "prune": PruneConfig,
            "seeds": SeedConfig, "runtime": RuntimeConfig}


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    seeds: SeedConfig = field(default_factory=SeedConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples become lists

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> "RunConfig":
        if not isinstance(d, dict):
            raise LthError(f"{where}: expected an object of sections {', '.join(SECTIONS)}")
        unknown = set(d) - set(SECTIONS)
        if unknown:
            raise LthError(f"{where}: unknown section {sorted(unknown)[0]!r}; allowed: {', '.join(SECTIONS)}")
        cfg = cls()
        for section, values in d.items():
            _set_fields(getattr(cfg, section), values, f"{where}: {section}")
        return cfg

    def resolved(self) -> "RunConfig":
        """A copy with every None training field filled from the recipe."""
        cfg = RunConfig.from_dict(self.to_dict())
        if cfg.train.recipe not in RECIPES:
            raise LthError(f"unknown recipe {cfg.train.recipe!r}; choose one of {', '.join(RECIPES)}")
        for name, value in RECIPES[cfg.train.recipe].items():
            if getattr(cfg.train, name) is None:
                setattr(cfg.train, name, value)
        return cfg

    def experiment_dict(self) -> dict:
        """The fields that decide the results (no runtime fields): what the hash covers."""
        out = {}
        for section, cls in SECTIONS.items():
            values = dataclasses.asdict(getattr(self, section))
            kept = {f.name: values[f.name] for f in dataclasses.fields(cls) if not f.metadata["runtime"]}
            if kept:
                out[section] = kept
        return json.loads(json.dumps(out))

    def hash(self) -> str:
        text = json.dumps(self.experiment_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def run_name(self) -> str:
        return f"{self.data.dataset}-{self.model.model}-{self.prune.schedule}-{self.hash()}"


def _field_type(f: dataclasses.Field):
    """(base type, is_optional, is_tuple) of a field's annotation."""
    tp, optional = f.type, False
    if typing.get_origin(tp) is typing.Union:
        tp, optional = [a for a in typing.get_args(tp) if a is not type(None)][0], True
    if typing.get_origin(tp) in (tuple, Tuple):
        return typing.get_args(tp)[0], optional, True
    return tp, optional, False


def _coerce(f: dataclasses.Field, value, where: str):
    base, optional, is_tuple = _field_type(f)
    if value is None:
        if optional:
            return None
        raise LthError(f"{where}.{f.name} must not be null")
    if is_tuple:
        if not isinstance(value, (list, tuple)):
            raise LthError(f"{where}.{f.name} must be a list of {base.__name__}, got {value!r}")
        return tuple(_coerce_scalar(base, v, f"{where}.{f.name}") for v in value)
    return _coerce_scalar(base, value, f"{where}.{f.name}")


def _coerce_scalar(base, value, where):
    ok = (isinstance(value, bool) if base is bool else
          isinstance(value, (int, float)) and not isinstance(value, bool) if base is float else
          isinstance(value, int) and not isinstance(value, bool) if base is int else isinstance(value, base))
    if not ok:
        raise LthError(f"{where} must be {base.__name__}, got {value!r}")
    return float(value) if base is float else value


def _set_fields(obj, values: dict, where: str) -> None:
    if not isinstance(values, dict):
        raise LthError(f"{where}: expected an object, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in values.items():
        if key not in fields:
            raise LthError(f"{where}: unknown key {key!r}; allowed: {', '.join(fields)}")
        setattr(obj, key, _coerce(fields[key], value, where))


# ---- presets ------------------------------------------------------------------------------
PRESETS = {
    # The paper's LTH setting (section 5): ResNet-18, CIFAR-10 at 224 px, fastai augmentation,
    # the paper's recipe, 50 epochs a round. These are the field defaults.
    "paper": {},
    # The same at CIFAR's own 32x32 (about 50x cheaper a step; the setting lth.bench measures).
    "paper32": {"image_size": 0, "augment": "crop_flip"},
    # OpenLTH's CIFAR-10 ResNet-20 lottery-ticket setting: SGD, global magnitude pruning.
    "openlth": {"model": "resnet20", "image_size": 0, "augment": "crop_flip", "recipe": "openlth",
                "epochs": 160.0, "method": "global"},
    # LeNet-300-100 on MNIST (Frankle & Carbin's first experiment), with the paper's recipe.
    # Measured on the 3,009-image MNIST copy on 2 CPU cores: about 2 s a round.
    "mnist": {"dataset": "mnist", "model": "lenet300_100", "image_size": 0, "augment": "none",
              "lr": 3e-3, "epochs": 20.0, "batch_size": 64},
    # Offline and small: scikit-learn's digits, LeNet-300-100, a few epochs a round.
    # Measured on 2 CPU cores: 14 rounds in well under a minute.
    "quick": {"dataset": "digits", "model": "lenet300_100", "image_size": 0, "augment": "none",
              "lr": 3e-3, "epochs": 10.0, "batch_size": 64, "eval_every": 5},
}


def _all_fields():
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            yield section, f


def apply_overrides(cfg: RunConfig, overrides: dict, where: str) -> None:
    """Set flat field names (as in PRESETS) on the right sections."""
    owner = {f.name: section for section, f in _all_fields()}
    for key, value in overrides.items():
        if key not in owner:
            raise LthError(f"{where}: unknown field {key!r}")
        _set_fields(getattr(cfg, owner[key]), {key: value}, where)


def _flag_type(base, name):
    def parse(text):
        try:
            return base(text)
        except ValueError:
            kind = {int: "an integer", float: "a number"}.get(base, f"a {base.__name__}")
            raise argparse.ArgumentTypeError(f"--{name} takes {kind}, got {text!r}") from None
    parse.__name__ = base.__name__
    return parse


def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = OneLineParser(prog=prog, description=description)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="a named setting; explicit flags override it (see lth.config.PRESETS)")
    parser.add_argument("--config", default=None, metavar="FILE.json",
                        help="start from a config file (the 'config' of a run's config.json, or that whole file)")
    for section, f in _all_fields():
        base, optional, is_tuple = _field_type(f)
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        # argparse %-formats help strings: escape the literal percent signs of our help texts
        text = f"{f.metadata['help']} [default: {default}]".replace("%", "%%")
        kwargs = dict(dest=f.name, default=argparse.SUPPRESS, help=text)
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            parser.add_argument(flag, type=_flag_type(base, f.name.replace("_", "-")), choices=f.metadata["choices"],
                                nargs="*" if is_tuple else None, metavar=base.__name__.upper(), **kwargs)
    return parser


def from_args(argv=None, parser: Optional[argparse.ArgumentParser] = None) -> Tuple[RunConfig, argparse.Namespace]:
    """Parse argv into a RunConfig (not yet resolved) and the raw namespace."""
    parser = parser or build_parser("lth", "")
    args = parser.parse_args(argv)
    cfg = RunConfig()
    if args.config:
        cfg = load_config_file(args.config)
    if args.preset:
        apply_overrides(cfg, PRESETS[args.preset], f"preset {args.preset}")
    explicit = {name: value for name, value in vars(args).items() if name not in ("preset", "config")
                and name in {f.name for _, f in _all_fields()}}
    for name, value in explicit.items():
        if isinstance(value, list):
            explicit[name] = tuple(value)
    apply_overrides(cfg, explicit, "flags")
    return cfg, args


def load_config_file(path: str) -> RunConfig:
    try:
        with open(path) as f:
            d = json.load(f)
    except OSError as e:
        raise LthError(f"cannot read config file {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise LthError(f"config file {path} is not valid JSON: {e}") from None
    if isinstance(d, dict) and "config" in d and isinstance(d["config"], dict):
        d = d["config"]
    return RunConfig.from_dict(d, where=str(path))


def validate(cfg: RunConfig) -> None:
    """Range checks that need no data; raise LthError naming the value and what is allowed."""
    from lth import models, schedules
    from lth.data import DATASETS
    t, p = cfg.train, cfg.prune
    for section, f in _all_fields():  # nan and inf pass (or slip past) every range check below
        value = getattr(getattr(cfg, section), f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise LthError(f"--{f.name.replace('_', '-')} must be a finite number, got {value}")
    if cfg.data.dataset not in DATASETS:
        raise LthError(f"unknown dataset {cfg.data.dataset!r}; choose one of {', '.join(sorted(DATASETS))}")
    if cfg.model.model not in models.MODELS:
        raise LthError(f"unknown model {cfg.model.model!r}; choose one of {', '.join(models.names())}")
    schedules.get(p.schedule)
    checks = [
        (p.rounds >= 1, f"--rounds must be at least 1, got {p.rounds}"),
        (0.0 < p.rate < 1.0, f"--rate must be in (0, 1), got {p.rate}"),
        (p.final_sparsity is None or 0.0 < p.final_sparsity < 1.0,
         f"--final-sparsity must be in (0, 1), got {p.final_sparsity}"),
        (p.start is None or 0.0 <= p.start <= 1.0, f"--start must be in [0, 1], got {p.start}"),
        (0.0 < p.end <= 1.0, f"--end must be in (0, 1], got {p.end}"),
        (p.prune_steps >= 1, f"--prune-steps must be at least 1, got {p.prune_steps}"),
        (p.prune_interval >= 1, f"--prune-interval must be at least 1, got {p.prune_interval}"),
        (p.rewind_step >= 0, f"--rewind-step must be at least 0, got {p.rewind_step}"),
        (t.epochs > 0, f"--epochs must be positive, got {t.epochs}"),
        (t.steps >= 0, f"--steps must be at least 0, got {t.steps}"),
        (t.batch_size >= 1, f"--batch-size must be at least 1, got {t.batch_size}"),
        (t.eval_batch_size >= 1, f"--eval-batch-size must be at least 1, got {t.eval_batch_size}"),
        (t.eval_every >= 0, f"--eval-every must be at least 0, got {t.eval_every}"),
        (cfg.data.image_size >= 0, f"--image-size must be at least 0, got {cfg.data.image_size}"),
        (t.lr is None or t.lr > 0, f"--lr must be positive, got {t.lr}"),
        (t.weight_decay is None or t.weight_decay >= 0, f"--weight-decay must be at least 0, got {t.weight_decay}"),
        (t.warmup is None or 0.0 <= t.warmup < 1.0, f"--warmup must be in [0, 1), got {t.warmup}"),
    ]
    for ok, message in checks:
        if not ok:
            raise LthError(message)

