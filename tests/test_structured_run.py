"""`python -m lth.structured` end to end on digits (offline) with conv2: OCSPruner's records and
trigger, the ablations, every channel-granularity schedule, export equality, resume, refusal
to overwrite, and one-line errors for bad input. Each run: 4-5 epochs of 11 steps."""
import json

import pytest
import torch

from lth.data import datasets
from lth.errors import cli_main
from lth.pruning.channels import shrunk_copy
from lth.structured import cli, config, export, loop
from lth.structured.store import StructuredStore

TINY = ["--dataset", "digits", "--model", "conv2", "--batch-size", "128", "--lr", "0.01", "--augment", "none",
        "--device", "cpu",
        "--no-progress", "--latency-batches", "1", "--latency-repeats", "2"]
# lth's earlier timing (cap at --sl-end, lambda from --sl-start): the tiny budget's numbers below
# are read with it; the CIFAR code's timing (the defaults) is test_structured_ocs.py's
OCS = ["--epochs", "5", "--monitor-start", "1", "--sl-start", "1", "--sl-end", "2", "--reg", "0.5", "--reg-delta", "0.5",
       "--cap-rule", "at", "--reg-timing", "start"]
TIMING = {"wall_time_s", "images_per_s", "latency_ms"}


def run(tmp_path, *argv) -> int:
    return cli_main(cli.main, [*TINY, "--runs-root", str(tmp_path / "runs"), *argv])


def only_run(tmp_path) -> StructuredStore:
    (path,) = (tmp_path / "runs").iterdir()
    return StructuredStore(path)


def test_ocspruner_records_the_stability_search_and_prunes_after_the_trigger(tmp_path):
    assert run(tmp_path, *OCS) == 0
    store = only_run(tmp_path)
    records, summary = store.epochs(), store.summary()
    assert [r["epoch"] for r in records] == [0, 1, 2, 3, 4]
    assert records[0]["lambda"] == 0.0 and "kept" not in records[0]            # warm-up
    assert [r["lambda"] for r in records[1:3]] == [0.5, 1.0]                    # reg, + delta per epoch
    for r in records[1:3]:
        assert len(r["kept"]) == 4 and len(r["kept_idx"]) == 4                   # conv2: 4 channel groups
        assert [len(k) for k in r["kept_idx"]] == r["kept"]
        assert abs(r["candidate_rr"] - 0.5) < 0.01
    assert summary["trigger"] == "cap" and summary["stable_epoch"] == 2          # psi < tau: the cap (--sl-end 2)
    assert summary["pruned_epoch"] == 3 and records[3]["pruned_now"]
    assert "psi" not in records[3]                                               # the search is over
    assert abs(summary["flops_rr"] - 0.5) < 0.01 and summary["flops"] < summary["dense_flops"]
    assert summary["params"] < summary["dense_params"]
    assert summary["test_acc"] > 0.2                        # twice chance, with 2 epochs at a tiny LR after removal
    assert summary["export_max_abs_diff"] < 1e-5
    assert not store.checkpoint_path.exists()
    blob = torch.load(store.export_path, weights_only=True)                     # a plain, safe file
    assert blob["payload"]["model"] == "conv2"
    net = export.load(store.export_path)
    assert {n: len(g["kept"]) for n, g in blob["payload"]["groups"].items()} == summary["kept"]
    assert net[0].out_channels == summary["kept"]["0"]


@pytest.mark.parametrize("prune_at,epoch", [("0", 0), ("end", 4)])
def test_ablations_prune_at_the_start_or_after_training(tmp_path, prune_at, epoch):
    assert run(tmp_path, *OCS, "--epochs", "4", "--prune-at", prune_at) == 0
    store = only_run(tmp_path)
    summary, records = store.summary(), store.epochs()
    assert summary["pruned_epoch"] == epoch and summary["trigger"] == ("fixed" if prune_at == "0" else "end")
    assert summary["stable_epoch"] is None
    if prune_at == "0":
        assert records[0]["pruned_now"] and all("psi" not in r for r in records)
    else:
        assert records[-1]["pruned_now"] and records[-1]["lambda"] > 0           # shrinking until the end
        assert summary["test_acc"] == summary["acc_after_prune"]


@pytest.mark.parametrize("method", ["one_shot", "iterative", "agp", "ocp"])
def test_schedules_raise_a_monotone_channel_mask_and_shrink_without_changing_the_function(tmp_path, method):
    assert run(tmp_path, "--method", method, "--epochs", "4") == 0
    store = only_run(tmp_path)
    records, summary = store.epochs(), store.summary()
    reached = [r["masked_rr"] for r in records]
    assert reached == sorted(reached)
    for a, b in zip(records, records[1:]):
        assert all(kb <= ka for ka, kb in zip(a["kept"], b["kept"]))
    assert summary["acc_before_prune"] == summary["acc_after_prune"]            # masked == shrunk
    assert abs(summary["flops_rr"] - 0.5) < 0.01 and summary["mask_updates"] >= 1


def test_dense_run_learns_and_prunes_nothing(tmp_path):
    assert run(tmp_path, "--method", "dense", "--epochs", "2") == 0
    summary = only_run(tmp_path).summary()
    assert summary["flops"] == summary["dense_flops"] and summary["flops_rr"] == 0.0 and summary["kept"] == {}
    assert summary["test_acc"] > 0.5                        # 10 classes: the loop really trains


