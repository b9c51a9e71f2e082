"""The one description of a run: dataclasses that generate the CLI, presets, recipes, hash.

Every section field is a flag (`--field-name`), its help, default and allowed range taken from
where it is defined (lth.knobs). Pluggable choices (dataset, model, init, recipe, optimizer, LR
schedule, in-round schedule, criterion, scope, round restart) come from registries
(lth.registry) whose entries declare their own parameters and traits: `--alpha` belongs to the
`ocp` schedule, and given with `--schedule agp` it is a one-line error naming its entry. Choice
lists and entry flags are read from the registries when a parser is built or a config resolved,
after the plugins (lth.plugins) have registered theirs. Precedence: field defaults <
`--config FILE.json` < `--preset` < explicit flags. Training fields left unset take their value from the chosen `--recipe` when the config is
resolved.

The resolved config keeps only the chosen entries' parameters and drops what the run never
reads (a rate overridden by --final-sparsity, seeds of randomness the run does not draw), so
equivalent configs have one hash and share a run directory (docs/DESIGN.md §6).

    cfg = config.from_overrides({"schedule": "ocp"}, preset="quick")   # resolved and validated
    cfg.hash()                                                          # names the run directory
"""
import argparse
import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from lth import plugins
from lth.data.datasets import DATASETS
from lth.errors import LthError, OneLineParser
from lth.knobs import SEED_BOUNDS, check_bounds, flag, knob, number
from lth.models import MODELS, check as check_model
from lth.models.init import INITS
from lth.training.lr_schedules import LR_SCHEDULES
from lth.pruning.masks import LAYER_SETS
from lth.training.optimizers import OPTIMIZERS
from lth.pruning.criteria import CRITERIA
from lth.pruning.scope import SCOPES
from lth.registry import Registry
from lth.lottery.restart import RESTARTS
from lth.pruning.schedules import SCHEDULES
from lth.training.recipes import RECIPES

# config.json format: 1 = flat pruning/training knobs (before registries), 2 = registries (mask
# updated at every step), 3 = now (prune_tolerance).
FORMAT = 3


def params_of(registry: Registry, help: str):
    """The field holding the chosen entry's parameters (a dict; complete once resolved)."""
    return field(default_factory=dict, metadata={"help": help, "registry": registry, "runtime": False,
                                                  "bounds": {}, "choices": None})


@dataclass
class DataConfig:
    dataset: str = knob("cifar10", "dataset: a registered name (lth.data.datasets: cifar10, cifar100, mnist, caltech101, "
                        "digits: built in, offline; plugins add more), imagenet (ILSVRC layout under --data-dir), "
                        "imagefolder:DIR, or MODULE:FUNCTION returning torch Datasets (docs/your-model-your-data.md)")
    data_dir: str = knob("data", "folder holding the datasets in their standard layouts", runtime=True)
    download: bool = knob(False, "download a missing dataset (needs network)", runtime=True)
    image_size: int = knob(224, "train/test image size in px; 0 = the dataset's own (paper: 224)", ge=0)
    augment: str = knob("fastai", "training augmentation", choices=("none", "crop_flip", "fastai"))
    split_seed: Optional[int] = knob(0, "seed of the train/test split for datasets without an official one",
                                     **SEED_BOUNDS)
    # Issue 21 (lth.data.sources): image folders and ImageNet in memory or streamed; both give the
    # same batches for the same seeds, so these are runtime fields (not hashed).
    loader: str = knob("auto", "image folders, imagenet, MODULE:FUNCTION datasets: decode into memory, or stream "
                       "from disk with DataLoader workers (auto: stream when they do not fit in device memory)",
                       runtime=True, choices=("auto", "memory", "stream"))
    workers: int = knob(0, "DataLoader workers decoding images (0: one per core, at most 8)", runtime=True, ge=0)
    bad_images: str = knob("fail", "an image that does not decode: fail (one line naming it) or skip it (logged)",
                           runtime=True, choices=("fail", "skip"))


