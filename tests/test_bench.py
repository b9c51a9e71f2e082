"""lth.bench smoke test: every command at the tiniest size, on synthetic data (timings not asserted)."""
import json
import math
import subprocess
import sys

import pytest
import torch

from lth import bench
from lth.errors import EXIT_USAGE, LthError, cli_main

TINY = ["--size", "tiny", "--synthetic", "--device", "cpu", "--threads", "1"]


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def rows(report, section):
    return report["results"][section]["rows"]


def test_all_commands_tiny(tmp_path):
    """`python -m lth.bench` as a user runs it: every section, tables on stdout, log on stderr,
    every result in the JSON file with positive numbers."""
    path = tmp_path / "bench.json"
    out = subprocess.run([sys.executable, "-m", "lth.bench", *TINY, "--profile", "--json", str(path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(path.read_text())
    assert report["command"] == "all"
    assert set(report["results"]) == {"mask_step", "mask_update", "loader", "train", "interpolation", "mask_profile",
                                      "prune"}
    assert report["hardware"]["device"] == "cpu" and report["hardware"]["threads"] == 1

    step = {r["variant"]: r for r in rows(report, "mask_step")}
    assert set(step) == {"dense", "lth masked", "lth mask ops alone", "prune hooks", "lth + OCP update"}
    assert all(positive(r["ms_per_step"]) and positive(r["cpu_ms_per_step"]) and positive(r["ratio_to_dense"])
               for r in step.values())
    assert step["dense"]["ratio_to_dense"] == 1.0

    updates = rows(report, "mask_update")
    assert {(r["method"], r["update"].split()[0]) for r in updates} == {
        ("local", "raise"), ("global", "raise"), ("local", "OCP"), ("global", "OCP")}
    assert all(positive(r["full_update_ms"]) for r in updates)

    loader = rows(report, "loader")
    assert {(r["pipeline"], r["workers"]) for r in loader} == {
        ("lth DeviceLoader", None), ("torchvision DataLoader", 0), ("torchvision DataLoader", 2)}
    assert all(positive(r["images_per_s"]) for r in loader)
    assert {(r["pipeline"], r["layout"]) for r in loader} == {("lth DeviceLoader", "NHWC"),
                                                               ("torchvision DataLoader", "NHWC")}
    assert {r["feeds"] for r in loader} == {"nothing (loader alone)", "resnet20 fp32 eager"}

    train = rows(report, "train")
    assert [r["variant"] for r in train] == ["dense", "masked 90%", "naive baseline"]
    for r in train:
        assert positive(r["images_per_s"]) and positive(r["tflops"]) and positive(r["vs_naive"])
        assert r["peak_mib"] is None or positive(r["peak_mib"])

    profile = rows(report, "mask_profile")
    assert profile and all(isinstance(r["op"], str) and r["dense_ms"] >= 0 and r["masked_ms"] >= 0 for r in profile)

    interp = {r["sweep"]: r for r in rows(report, "interpolation")}
    assert set(interp) == {"lerp only", "lerp + evaluate", "lerp + BN reset + evaluate"}
    assert all(r["alphas"] == 3 and positive(r["seconds"]) for r in interp.values())

    prune_rows = rows(report, "prune")
    assert {r["model"] for r in prune_rows} == {"lenet300_100", "resnet20"}
    for model in ("lenet300_100", "resnet20"):
        by = {r["variant"]: r for r in prune_rows if r["model"] == model}
        assert list(by) == ["dense", "fixed mask", "one_shot", "iterative", "agp", "ocp", "ocp exact"]
        assert by["dense"]["ratio"] == 1.0 and all(positive(r["round_s"]) for r in by.values())
        for name in ("one_shot", "iterative", "agp", "ocp", "ocp exact"):
            assert by[name]["updates"] >= 1 and by[name]["exact"] == "yes"
            assert by[name]["largest_gap"] <= by[name]["tolerance"] + 2e-3  # + half a weight of a small layer
        assert by["ocp exact"]["tolerance"] == 0 and by["ocp"]["tolerance"] == 1e-3

    assert "measuring" in out.stderr and "results written to" in out.stderr
    text = out.stdout
    assert "device: cpu" in text and "torch " in text and "intra-op thread" in text
    for title in ("Training step cost of masking", "Mask update cost", "Profile: lth masked vs dense",
                  "Loader throughput", "Training throughput and peak memory", "Interpolation sweep",
                  "Pruning while training"):
        assert title in text


def test_flops_per_image_resnet18():
    """The FLOP count behind % peak: ~3.3 GFLOP per ResNet-18 training image at 32x32 (docs/DESIGN.md §5)."""
    from lth.bench.engine import count_training_flops, synthetic_cifar
    assert count_training_flops("resnet18", synthetic_cifar(4, 4)) == pytest.approx(3.3e9, rel=0.02)


def test_bad_flags_are_one_line_errors(capsys):
    with pytest.raises(LthError, match="unknown model"):
        bench.run(["masks", *TINY, "--models", "resnet99"])
    with pytest.raises(LthError, match="no cifar-10-batches-py"):
        bench.run(["masks", "--size", "tiny", "--device", "cpu", "--data-dir", "/nonexistent"])
    if not torch.cuda.is_available():
        with pytest.raises(LthError, match="CUDA is not available"):
            bench.run(["masks", *TINY, "--device", "cuda"])
    assert cli_main(bench.main, ["masks", *TINY, "--steps", "0"]) == EXIT_USAGE   # refused as it is parsed
    assert capsys.readouterr().err.strip() == "error: --steps must be >= 1, got 0 (see --help)"


def test_compile_failure_is_a_table_line(monkeypatch):
    """A torch.compile that fails at its first call becomes an error cell, not a crash."""
    from lth.bench import engine

    def broken(model):
        def forward(x):
            raise RuntimeError("no compiler here\nsecond line")
        return forward
    monkeypatch.setattr(engine, "try_compile", broken)
    printed = []
    report = bench.run(["loader", *TINY, "--compile"], out=printed.append)
    compiled = [r for r in rows(report, "loader") if r.get("mode") == "compiled"]
    assert len(compiled) == 3
    assert all(r["error"] == "RuntimeError: no compiler here" and "images_per_s" not in r for r in compiled)
    assert all(positive(r["images_per_s"]) for r in rows(report, "loader") if r.get("mode") == "eager")
    assert "RuntimeError: no compiler here" in "\n".join(printed)