def test_exported_network_equals_the_masked_network(tmp_path):
    cfg, _ = config.from_args([*TINY, "--method", "ocp", "--epochs", "2"], cli.parser())
    job = loop.prepare(cfg, datasets.load("digits"), "cpu")
    job.method.update(1.0, None)                                                 # mask to 50 % FLOPs
    model = job.model.eval()
    x = next(iter(job.test_loader))[0][:16]
    masked = model(x)
    assert any(p.eq(0).all(dim=tuple(range(1, p.dim()))).any() for p in job.method.masks.tensors if p.dim() > 1)
    removed = job.ctx.groups.by_name(job.method.pruned)
    small = shrunk_copy(model, removed, job.example)
    groups = {g.name: {"size": g.size, "kept": [i for i in range(g.size) if i not in removed[g.name]]}
              for g in job.ctx.groups.groups}
    export.save(tmp_path / "net.pt", small, "conv2", 10, 1, 8, groups)
    net = export.load(tmp_path / "net.pt")
    assert torch.allclose(net(x), masked, atol=1e-5)
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in model.parameters())


def comparable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in TIMING}


def test_an_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    assert run(tmp_path / "a", *OCS) == 0
    reference = only_run(tmp_path / "a")
    original, calls = StructuredStore.save_checkpoint, []

    def flaky(self, state):
        original(self, state)
        calls.append(state["epoch"])
        if len(calls) in (2, 4):     # after epoch 1 (searching) and after epoch 3 (already shrunk)
            raise KeyboardInterrupt

    monkeypatch.setattr(StructuredStore, "save_checkpoint", flaky)
    assert run(tmp_path / "b", *OCS) == 130
    assert run(tmp_path / "b", *OCS) == 130
    assert run(tmp_path / "b", *OCS) == 0
    assert calls == [1, 2, 3, 4]
    resumed = only_run(tmp_path / "b")
    assert comparable(resumed.summary()) == comparable(reference.summary())
    strip = lambda rs: [{k: v for k, v in r.items() if k not in TIMING} for r in rs]  # noqa: E731
    assert strip(resumed.epochs()) == strip(reference.epochs())
    a, b = export.load(reference.export_path).state_dict(), export.load(resumed.export_path).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_finished_run_is_reported_not_overwritten(tmp_path, capsys):
    assert run(tmp_path, "--method", "dense", "--epochs", "1") == 0
    store = only_run(tmp_path)
    before = store.summary_path.stat().st_mtime_ns, store.export_path.read_bytes()
    capsys.readouterr()
    assert run(tmp_path, "--method", "dense", "--epochs", "1") == 0
    assert (store.summary_path.stat().st_mtime_ns, store.export_path.read_bytes()) == before
    assert "run directory" in capsys.readouterr().out


def test_another_config_in_the_same_run_dir_is_refused(tmp_path, capsys):
    target = str(tmp_path / "one")
    assert run(tmp_path, "--method", "dense", "--epochs", "1", "--run-dir", target) == 0
    assert run(tmp_path, "--method", "dense", "--epochs", "2", "--run-dir", target) == 2
    assert "different config (differs in train.epochs)" in capsys.readouterr().err
    assert json.loads((tmp_path / "one" / "structured.json").read_text())["config"]["train"]["epochs"] == 1.0


@pytest.mark.parametrize("argv,message", [
    (["--flops-rr", "1.5"], "--flops-rr must be >= 0 and < 1, got 1.5"),
    (["--prune-at", "soon"], "--prune-at must be 'stable', 'end' or an epoch number"),
    (["--sl-start", "x"], "--sl-start must be an epoch number or 'auto'"),
    (["--tau", "0"], "--tau must be > 0 and <= 1, got 0.0"),
    (["--alpha", "3"], "--alpha is a schedule parameter; it needs --method ocp"),
    (["--method", "agp", "--alpha", "3"], "--alpha belongs to schedule ocp, not to the chosen --method agp"),
    (["--method", "agp", "--start", "0.9", "--end", "0.5"], "agp: --start (0.9) must be below --end (0.5)"),
    (["--prune-at", "9", "--epochs", "2"], "--prune-at 9 is beyond the run's 2 epochs"),
    (["--sl-end", "1", "--monitor-start", "3"], "--sl-end (1) must be at least --monitor-start (3)"),
    (["--flops-rr", "0.9", "--layer-limit", "0.1", *OCS], "out of reach"),
    (["--epochs", "5"], "--sl-end 110 (the cap, --cap-rule after) is not within the run's 5 epochs; set it to at most 3"),
    (["--method", "nope"], "invalid choice"),
    (["--reg", "nan"], "--reg must be a finite number"),
    ([*OCS, "--model", "conv6", "--image-size", "4"], "conv6 needs images of at least 8 px"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    try:
        code = run(tmp_path, *argv)
    except SystemExit as e:   # refused as it is parsed (a choice, a flag's range)
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())



def test_a_run_made_before_the_timing_flags_reads_as_what_it_did():
    """structured.json files written before --cap-rule and --reg-timing existed ran lth's
    earlier timing: they open as 'at' and 'start', not as the new defaults."""
    cfg, _ = config.from_args([*TINY, *OCS[:10]], config.build_parser("t", ""))
    assert (cfg.structured.cap_rule, cfg.structured.reg_timing) == ("after", "code")   # the reference's
    old = cfg.to_dict()
    for key in ("cap_rule", "reg_timing"):
        del old["structured"][key]
    back = config.StructuredRun.from_dict(old)
    assert (back.structured.cap_rule, back.structured.reg_timing) == ("at", "start")