@dataclass
class ModelConfig:
    model: str = knob("resnet18", "model: a registered name (lth.models: resnet18, vgg16, resnet20, lenet300_100, "
                      "conv2, conv4, conv6; plugins add more) or a spec: torchvision:NAME, timm:NAME, "
                      "hf:TYPE[,key=value...], hf:CONFIG.json, MODULE:FACTORY (docs/your-model-your-data.md)")
    init: Optional[str] = knob(None, "initialisation scheme (lth.models.init); unset: the model's reference "
                               "implementation's (a spec: its library's own)", choices=INITS)


@dataclass
class TrainConfig:
    recipe: str = knob("paper", "optimizer and LR-schedule preset; fields left unset take its values",
                       choices=RECIPES)
    optimizer: Optional[str] = knob(None, "optimizer (lth.training.optimizers)", choices=OPTIMIZERS)
    optimizer_params: dict = params_of(OPTIMIZERS, "the chosen optimizer's parameters")
    lr: Optional[float] = knob(None, "peak learning rate", gt=0)
    weight_decay: Optional[float] = knob(None, "weight decay (decoupled for AdamW)", ge=0)
    decay_bn_bias: Optional[bool] = knob(None, "apply weight decay to BatchNorm weights and biases too")
    lr_schedule: Optional[str] = knob(None, "LR schedule (lth.training.lr_schedules)", choices=LR_SCHEDULES)
    lr_schedule_params: dict = params_of(LR_SCHEDULES, "the chosen LR schedule's parameters")
    epochs: float = knob(50.0, "training budget of one round, in epochs (paper: 50)", gt=0)
    steps: int = knob(0, "training budget in optimizer steps; overrides --epochs when > 0", ge=0)
    batch_size: int = knob(64, "training batch size (the paper gives none: fastai's default, 64)", ge=1)
    eval_every: int = knob(1, "evaluate on the test split every this many epochs (0: only at the end)", ge=0)
    eval_batch_size: int = knob(1024, "batch size for evaluation", ge=1)
    bf16: bool = knob(True, "bf16 autocast (CUDA only)")
    channels_last: bool = knob(True, "channels_last memory format for the model and its batches (CPU: resnet20 step 0.75-0.84x the NCHW time)")
    compile: bool = knob(False, "torch.compile the model once per process", runtime=True)


@dataclass
class PruneConfig:
    schedule: str = knob("ocp", "in-round sparsity schedule (lth.pruning.schedules)", choices=SCHEDULES)
    schedule_params: dict = params_of(SCHEDULES, "the chosen schedule's parameters")
    criterion: str = knob("magnitude", "how weights are scored (lth.pruning.criteria)", choices=CRITERIA)
    scope: str = knob("local", "local: every layer to the target; global: one threshold over all layers",
                      choices=SCOPES)
    layers: str = knob("conv", "candidate layers: all conv+linear, conv only (fasterai, the paper's library: "
                       "the classifier stays dense), all but the output layer (OpenLTH)", choices=LAYER_SETS)
    layer_rate: Tuple[str, ...] = knob((), "per-layer rate factors GLOB=FACTOR (local scope); GLOB @output is the "
                                           "output layer (Frankle & Carbin: '@output=0.5')")
    exclude: Tuple[str, ...] = knob((), "glob patterns of weight names never pruned (e.g. 'fc.*')")
    rate: Optional[float] = knob(0.2, "fraction of remaining weights pruned per round (14 rounds of 0.2: 95.6 %)",
                                 gt=0, lt=1)
    final_sparsity: Optional[float] = knob(None, "sparsity after the last round; sets the per-round rate", gt=0, lt=1)
    rounds: int = knob(14, "IMP rounds", ge=1)
    restart: str = knob("rewind", "where each round restarts (lth.lottery.restart)", choices=RESTARTS)
    restart_params: dict = params_of(RESTARTS, "the chosen restart policy's parameters")
    prune_interval: int = knob(1, "consider a mask update every this many steps (1: before every step)", ge=1)
    # lth.pruning.updater: prune once some layer lags its target by more than this sparsity
    # (then every layer to its exact target; t = 1 is always exact). 0 = every step whose target
    # count rose: the exact per-step trajectory. LeNet-300-100 on the MNIST copy, OCP 0 -> 90 %:
    # 920 updates a round at 0, 435 at 1e-3 (lth.bench prune; README "Performance").
    prune_tolerance: float = knob(1e-3, "largest lag of a layer's sparsity behind the schedule before the "
                                        "mask is updated (0: every step, exact)", ge=0, le=0.05)


