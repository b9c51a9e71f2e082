"""Metric loggers: watch a run in TensorBoard, Weights & Biases (offline) or MLflow.

    python -m lth.run --preset quick --log tensorboard   # then: tensorboard --logdir RUN_DIR/logs
    python -m lth.run --preset quick --log mlflow        # mlflow ui --backend-store-uri sqlite:///RUN_DIR/logs/mlflow/mlflow.db
    python -m lth.run --preset quick --log wandb         # offline; wandb sync RUN_DIR/logs/wandb/offline-run-*

Each logger is a lth.training.callbacks.Callback that lth.lottery.imp passes to every round's
train() (`--log`, a runtime field: it does not change the run's hash). What is logged, with the
step counted over the whole run (round r's step k is (r - 1) * T + k, T the round's budget):

    sparsity/total, sparsity/<layer>   per step, but only at steps where the mask changed (the
                                       updater keeps the pruned counts on the host, so checking
                                       costs nothing; global scope's full re-selection: one sync)
    train/lr                           every step (a host value: no sync)
    epoch/<metric>                     the epoch line: train loss and accuracy, test accuracy, ...
    round/<metric>                     each round's summary: test accuracy, sparsity, and
                                       mask_overlap/jaccard (with the previous round's mask), per layer too

The packages are optional extras (setup.cfg: tensorboard, wandb, mlflow), imported only when chosen.
"""
import logging
from pathlib import Path
from typing import Dict, List, Optional

from lth.errors import LthError
from lth.training.callbacks import Callback

log = logging.getLogger(__name__)

LOGGERS = ("none", "tensorboard", "wandb", "mlflow")
BATCH = 1000  # MLflow's log_batch takes at most 1000 metrics


def _require(module: str, extra: str, what: str):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise LthError(f"--log {what} needs the {extra} package: pip install 'lth[{extra}]'") from None


