"""The device-hours a study's tasks will take: an estimate, from measured throughput when there is
one, and says where each figure came from.

Cost of a task = images it trains / training images per second, plus its evaluations (test
images at about 3x the training rate: a forward pass without the backward):
    run     rounds x (budget steps x batch) + evaluations every eval_every epochs and at the end
    copy    the copies' budget (the run's, or analysis.stability epochs/steps) + one evaluation
    interp  alphas x (test images + bn_batches x batch when BatchNorm statistics are recomputed)

Training images per second per (model, image size, batch, device kind), first source found:
  recorded  the mean images_per_s of finished rounds under the runs root with the same key
  timed     (CPU only) training steps timed here, now, for half a second (no masking: an
            overestimate of the speed for schedules that update the mask every step)
  flops     training FLOP per image (counted on the meta device: no compute) at an assumed
            sustained rate, --assume-tflops. Default 100 TFLOP/s on cuda: the project's H100
            target for resnet18 at 32 px in bf16 (40,000 img/s x 3.33 GFLOP = 133 TFLOP/s, the
            README's performance section), discounted for lth's per-step masking and on-device
            augmentation. An assumption, not a measurement: no GPU measured these figures.
Dataset sizes come from the data when it loads, else from the official split sizes.
"""
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

from lth.config import RunConfig
from lth.data import text as text_data
from lth.errors import LthError
from lth.runs.store import RunStore
from lth.study.plan import Plan

log = logging.getLogger(__name__)

EVAL_SPEEDUP = 3.0   # a forward pass costs about a third of a training step (forward + backward)
# (train images, test images, classes, channels, native size) of the full datasets, for a dataset
# that is not on this machine. Caltech-101: 8,677 images without BACKGROUND_Google, lth's 80/20 split.
OFFICIAL = {"cifar10": (50000, 10000, 10, 3, 32), "cifar100": (50000, 10000, 100, 3, 32),
            "caltech101": (6942, 1735, 101, 3, 224), "mnist": (60000, 10000, 10, 1, 28),
            "digits": (1438, 359, 10, 1, 8),
            "imagenet": (1281167, 50000, 1000, 3, 224),   # ILSVRC-2012 classification (issue 21)
            # GLUE: train / validation rows (validation is lth's test split); the size is --max-length
            "glue:cola": (8551, 1043, 2, 1, 0), "glue:sst2": (67349, 872, 2, 1, 0), "glue:mrpc": (3668, 408, 2, 1, 0),
            "glue:qqp": (363846, 40430, 2, 1, 0), "glue:mnli": (392702, 9815, 3, 1, 0),
            "glue:qnli": (104743, 5463, 2, 1, 0), "glue:rte": (2490, 277, 2, 1, 0), "glue:wnli": (635, 71, 2, 1, 0)}
TIMED_SECONDS = 0.5   # time training steps for at least this long per key (after one untimed step)
TIMED_MAX_FLOP = 2e11  # the timed batch is cut to stay under this many FLOP a step (a few s on a CPU)


@dataclass(frozen=True)
class Facts:
    n_train: int
    n_test: int
    num_classes: int
    in_channels: int
    native_size: int
    source: str


