"""Flagship presets with their sources, --dry-run device-hours, and the folder loader benchmark (issue 21)."""
import multiprocessing

import pytest

from lth import config, run
from lth.bench import folder_loader
from lth.errors import cli_main
from tests.folderhelpers import make_folder


@pytest.mark.parametrize("preset", ["imagenet_resnet50", "vit", "bert"])
def test_flagship_presets_resolve_and_state_their_source(preset):
    cfg = config.from_overrides({}, preset=preset)
    assert preset in config.PRESET_SOURCES and "et al." in config.PRESET_SOURCES[preset]
    assert ":" in cfg.model.model and cfg.prune.layers in ("all", "all_but_output") and cfg.prune.scope == "global"


def test_imagenet_resnet50_follows_openlth():
    cfg = config.from_overrides({}, preset="imagenet_resnet50")
    t = cfg.train
    assert (t.optimizer, t.lr, t.batch_size, t.epochs, t.weight_decay) == ("sgd", 0.4, 1024, 90.0, 1e-4)
    assert t.lr_schedule == "step" and [round(m * 90) for m in t.lr_schedule_params["milestones"]] == [30, 60, 80]
    assert round(t.lr_schedule_params["warmup"] * 90) == 5
    assert cfg.prune.restart_params["rewind_step"] == 6 * 1251   # epoch 6 of 1,251 steps at batch 1024
    # OpenLTH's models/imagenet_resnet.py: kaiming_normal + uniform BatchNorm init, no layer ignored
    assert cfg.model.init == "openlth" and cfg.prune.layers == "all"


def test_dry_run_at_paper_scale_writes_nothing(tmp_path, capsys):
    code = run.main(["--preset", "imagenet_resnet50", "--dry-run", "--runs-root", str(tmp_path / "runs"),
                     "--data-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and not (tmp_path / "runs").exists()
    assert "Frankle et al. 2020" in out and "1281167 train / 50000 test" in out and "official size" in out
    assert "14 rounds of 112590 steps" in out and "dense phase of 7506 steps" in out
    hours = float(out.split("estimated cuda device-hours (an estimate, not a measurement): ")[1].split(" h")[0])
    assert 20 < hours < 1000     # ResNet-50, 14 x 90 epochs of ImageNet at an assumed 100 TFLOP/s
    doubled = run.main(["--preset", "imagenet_resnet50", "--dry-run", "--assume-tflops", "200",
                        "--runs-root", str(tmp_path / "runs"), "--data-dir", str(tmp_path)])
    out2 = capsys.readouterr().out
    assert doubled == 0
    assert float(out2.split("not a measurement): ")[1].split(" h")[0]) == pytest.approx(hours / 2, rel=0.02)


def test_dry_run_scans_a_folder_and_refuses_what_it_cannot_estimate(tmp_path, capsys):
    root = make_folder(tmp_path / "f", split=True)
    assert run.main(["--dataset", f"imagefolder:{root}", "--model", "conv2", "--image-size", "8",
                     "--dry-run", "--device", "cpu", "--steps", "5", "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "12 train / 6 test images, 3 classes, 8 px" in out and "timed here" in out
    text_model = "hf:bert,hidden_size=16,num_hidden_layers=1,num_attention_heads=2,intermediate_size=32"
    assert cli_main(run.main, ["--dataset", f"imagefolder:{root}", "--image-size", "8", "--model", text_model,
                               "--dry-run", "--device", "cpu", "--steps", "5", "--batch-size", "4"]) == 2
    assert "cannot estimate hf:bert" in capsys.readouterr().err        # a text model on images


def test_bert_dry_run_costs_the_pretrained_model_per_token(tmp_path, capsys):
    """Chen et al.'s setting: 3 x (2 x 85.6 M non-embedding parameters + attention) FLOP a token,
    128 tokens a sequence, GLUE's official sizes; no network, no data, nothing written."""
    pytest.importorskip("datasets")
    code = run.main(["--preset", "bert", "--dry-run", "--runs-root", str(tmp_path / "runs"), "--data-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and not (tmp_path / "runs").exists()
    assert "Chen et al. 2020" in out and "hf:bert-base-uncased" in out and "67349 train / 872 test sequences" in out
    assert "85.6 M non-embedding parameters x 128 tokens" in out and "66.68 GFLOP/sequence" in out
    hours = float(out.split("not a measurement): ")[1].split(" h")[0])
    assert 0.2 < hours < 2      # 14 rounds x 3 epochs of 67,349 sequences at 1,500 sequences/s: 0.5 h
    cfg = config.from_overrides({}, preset="bert")
    assert (cfg.prune.restart, cfg.prune.restart_params["rewind_step"], cfg.model.init) == ("rewind", 0, None)
    assert cfg.data.tokenizer == "bert-base-uncased" and cfg.data.max_length == 128   # the model's own tokenizer


def test_folder_loader_bench(tmp_path, capsys):
    root = make_folder(tmp_path / "f", classes=2, per_class=12)
    assert folder_loader.main([str(root), "--image-size", "8", "--batch-size", "4", "--batches", "1",
                               "--workers", "0", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.rsplit(None, 1)[0].strip() for line in lines[1:]]
    assert names[:3] == ["lth stream, 0 workers, decode cpu", "lth stream, 0 workers, decode device",
                         "torchvision, 0 workers"] and names[3].startswith("lth memory")
    assert all(float(line.split()[-1]) > 0 for line in lines[1:])
    assert cli_main(folder_loader.main, [str(root), "--batches", "50"]) == 2   # more batches than images: one line


def _stream_in_daemon(root, queue):
    from lth.data import sources
    from lth.data.streaming import make_loader
    cfg = config.from_overrides({"dataset": f"imagefolder:{root}", "image_size": 8, "model": "conv2", "layers": "all",
                                 "device": "cpu", "loader": "stream", "workers": 2})
    ds = sources.load_config(cfg)
    loader = make_loader(ds.train_x, ds.train_y, ds, 4, "cpu", train=True, augment="crop_flip")
    queue.put(sum(len(y) for _, y in loader))


def test_streaming_inside_a_daemonic_worker(tmp_path):
    """A study's local workers are daemonic: they may not start DataLoader workers (decode in-process)."""
    root = make_folder(tmp_path / "f", split=True)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    p = ctx.Process(target=_stream_in_daemon, args=(root, queue), daemon=True)
    p.start()
    p.join(60)
    assert p.exitcode == 0 and queue.get(timeout=5) == 12