@dataclass
class SeedConfig:
    init_seed: int = knob(0, "seed of the weight initialisation W0", **SEED_BOUNDS)
    order_seed: int = knob(1, "seed of the data order", **SEED_BOUNDS)
    augment_seed: Optional[int] = knob(2, "seed of the data augmentation", **SEED_BOUNDS)
    prune_seed: Optional[int] = knob(3, "seed of random pruning (--criterion random)", **SEED_BOUNDS)


@dataclass
class RuntimeConfig:
    device: str = knob("auto", "cpu, cuda, cuda:N or auto", runtime=True)
    runs_root: str = knob("runs", "where run directories are created", runtime=True)
    progress: bool = knob(True, "progress bar on a terminal", runtime=True)
    # One thread per process by default: on a shared or oversubscribed CPU, OpenMP's spinning
    # barriers make torch's default (a thread per core) far slower (README "Performance": the
    # MNIST preset under load). Studies running N CPU workers set it per worker.
    threads: int = knob(1, "CPU threads of this process (torch.set_num_threads); 0: torch's default, "
                           "one per core", runtime=True, ge=0)
    # Issue 22 (lth.training.distributed): under torchrun, BatchNorm statistics over the global batch
    # instead of each rank's slice. Runtime like the world size: N ranks train the same run.
    sync_bn: bool = knob(False, "torchrun: SyncBatchNorm (batch statistics over all ranks; CUDA only)", runtime=True)
    # issue 23: watch a run (lth.training.loggers); written under RUN_DIR/logs, never hashed
    log: str = knob("none", "log metrics to tensorboard, wandb (offline) or mlflow (local file store) under "
                            "RUN_DIR/logs", runtime=True, choices=("none", "tensorboard", "wandb", "mlflow"))


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "prune": PruneConfig,
            "seeds": SeedConfig, "runtime": RuntimeConfig}