@dataclass
class Estimator:
    runs_root: Path
    device_kind: str            # cpu or cuda: what the estimate is for
    assume_tflops: float = 100.0

    def __post_init__(self):
        self.facts: Dict[Tuple[str, str, int], Facts] = {}
        self.rates: Dict[tuple, Tuple[float, str]] = {}
        self.recorded = self._recorded()

    # ---- inputs ----
    def dataset(self, cfg: RunConfig) -> Facts:
        key = (cfg.data.dataset, cfg.data.data_dir, cfg.data.split_seed, cfg.data.max_length)   # length: text's size
        if key not in self.facts:
            from lth.data import datasets, sources
            try:
                if sources.is_source(cfg.data.dataset):   # issue 21: folders and ImageNet are scanned, not decoded
                    self.facts[key] = Facts(*sources.facts(cfg), f"{cfg.data.dataset} as found")
                else:
                    d = datasets.load(key[0], key[1], False, key[2])
                    self.facts[key] = Facts(len(d.train_y), len(d.test_y), d.num_classes, d.in_channels,
                                            d.native_size, f"{cfg.data.dataset} as found in {cfg.data.data_dir}")
            except LthError:
                if cfg.data.dataset not in OFFICIAL:
                    raise
                n_train, n_test, classes, channels, size = OFFICIAL[cfg.data.dataset]
                self.facts[key] = Facts(n_train, n_test, classes, channels, size or cfg.data.max_length,
                                        f"{cfg.data.dataset}: official size (not found here)")
        return self.facts[key]

    def _recorded(self) -> Dict[tuple, List[float]]:
        out: Dict[tuple, List[float]] = {}
        root = Path(self.runs_root)
        if not root.is_dir():
            return out
        for path in root.iterdir():
            store = RunStore(path)
            try:
                if not path.is_dir() or not store.is_run():
                    continue
                meta = store.config()
                c = meta["config"]
                kind = str(meta.get("device", "cpu")).split(":")[0]
                text = text_data.is_text(c["data"]["dataset"])
                size = c["data"].get("max_length") if text else c["data"]["image_size"] or None
                for r in store.finished_rounds():
                    rate = store.load_summary(r).get("images_per_s")
                    if rate:
                        key = (c["model"]["model"], c["data"]["dataset"], size, c["train"]["batch_size"], kind)
                        out.setdefault(key, []).append(float(rate))
            except (LthError, KeyError, TypeError):
                continue
        return out

    def rate(self, cfg: RunConfig) -> Tuple[float, str]:
        """Training images per second of the cell's model/size/batch on the estimate's device."""
        facts = self.dataset(cfg)
        size = cfg.data.image_size or facts.native_size
        # a text model's speed depends on --max-length (its image_size is 0)
        key = (cfg.model.model, cfg.data.dataset, size if is_text(cfg) else cfg.data.image_size or None,
               cfg.train.batch_size, self.device_kind)
        if key in self.rates:
            return self.rates[key]
        if key in self.recorded:
            values = self.recorded[key]
            found = (sum(values) / len(values), f"recorded ({len(values)} rounds)")
        elif self.device_kind == "cpu":
            found = (self._timed(cfg, facts, size), "timed here")
        else:
            flops, per = _flops(cfg, facts, size)
            found = (self.assume_tflops * 1e12 / flops, f"flops ({flops / 1e9:.2f} {per} at "
                                                        f"{self.assume_tflops:g} TFLOP/s)")
        self.rates[key] = found
        return found

    def _timed(self, cfg: RunConfig, facts: Facts, size: int) -> float:
        """Training images/s of a few steps of the model here (random data, AdamW), at the
        config's batch (cut for big models; images/s then taken as batch-independent)."""
        import torch
        import torch.nn.functional as F
        from lth import models
        from lth.study import text_cost
        flops, _ = _flops(cfg, facts, size)
        batch = max(1, min(cfg.train.batch_size, int(TIMED_MAX_FLOP // flops)))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            if is_text(cfg):   # random weights from the config (no pre-trained weights needed to time)
                model, config, _ = text_cost.build_for_cost(cfg.model.model, facts.num_classes, size, "cpu")
                x = text_cost.random_tokens(config, batch, size)
            else:
                model = models.build(cfg.model.model, facts.num_classes, facts.in_channels, size)
                x = torch.randn(batch, facts.in_channels, size, size)
            y = torch.randint(0, facts.num_classes, (batch,))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        steps, began = -1, 0.0
        while steps < 3 or time.perf_counter() - began < TIMED_SECONDS:
            if steps == 0:
                began = time.perf_counter()
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            steps += 1
        return batch * steps / (time.perf_counter() - began)

    # ---- costs ----
    def seconds(self, plan: Plan, task) -> float:
        cell = plan.cells_by_dir[task.run_dir]
        cfg, facts = cell.cfg, self.dataset(cell.cfg)
        rate, _ = self.rate(cfg)
        spe = max(1, facts.n_train // cfg.train.batch_size)
        if task.kind == "run":
            steps = cfg.train.steps or max(1, round(cfg.train.epochs * spe))
            epochs = steps / spe
            evals = (int(epochs // cfg.train.eval_every) if cfg.train.eval_every else 0) + 1
            per_round = steps * cfg.train.batch_size / rate + evals * facts.n_test / (EVAL_SPEEDUP * rate)
            return cfg.prune.rounds * per_round
        s = task.payload["stability"]
        if task.kind == "copy":
            if s["steps"]:
                steps = s["steps"]
            elif s["epochs"]:
                steps = max(1, round(s["epochs"] * spe))
            else:
                steps = cfg.train.steps or max(1, round(cfg.train.epochs * spe))
            return steps * cfg.train.batch_size / rate + facts.n_test / (EVAL_SPEEDUP * rate)
        images = s["alphas"] * (facts.n_test + (s["bn_batches"] * cfg.train.batch_size if s["bn"] == "reset" else 0))
        return images / (EVAL_SPEEDUP * rate)


def _flops(cfg: RunConfig, facts: Facts, size: int) -> Tuple[float, str]:
    """Training FLOP an input, and what that is: "GFLOP/sequence: ..." for a text model (issue 21:
    3 x (2 N + attention) FLOP a token, lth.study.text_cost), "GFLOP/img" for an image model."""
    if is_text(cfg):
        from lth.study import text_cost
        flops, detail = text_cost.training_flops(cfg.model.model, facts.num_classes, size)
        return flops, f"GFLOP/sequence: {detail};"
    return training_flops(cfg.model.model, facts, size), "GFLOP/img"


def is_text(cfg: RunConfig) -> bool:
    """A text dataset (glue:, hf-text:): sequences of --max-length tokens, not images."""
    return text_data.is_text(cfg.data.dataset)


def training_flops(model_name: str, facts: Facts, size: int) -> float:
    """FLOP of one training step (forward + backward) per image, counted on the meta device."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode
    from lth import models
    with torch.device("meta"):
        model = models.build(model_name, facts.num_classes, facts.in_channels, size)
        x = torch.zeros(2, facts.in_channels, size, size)
        y = torch.zeros(2, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / 2
