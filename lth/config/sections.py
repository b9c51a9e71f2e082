"""The sections of a run config and the run config itself: fields (lth.knobs) that generate the
CLI, the chosen registry entries' parameters, resolution (recipe values, only what the run
reads), the hash, and validation once at the edge (resolve). lth.config re-exports the API."""
import dataclasses
import hashlib
import json
import typing
from pathlib import Path
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from lth import plugins
from lth.data.datasets import DATASETS
from lth.errors import LthError
from lth.knobs import SEED_BOUNDS, check_bounds, flag, knob
from lth.models import check as check_model, external
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
from lth.config.migrate import migrate_v1, migrate_v2


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
                        "imagefolder:DIR, glue:TASK or hf-text:SOURCE (text, with --tokenizer), or MODULE:FUNCTION returning "
                        "torch Datasets (docs/your-model-your-data.md)")
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
    # Issue 21 (lth.data.device_decode): where an image folder's / ImageNet's JPEGs are decoded.
    # Hashed, unlike loader: nvJPEG's pixels are not libjpeg's and the device's float resize is
    # not PIL's (within 1 per pixel), so the batches differ. Left out of the hash at its default
    # (experiment_dict), so runs made before the field existed keep their directories.
    decode: str = knob("cpu", "image folders, imagenet: decode JPEGs on the cpu (PIL, in DataLoader workers) or on "
                       "the run's device (torchvision's decode_jpeg: nvJPEG on CUDA; other formats by PIL)",
                       choices=("cpu", "device"))
    # Text datasets (glue:TASK, hf-text:SOURCE; lth.data.text). Hashed for those, and left out of
    # any other run's hash (TEXT_FIELDS), so image runs keep the hashes they had.
    tokenizer: str = knob("", "text datasets: a tokenizer folder (save_pretrained), a BERT vocab.txt, or a Hub "
                          "name; empty: the --model's own when it is hf:DIR or a Hub id")
    max_length: int = knob(128, "text datasets: tokens a sequence (or pair) is truncated to (Chen et al., BERT "
                           "on GLUE: 128)", ge=4, le=100000)
    text_columns: Tuple[str, ...] = knob((), "text datasets: the text column, or two for sentence pairs "
                                             "(default: the GLUE task's; else 'sentence' or 'text')")
    label_column: str = knob("label", "text datasets: the label column (integers or a ClassLabel; floats: "
                             "regression, refused)")
    train_split: str = knob("train", "text datasets: the split trained on")
    test_split: str = knob("", "text datasets: the split evaluated on; empty: validation (GLUE's test labels "
                           "are hidden; MNLI: validation_matched), else validation or test")


TEXT_FIELDS = ("tokenizer", "max_length", "text_columns", "label_column", "train_split", "test_split")


def _is_text(dataset: str) -> bool:
    from lth.data.text import is_text
    return is_text(dataset)


@dataclass
class ModelConfig:
    model: str = knob("resnet18", "model: a registered name (lth.models: resnet18, vgg16, resnet20, lenet300_100, "
                      "conv2, conv4, conv6; plugins add more) or a spec: torchvision:NAME, timm:NAME, "
                      "hf:TYPE[,key=value...], hf:CONFIG.json, hf:DIR or hf:HUB_ID (pre-trained weights), MODULE:FACTORY "
                      "(docs/your-model-your-data.md)")
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
        if _is_text(dataset):              # token ids: no images to size or augment
            cfg.data.image_size, cfg.data.augment, cfg.seeds.augment_seed = 0, "none", None
            if not cfg.data.tokenizer and external.is_pretrained(cfg.model.model):
                from lth.data.tokenizer import has_tokenizer
                source = external.parse(cfg.model.model).name     # the pre-trained model's own, if it has one
                if not Path(source).expanduser().is_dir() or has_tokenizer(Path(source).expanduser()):
                    cfg.data.tokenizer = source
        if not (dataset.startswith("imagefolder:") or dataset == "imagenet"):
            cfg.data.decode = "cpu"        # only files are decoded: other datasets are read as they are
        return cfg

    def experiment_dict(self) -> dict:
        """The fields that decide the results (no runtime fields): what the hash covers."""
        out = {"format": FORMAT}
        for section, cls in SECTIONS.items():
            values = dataclasses.asdict(getattr(self, section))
            kept = {f.name: values[f.name] for f in dataclasses.fields(cls) if not f.metadata["runtime"]}
            if section == "data" and kept.get("decode") == "cpu":
                del kept["decode"]        # the default: the hash of every run made before --decode
            if kept:
                out[section] = kept
        if _is_text(self.data.dataset):   # the tokenizer's content, beside its name
            from lth.data import text
            out["data"]["identity"] = text.identity(self.data)
        else:
            for name in TEXT_FIELDS:
                out["data"].pop(name)
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


def _check_dataset(name: str) -> None:
    if name not in DATASETS:   # issue 21: imagenet, imagefolder:DIR, MODULE:FUNCTION
        from lth.data import sources
        sources.check(name)


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
    if _is_text(cfg.data.dataset):   # the tokenizer loads and pads with id 0, before anything is written
        from lth.data.tokenizer import check_tokenizer
        check_tokenizer(cfg.data.tokenizer)
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