class MetricLogger(Callback):
    """What every backend logs; a backend implements `scalars(values, step)` and `close()`."""

    def __init__(self):
        self.round = 1
        self.offset = 0                       # steps of the earlier rounds (the global step axis)
        self._last: Optional[tuple] = None    # the pruned counts last logged
        self._last_total: Optional[int] = None

    # ---- the backend ---------------------------------------------------------------------------
    def scalars(self, values: Dict[str, float], step: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    # ---- the hooks -----------------------------------------------------------------------------
    def start_round(self, r: int, total: int) -> None:
        """Called by the IMP driver before round r's train(): the step axis continues."""
        self.round, self.offset, self._last, self._last_total = r, (r - 1) * total, None, None

    def after_step(self, loop, loss) -> None:
        self.scalars({"train/lr": loop.lr}, self.offset + loop.step)
        # the mask trained under at step k was updated before it: log it at step k (loop.step - 1)
        self._sparsity(loop, loop.step - 1)

    def on_epoch_end(self, loop, line: dict) -> None:
        self.scalars({f"epoch/{k}": float(v) for k, v in line.items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("epoch", "step")},
                     self.offset + loop.step)

    def on_train_end(self, loop) -> None:
        self._sparsity(loop, loop.step)  # the round's end (t = 1)

    def log_round(self, summary: dict, total: int) -> None:
        values = {f"round/{k}": float(summary[k]) for k in ("test_acc", "test_loss", "sparsity",
                                                              "best_acc_at_final_sparsity", "wall_time_s")
                  if isinstance(summary.get(k), (int, float))}
        overlap = summary.get("mask_overlap")
        if overlap:
            values["round/mask_overlap/jaccard"] = overlap["jaccard"]
            values.update({f"round/mask_overlap/{name}": j for name, j in overlap["layers"].items()})
        self.scalars(values, self.round * total)

    def _sparsity(self, loop, step: int) -> None:
        masks = loop.masks
        if masks is None:
            return
        counts = masks.known_counts  # kept on the host by the updater: comparing costs no sync
        if counts is None:  # after a global full re-selection only the total is known
            if masks.known_total is not None and masks.known_total == self._last_total:
                return
            counts = masks.pruned_counts()  # one host sync, only when the mask changed
        if self._last is not None and tuple(counts) == self._last:
            return
        self._last, self._last_total = tuple(counts), sum(counts)
        sizes = [m.numel() for m in masks.tensors]
        values = {f"sparsity/{name}": c / n for name, c, n in zip(masks.names, counts, sizes)}
        values["sparsity/total"] = sum(counts) / sum(sizes)
        self.scalars(values, self.offset + max(step, 0))


class TensorBoardLogger(MetricLogger):
    """Event files under `folder` (torch.utils.tensorboard; extra: tensorboard)."""

    def __init__(self, folder: Path, config: Optional[dict] = None):
        super().__init__()
        _require("tensorboard", "tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter
        self.folder = Path(folder)
        self.writer = SummaryWriter(log_dir=str(self.folder))
        if config is not None:
            import json
            self.writer.add_text("config", "```\n" + json.dumps(config, indent=1, sort_keys=True) + "\n```", 0)

    def scalars(self, values: Dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def on_epoch_end(self, loop, line: dict) -> None:
        super().on_epoch_end(loop, line)
        self.writer.flush()  # readable while the run goes on

    def close(self) -> None:
        self.writer.close()


class WandbLogger(MetricLogger):
    """A W&B run in offline mode under `folder` (extra: wandb); `wandb sync` uploads it later."""

    def __init__(self, folder: Path, name: str, config: Optional[dict] = None):
        super().__init__()
        wandb = _require("wandb", "wandb", "wandb")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(mode="offline", dir=str(self.folder), project="lth", name=name, config=config or {},
                              settings=wandb.Settings(silent=True, console="off"))

    def scalars(self, values: Dict[str, float], step: int) -> None:
        # W&B's own step must not go back: log the run's step as a metric and plot against it
        self.run.log({**values, "global_step": step})

    def close(self) -> None:
        self.run.finish()


class MlflowLogger(MetricLogger):
    """An MLflow run in a local store under `folder` (extra: mlflow): the SQLite file mlflow.db,
    no server. (MLflow 3 refuses its older plain-file store unless MLFLOW_ALLOW_FILE_STORE is
    set and recommends SQLite.) Read it with `mlflow ui --backend-store-uri sqlite:///FOLDER/mlflow.db`."""

    def __init__(self, folder: Path, name: str, config: Optional[dict] = None):
        super().__init__()
        _require("mlflow", "mlflow", "mlflow")
        from mlflow.tracking import MlflowClient
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = f"sqlite:///{self.folder / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment = self.client.get_experiment_by_name("lth")
        experiment_id = (experiment.experiment_id if experiment else
                         self.client.create_experiment("lth", artifact_location=(self.folder / "artifacts").as_uri()))
        self.run_id = self.client.create_run(experiment_id, run_name=name).info.run_id
        self._buffer: List = []  # metrics not yet written (flushed each epoch, round and at BATCH)
        if config is not None:
            for section, values in config.items():
                if isinstance(values, dict):
                    for key, value in values.items():
                        self.client.log_param(self.run_id, f"{section}.{key}", str(value)[:500])

    def scalars(self, values: Dict[str, float], step: int) -> None:
        from mlflow.entities import Metric
        import time
        now = int(time.time() * 1000)
        # MLflow keys allow alphanumerics, _ - . / and space: layer names are already that
        self._buffer.extend(Metric(key, float(value), now, step) for key, value in values.items())
        if len(self._buffer) >= BATCH:
            self.flush()

    def flush(self) -> None:
        """One store write per batch: a write per step cost ~50 ms each on SQLite (12x the
        training time of the quick preset), an epoch's worth at once costs one."""
        while self._buffer:
            self.client.log_batch(self.run_id, metrics=self._buffer[:BATCH])
            del self._buffer[:BATCH]

    def on_epoch_end(self, loop, line: dict) -> None:
        super().on_epoch_end(loop, line)
        self.flush()

    def log_round(self, summary: dict, total: int) -> None:
        super().log_round(summary, total)
        self.flush()

    def close(self) -> None:
        self.flush()
        self.client.set_terminated(self.run_id)


def make_logger(kind: str, folder: Path, name: str, config: Optional[dict] = None) -> Optional[MetricLogger]:
    """The logger `--log kind` names, writing under `folder` (None for 'none')."""
    if kind == "none":
        return None
    makers = {"tensorboard": lambda: TensorBoardLogger(Path(folder) / "tensorboard", config),
              "wandb": lambda: WandbLogger(Path(folder) / "wandb", name, config),
              "mlflow": lambda: MlflowLogger(Path(folder) / "mlflow", name, config)}
    if kind not in makers:
        raise LthError(f"unknown logger {kind!r}; choose one of {', '.join(LOGGERS)}")
    try:
        return makers[kind]()
    except LthError:
        raise
    except Exception as e:  # the backend's own failure (a locked store, a bad folder): one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise LthError(f"--log {kind}: the logger could not start under {folder} ({first})") from None