# choice field -> its parameters field, per section
CHOICES = {("train", "optimizer"): "optimizer_params", ("train", "lr_schedule"): "lr_schedule_params",
           ("prune", "schedule"): "schedule_params", ("prune", "restart"): "restart_params"}


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    seeds: SeedConfig = field(default_factory=SeedConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict:
        return {"format": FORMAT, **json.loads(json.dumps(dataclasses.asdict(self)))}  # tuples become lists

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> "RunConfig":
        if not isinstance(d, dict):
            raise LthError(f"{where}: expected an object of sections {', '.join(SECTIONS)}")
        d = dict(d)
        version = d.pop("format", 1)
        if version not in (1, 2, FORMAT):
            raise LthError(f"{where}: config format {version!r} is not one this lth reads (1 to {FORMAT})")
        if version == 1:
            d = migrate_v1(d)
        if version in (1, 2):
            d = migrate_v2(d)
        unknown = set(d) - set(SECTIONS)
        if unknown:
            raise LthError(f"{where}: unknown section {sorted(unknown)[0]!r}; allowed: {', '.join(SECTIONS)}")
        cfg = cls()
        for section, values in d.items():
            _set_fields(getattr(cfg, section), values, f"{where}: {section}")
        return cfg

    def resolved(self) -> "RunConfig":
        """A normalised copy: recipe values filled in, the chosen entries' parameters complete
        and range-checked, and every field the run will not read set to None."""
        plugins.load()   # a plugin's entries resolve like the built-in ones
        cfg = RunConfig.from_dict(self.to_dict())
        t, p = cfg.train, cfg.prune
        recipe = _recipe(t.recipe)
        for name, value in recipe.items():
            if name in {f.name for f in dataclasses.fields(TrainConfig)} and getattr(t, name) is None:
                setattr(t, name, value)
        for (section, choice), params_field in CHOICES.items():
            _resolve_choice(getattr(cfg, section), choice, params_field, recipe)
        # Traits of the chosen entries (lth.registry), never their names:
        if not SCHEDULES.get(p.schedule).traits["prunes"]:   # the unpruned reference: one round, nothing to prune
            defaults = PruneConfig()
            p.schedule_params = {}
            p.rounds, p.rate, p.final_sparsity, p.prune_interval = 1, None, None, 1
            p.criterion, p.scope, p.layers, p.layer_rate, p.exclude = defaults.criterion, defaults.scope, "all", (), ()
        if p.final_sparsity is not None:
            p.rate = None                  # the final sparsity sets the per-round rate
        if not CRITERIA.get(p.criterion).traits["seeded"]:
            cfg.seeds.prune_seed = None    # only a seeded criterion (random pruning) draws from it
        if cfg.data.augment == "none":
            cfg.seeds.augment_seed = None  # no augmentation, no draws
        dataset = cfg.data.dataset
        official = (DATASETS.get(dataset).traits["official_split"] if dataset in DATASETS
                    else not dataset.startswith("imagefolder:"))   # a folder without val/ is split (issue 21)
        if official:
            cfg.data.split_seed = None     # the dataset's official split is used
        return cfg

    def experiment_dict(self) -> dict:
        """The fields that decide the results (no runtime fields): what the hash covers."""
        out = {"format": FORMAT}
        for section, cls in SECTIONS.items():
            values = dataclasses.asdict(getattr(self, section))
            kept = {f.name: values[f.name] for f in dataclasses.fields(cls) if not f.metadata["runtime"]}
            if kept:
                out[section] = kept
        if ":" in self.model.model:   # issue 21: an external model's library version (and config file) too
            from lth.models import external
            out["model"]["identity"] = external.identity(self.model.model)
        return json.loads(json.dumps(out))

    def hash(self) -> str:
        text = json.dumps(self.experiment_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


def _recipe(name: str) -> dict:
    """The recipe's values, every key a training field or a parameter of some optimizer or LR
    schedule (a plugin's recipe with a misspelt key is refused, not silently ignored)."""
    entry = RECIPES.get(name)
    known = ({f.name for f in dataclasses.fields(TrainConfig)} | set(OPTIMIZERS.param_fields())
             | set(LR_SCHEDULES.param_fields()))
    unknown = sorted(set(entry.value) - known)
    if unknown:
        raise LthError(f"recipe {name!r} ({entry.source}) sets {unknown[0]!r}, which is no training field "
                       f"and no parameter of an optimizer or LR schedule")
    return dict(entry.value)


def _resolve_choice(section, choice: str, params_field: str, recipe: dict) -> None:
    registry: Registry = section.__dataclass_fields__[params_field].metadata["registry"]
    name = getattr(section, choice)
    if name is None:
        raise LthError(f"{flag(choice)} is unset and the recipe does not choose one")
    entry = registry.get(name)
    explicit = getattr(section, params_field)
    for key in explicit:
        if key not in entry.param_names():
            owners = registry.owners(key)
            where = f"{registry.kind} {', '.join(owners)}" if owners else f"no {registry.kind}"
            raise LthError(f"{flag(key)} belongs to {where}, not to the chosen {registry.kind} {name!r}")
    values = {k: recipe[k] for k in entry.param_names() if k in recipe}
    values.update(explicit)
    params = entry.make_params({k: _coerce(entry.params.__dataclass_fields__[k], v, f"{registry.kind} {name}")
                                for k, v in values.items()})
    setattr(section, params_field, json.loads(json.dumps(dataclasses.asdict(params))))


def migrate_v1(d: dict) -> dict:
    """A format-1 config (flat optimizer, LR-schedule and pruning knobs) as format 2, so runs
    made before the registries still open for analysis and `lth runs list`. Format 1 had no
    momentum cycling and pruned every layer: the migrated config says so explicitly."""
    d = json.loads(json.dumps(d))
    t, p = d.get("train", {}), d.get("prune", {})
    if t:
        momentum, beta2, eps = t.pop("momentum", None), t.pop("beta2", None), t.pop("eps", None)
        if t.get("optimizer") == "adamw":
            t["optimizer_params"] = _present(beta1=momentum, beta2=beta2, eps=eps)
        elif t.get("optimizer") == "sgd":
            t["optimizer_params"] = _present(momentum=momentum)
        warmup, div, div_final = t.pop("warmup", None), t.pop("div", None), t.pop("div_final", None)
        milestones, gamma = t.pop("milestones", None), t.pop("gamma", None)
        schedule = t.get("lr_schedule")
        t["lr_schedule_params"] = (_present(warmup=warmup, div=div, div_final=div_final, moms=[]) if schedule == "one_cycle" else
                                   _present(warmup=warmup, milestones=milestones, gamma=gamma) if schedule == "step" else
                                   _present(warmup=warmup) if schedule == "constant" else {})
    if p:
        alpha, beta, start = p.pop("alpha", None), p.pop("beta", None), p.pop("start", None)
        end, steps = p.pop("end", None), p.pop("prune_steps", None)
        schedule = p.get("schedule")
        p["schedule_params"] = (_present(alpha=alpha, beta=beta) if schedule == "ocp" else
                                _present(start=start, end=end, prune_steps=steps) if schedule == "iterative" else
                                _present(start=start, end=end) if schedule == "agp" else
                                _present(start=start) if schedule == "one_shot" else {})
        method = p.pop("method", "local")
        p["criterion"] = "random" if method == "random" else "magnitude"
        p["scope"] = "global" if method == "global" else "local"
        p["layers"] = "all"      # format 1 pruned every conv and linear layer
        p["restart"] = "rewind"
        p["restart_params"] = _present(rewind_step=p.pop("rewind_step", None))
    return d


def migrate_v2(d: dict) -> dict:
    """A format-1 or -2 config as format 3: those runs updated the mask whenever a target count
    rose, which is prune_tolerance 0."""
    d = dict(d)
    if isinstance(d.get("prune"), dict):  # a config.json always has it; a file without one takes the defaults
        d["prune"] = {"prune_tolerance": 0.0, **d["prune"]}
    return d


def _present(**values) -> dict:
    return {k: v for k, v in values.items() if v is not None}


# ---- typed fields -------------------------------------------------------------------------

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
    if base is dict:
        if not isinstance(value, dict):
            raise LthError(f"{where} must be an object, got {value!r}")
        return dict(value)
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


# ---- the flat namespace: section fields and entry parameters by name ------------------------

def _section_fields():
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if "registry" not in f.metadata:
                yield section, f


def _entry_params():
    """(section, params field, registry, param name, dataclass field) for every entry parameter."""
    for (section, _), params_field in CHOICES.items():
        registry = SECTIONS[section].__dataclass_fields__[params_field].metadata["registry"]
        for name, f in registry.param_fields().items():
            yield section, params_field, registry, name, f


def _flat_owners() -> Dict[str, tuple]:
    plugins.load()   # a plugin's entry parameters are flat names too (flags, study overrides)
    owners = {f.name: ("field", section, f) for section, f in _section_fields()}
    for section, params_field, registry, name, f in _entry_params():
        if name in owners and owners[name][0] == "field":
            entry = registry.get(registry.owners(name)[0])
            raise LthError(f"parameter {name!r} of {registry.kind} {entry.name!r} ({entry.source}) is named like "
                           f"a config field: one flag cannot mean both; rename the parameter")
        owners.setdefault(name, ("param", section, params_field, f))
    return owners


def apply_overrides(cfg: RunConfig, overrides: dict, where: str) -> None:
    """Set flat names (section fields or entry parameters, as in PRESETS) on the right place.
    Choices are set first; changing a choice drops the parameters given for the old one."""
    owners = _flat_owners()
    choice_names = {choice for _, choice in CHOICES}
    for key in sorted(overrides, key=lambda k: k not in choice_names):
        if key not in owners:
            raise LthError(f"{where}: unknown field {key!r}")
        value = overrides[key]
        owner = owners[key]
        if owner[0] == "field":
            section_obj = getattr(cfg, owner[1])
            params_field = CHOICES.get((owner[1], key))
            if params_field is not None and getattr(section_obj, key) != value:
                setattr(section_obj, params_field, {})
            _set_fields(section_obj, {key: value}, where)
        else:
            _, section, params_field, f = owner
            getattr(getattr(cfg, section), params_field)[key] = _coerce(f, value, where)


def differing_fields(a: dict, b: dict, prefix: str = "") -> List[str]:
    """Dotted names of the leaves where two config dicts differ."""
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += differing_fields(x, y, f"{prefix}{k}.")
        elif x != y:
            out.append(f"{prefix}{k}")
    return out


# ---- presets ------------------------------------------------------------------------------
PRESETS = {
    # The paper's LTH setting (section 5): ResNet-18, CIFAR-10 at 224 px, fastai augmentation,
    # the paper's recipe, 50 epochs a round. These are the field defaults.
    "paper": {},
    # The same at CIFAR's own 32x32 (about 50x cheaper a step; the setting lth.bench measures).
    "paper32": {"image_size": 0, "augment": "crop_flip"},
    # OpenLTH's CIFAR-10 ResNet-20 lottery-ticket setting: SGD, global magnitude pruning.
    "openlth": {"model": "resnet20", "image_size": 0, "augment": "crop_flip", "recipe": "openlth",
                "epochs": 160.0, "batch_size": 128, "scope": "global", "layers": "all_but_output"},
    # LeNet-300-100 on MNIST (Frankle & Carbin's first experiment), with the paper's recipe.
    # Measured on the 3,009-image MNIST copy, 2 shared CPU cores, 1 thread: an OCP round 7.5-8.1 s
    # with lth.run's evaluation every epoch; its training alone 2.6 s CPU, 2.0 s dense (lth.bench prune).
    # Frankle & Carbin prune the output layer at half the rate.
    "mnist": {"dataset": "mnist", "model": "lenet300_100", "image_size": 0, "augment": "none",
              "lr": 3e-3, "epochs": 20.0, "batch_size": 64, "layers": "all", "layer_rate": ("@output=0.5",)},
    # Offline and small: scikit-learn's digits, LeNet-300-100, a few epochs a round.
    # Measured on 2 shared CPU cores (load 8), 1 thread: 14 OCP rounds of 1.2 s, 38 s with start-up.
    "quick": {"dataset": "digits", "model": "lenet300_100", "image_size": 0, "augment": "none",
              "lr": 3e-3, "epochs": 10.0, "batch_size": 64, "eval_every": 5, "layers": "all",
              "layer_rate": ("@output=0.5",)},
    # ---- the field's flagship settings (issue 21); PRESET_SOURCES says where each comes from ----
    "imagenet_resnet50": {
        "dataset": "imagenet", "model": "torchvision:resnet50", "image_size": 224, "augment": "fastai",
        "recipe": "openlth", "lr": 0.4, "batch_size": 1024, "epochs": 90.0, "weight_decay": 1e-4,
        "warmup": 5 / 90, "milestones": (30 / 90, 60 / 90, 80 / 90), "gamma": 0.1, "eval_every": 5,
        "schedule": "imp", "scope": "global", "layers": "all_but_output", "rate": 0.2,
        "restart": "rewind", "rewind_step": 6 * (1281167 // 1024)},   # k = 6 epochs of 1,251 steps
    "vit": {
        "dataset": "imagenet", "model": "timm:deit_small_patch16_224", "image_size": 224, "augment": "fastai",
        "recipe": "paper", "optimizer": "adamw", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
        "weight_decay": 0.05, "decay_bn_bias": False, "lr_schedule": "one_cycle", "warmup": 5 / 300,
        "div": 1000.0, "div_final": 100.0, "moms": (), "batch_size": 1024, "epochs": 300.0, "eval_every": 10,
        "schedule": "imp", "scope": "global", "layers": "all_but_output", "rate": 0.2},
    "bert": {
        "model": "hf:bert", "augment": "none", "recipe": "paper", "optimizer": "adamw", "lr": 2e-5,
        "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01, "decay_bn_bias": False,
        "lr_schedule": "linear", "warmup": 0.0, "batch_size": 32, "epochs": 3.0,
        "schedule": "imp", "scope": "global", "layers": "all_but_output", "rate": 0.1, "restart": "rewind"},
}

# Where each flagship preset comes from, and what of its source lth does not reproduce
# (printed by `python -m lth.run --preset NAME --dry-run`).
PRESET_SOURCES = {
    "imagenet_resnet50": (
        "Frankle et al. 2020, 'Linear Mode Connectivity and the Lottery Ticket Hypothesis', and OpenLTH's "
        "imagenet_resnet_50 defaults: ResNet-50, 90 epochs, batch 1024, SGD lr 0.4 momentum 0.9, wd 1e-4, 5 warm-up "
        "epochs, x0.1 at epochs 30/60/80; IMP with global magnitude pruning of 20% a round, the fc layer dense, "
        "late rewinding to epoch k = 6 (vary --rewind-step: the k at which tickets become stable is what that "
        "paper measures). Not reproduced: RandomResizedCrop (lth's batched fastai augmentation stands in); "
        "the dataset is the ILSVRC layout under --data-dir"),
    "vit": (
        "Touvron et al. 2021, 'Training data-efficient image transformers' (DeiT-S): 300 epochs, batch 1024, "
        "AdamW lr 5e-4 x batch/512, wd 0.05, 5 warm-up epochs from 1e-6, cosine to 1e-5; IMP as OpenLTH "
        "(global, 20% a round, head dense). Not reproduced: RandAugment, Mixup/CutMix, label smoothing, "
        "random erasing, stochastic depth (lth's fastai augmentation stands in)"),
    "bert": (
        "Chen et al. 2020, 'The Lottery Ticket Hypothesis for Pre-trained BERT Networks': BERT-base, fine-tuned "
        "3 epochs, batch 32, AdamW lr 2e-5 with linear decay; IMP pruning 10% a round, globally, of the encoder "
        "(embeddings and the classifier dense), every round rewound to the pre-trained weights. lth never "
        "downloads weights: hf:bert is BERT-base's architecture at random init; for rewinding to pre-trained "
        "weights give a MODULE:FACTORY that loads them from disk (W0 is then the pre-trained network). Give the "
        "task with --dataset MODULE:FUNCTION returning token-id datasets (docs/your-model-your-data.md)"),
}


# ---- the CLI ------------------------------------------------------------------------------

def _flag_type(base, name, bounds=None):
    """The argparse type of a config flag: its knob's range checked as it is parsed (the same
    check lth.knobs.check_bounds runs on the whole config later)."""
    if base in (int, float):
        return number(base, name, **(bounds or {}))
    def parse(text):
        try:
            return base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag(name)} takes a {base.__name__}, got {text!r}") from None
    parse.__name__ = base.__name__
    return parse


def _check_dataset(name: str) -> None:
    if name not in DATASETS:   # issue 21: imagenet, imagefolder:DIR, MODULE:FUNCTION
        from lth.data import sources
        sources.check(name)


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
    from lth.knobs import describe_bounds
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
                             f"{'; ' + describe_bounds(bounds) if bounds else ''}]")
    seen = set()
    for _, _, registry, name, f in _entry_params():
        if name in seen:
            continue
        seen.add(name)
        owners = registry.owners(name)
        defaults = ", ".join(f"{o} {_default(registry.get(o).params.__dataclass_fields__[name])}" for o in owners)
        bounds = f.metadata["bounds"]
        _add_flag(parser, f, f"{registry.kind} {', '.join(owners)}: {f.metadata['help']} [default: {defaults}"
                             f"{'; ' + describe_bounds(bounds) if bounds else ''}]")
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


def from_overrides(overrides: dict, preset: Optional[str] = None) -> "ResolvedConfig":
    """A resolved, validated config from flat names (as in PRESETS) over an optional preset:
    how a study or a script describes a run."""
    cfg = RunConfig()
    if preset is not None:
        if preset not in PRESETS:
            raise LthError(f"unknown preset {preset!r}; choose one of {', '.join(sorted(PRESETS))}")
        apply_overrides(cfg, PRESETS[preset], f"preset {preset}")
    apply_overrides(cfg, overrides, "overrides")
    return resolve(cfg)


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


class ResolvedConfig(RunConfig):
    """A RunConfig resolved and validated once, at the edge (`resolve`): the one config type
    a run's code takes. Treat it as read-only; to change a field, apply overrides to a
    RunConfig and resolve again."""


def resolve(cfg: RunConfig) -> ResolvedConfig:
    """Resolve (RunConfig.resolved) and validate, once: a ResolvedConfig comes back as it is,
    so the code below the command line never resolves or validates again."""
    if isinstance(cfg, ResolvedConfig):
        return cfg
    normal = cfg.resolved()
    validate(normal)
    return ResolvedConfig(**{f.name: getattr(normal, f.name) for f in dataclasses.fields(RunConfig)})


def validate(cfg: RunConfig) -> None:
    """Every declared range (lth.knobs), then what needs the registries of data and models.
    Raises an LthError naming the value and what is allowed; nothing has been written yet."""
    plugins.load()
    # "unknown dataset 'x'; choose one of ..." before the ranges: a registered name, or (issue 21)
    # imagenet, imagefolder:DIR, MODULE:FUNCTION; a registered model, or a spec
    _check_dataset(cfg.data.dataset)
    check_model(cfg.model.model)
    if cfg.model.init is not None:
        INITS.get(cfg.model.init)
    for section in SECTIONS:
        check_bounds(getattr(cfg, section))
    p = cfg.prune
    if p.layer_rate and not SCOPES.get(p.scope).traits["per_layer"]:
        raise LthError(f"--layer-rate sets per-layer rates, which --scope {p.scope} (one threshold) cannot follow; "
                       f"use --scope {' or '.join(SCOPES.with_trait('per_layer'))}")
    from lth.pruning.targets import parse_layer_rates
    parse_layer_rates(p.layer_rate)
    check_lr_context(cfg)


def check_lr_context(cfg: RunConfig) -> None:
    """A retraining LR schedule (lth.training.retrain_lr) reads a dense run's LR history, which only the
    continue restart has; ALLR also reads the phase's pruning, which must precede its first step."""
    from lth.pruning import schedules
    from lth.training.retrain_lr import PRUNING, context_needs
    t, p = cfg.train, cfg.prune
    needs = context_needs(t.lr_schedule)
    if needs is None:
        return
    if not RESTARTS.get(p.restart).traits["from_dense_run"]:
        raise LthError(f"--lr-schedule {t.lr_schedule} retrains from a dense run's LR history: "
                       f"use --restart {' or '.join(RESTARTS.with_trait('from_dense_run'))} --from-run DIR "
                       f"(got --restart {p.restart})")
    if needs == PRUNING:
        at_start = schedules.bind(p.schedule, p.schedule_params, 0.0, 1.0)(0.0)
        if at_start != 1.0:
            raise LthError(f"--lr-schedule {t.lr_schedule} sets its LR from the phase's pruning, which --schedule "
                           f"{p.schedule} does not do before the first step: use --schedule one_shot --start 0")
