"""Watching runs (issue 23): --log tensorboard | mlflow | wandb write a real event file / MLflow
run / offline W&B run under RUN_DIR/logs that reads back with each tool's own reader; per-layer
sparsity is logged exactly when the mask changes; the round summary carries the kept-weight
Jaccard overlap with the previous round's mask; --log does not change the run's hash.

    python -m pytest tests/test_loggers.py -q          (pytest -m slow: the MLflow and W&B runs)
"""
import json

import pytest
import torch

from lth import config, execute, models
from lth.data import datasets
from lth.errors import LthError
from lth.pruning import MaskUpdater, schedules
from lth.pruning.masks import Masks
from lth.pruning.overlap import jaccard
from lth.training import loggers
from runhelpers import fit_model

RUN = {"rounds": 2, "steps": 40, "eval_every": 0, "progress": False}


def run_with(tmp_path, log, **extra):
    cfg = config.from_overrides({**RUN, "log": log, **extra}, preset="quick")
    return execute(cfg, run_dir=str(tmp_path / f"run-{log}"), device="cpu")


class Recorder(loggers.MetricLogger):
    """An in-memory backend: what every logger is handed."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def scalars(self, values, step):
        self.rows.append((step, dict(values)))


@pytest.mark.parametrize("scope", ["local", "global"])
def test_sparsity_is_logged_exactly_when_the_mask_changes(scope):
    ds = datasets.load("digits")
    cfg = config.RunConfig()
    config.apply_overrides(cfg, {"batch_size": 64, "steps": 30, "eval_every": 0, "lr": 3e-3}, "test")
    cfg = cfg.resolved().train
    torch.manual_seed(0)
    model = models.build("lenet300_100", 10, 1, 8)
    masks = Masks.for_model(model)
    trained_under = []
    recorder = Recorder()
    updater = MaskUpdater(masks, lambda t: schedules.ocp(t, 0.0, 0.9), scope=scope, tolerance=0.01)
    fit_model(model, masks, ds, cfg, device="cpu", image_size=8, augment="none", order_seed=1, augment_seed=2,
          pruning=updater, progress=False, callbacks=[recorder],
          after_step=lambda step, model, masks: trained_under.append(masks.pruned_counts()))
    logged = [(step, values) for step, values in recorder.rows if "sparsity/total" in values]
    # the expected log: step 0's mask, then each step whose mask differs from the step before, then t = 1
    expected = [(0, trained_under[0])] + [(k, c) for k, c in enumerate(trained_under) if k and c != trained_under[k - 1]]
    expected.append((30, masks.pruned_counts()))
    sizes = [m.numel() for m in masks.tensors]
    assert [step for step, _ in logged] == [step for step, _ in expected]
    for (_, values), (_, counts) in zip(logged, expected):
        assert values["sparsity/total"] == sum(counts) / sum(sizes)
        assert [values[f"sparsity/{n}"] for n in masks.names] == [c / s for c, s in zip(counts, sizes)]
    assert 3 < len(logged) < 30  # far fewer than one a step
    lrs = [values["train/lr"] for _, values in recorder.rows if "train/lr" in values]
    assert len(lrs) == 30


def test_tensorboard_event_file_reads_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    result = run_with(tmp_path, "tensorboard")
    files = list((result.run_dir / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 1
    events = EventAccumulator(str(files[0]))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"sparsity/total", "train/lr", "round/test_acc", "round/mask_overlap/jaccard", "epoch/train_loss"} <= set(tags)
    summaries = result.summaries
    test_acc = [e.value for e in events.Scalars("round/test_acc")]
    assert test_acc == pytest.approx([s["test_acc"] for s in summaries], abs=1e-6)
    overlap = [e.value for e in events.Scalars("round/mask_overlap/jaccard")]
    assert overlap == pytest.approx([s["mask_overlap"]["jaccard"] for s in summaries], abs=1e-6)
    sparsity = events.Scalars("sparsity/total")
    assert sparsity[-1].step == 80 and sparsity[-1].value == pytest.approx(summaries[-1]["sparsity"], abs=1e-6)
    assert [e.value for e in sparsity] == sorted(e.value for e in sparsity)  # masks only lose ones
    assert len(events.Scalars("train/lr")) == 80                           # every step of both rounds
    # a runtime field: the same run (hash and directory name) with or without --log
    plain = config.from_overrides(RUN, preset="quick")
    assert plain.hash() == config.from_overrides({**RUN, "log": "tensorboard"}, preset="quick").hash()
    assert json.loads((result.run_dir / "config.json").read_text())["hash"] == plain.hash()


@pytest.mark.slow
def test_mlflow_run_reads_back(tmp_path):
    from mlflow.tracking import MlflowClient
    result = run_with(tmp_path, "mlflow")
    client = MlflowClient(tracking_uri=f"sqlite:///{result.run_dir / 'logs' / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lth")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == result.run_dir.name
    assert run.data.params["prune.schedule"] == "ocp" and run.data.params["data.dataset"] == "digits"
    history = client.get_metric_history(run.info.run_id, "round/test_acc")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
        [s["test_acc"] for s in result.summaries], abs=1e-9)
    sparsity = client.get_metric_history(run.info.run_id, "sparsity/total")
    assert max(m.step for m in sparsity) == 80
    assert max(m.value for m in sparsity) == pytest.approx(result.summaries[-1]["sparsity"], abs=1e-9)


@pytest.mark.slow
def test_wandb_offline_run_is_written(tmp_path):
    result = run_with(tmp_path, "wandb")
    runs = list((result.run_dir / "logs" / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    data = list(runs[0].glob("*.wandb"))
    assert data and data[0].stat().st_size > 0
    assert b"round/test_acc" in data[0].read_bytes()   # the records name the logged metrics


def test_round_summaries_carry_the_jaccard_overlap(tmp_path):
    result = run_with(tmp_path, "none")
    previous = {"sparsity": 0.0, "layers": None}
    for summary in result.summaries:
        overlap = summary["mask_overlap"]
        # nested masks: J = |m_r| / |m_{r-1}|, overall and per layer
        assert overlap["jaccard"] == pytest.approx((1 - summary["sparsity"]) / (1 - previous["sparsity"]), abs=1e-12)
        for layer in summary["layers"]:
            before = 0.0 if previous["layers"] is None else previous["layers"][layer["name"]]
            assert overlap["layers"][layer["name"]] == pytest.approx((1 - layer["sparsity"]) / (1 - before), abs=1e-12)
        previous = {"sparsity": summary["sparsity"], "layers": {l["name"]: l["sparsity"] for l in summary["layers"]}}
    assert not (result.run_dir / "logs").exists()   # --log none writes no logs


def test_jaccard():
    a = {"w": torch.tensor([True, True, False, False]), "v": torch.tensor([True])}
    b = {"w": torch.tensor([True, False, True, False]), "v": torch.tensor([True])}
    assert jaccard(a, b) == {"jaccard": 2 / 4, "layers": {"w": 1 / 3, "v": 1.0}}
    assert jaccard({"w": torch.zeros(3, dtype=torch.bool)}, {"w": torch.zeros(3, dtype=torch.bool)})["jaccard"] == 1.0
    with pytest.raises(LthError, match="different layers"):
        jaccard(a, {"w": a["w"]})
    with pytest.raises(LthError, match="shapes"):
        jaccard(a, {"w": torch.ones(2, dtype=torch.bool), "v": a["v"]})


def test_a_missing_package_names_its_extra():
    with pytest.raises(LthError, match=r"--log mlflow needs the mlflow package: pip install 'lth\[mlflow\]'"):
        loggers._require("lth_no_such_package", "mlflow", "mlflow")
    with pytest.raises(LthError, match="unknown logger"):
        loggers.make_logger("comet", "/tmp", "x")
