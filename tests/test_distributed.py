"""Data-parallel pieces that run in one process (issue 22): the loader's sharding of each global
batch, the single-process answers of lth.training.distributed, its input checks, the mask
checksum, and FollowerStore writing nothing. The multi-rank behaviour is in
tests/test_distributed_ranks.py (slow: processes and torchrun).

    python -m pytest tests/test_distributed.py -q
"""
import os

import pytest
import torch

from lth.data.datasets import load
from lth.data.loader import DeviceLoader
from lth.errors import LthError
from lth.pruning.masks import Masks
from lth.runs.follower import FollowerStore
from lth.training import distributed


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def batches(ds, augment, shard=None, epochs=2, batch=60):
    loader = DeviceLoader(ds.train_x, ds.train_y, ds, batch, "cpu", train=True, augment=augment, order_seed=5,
                          augment_seed=7, shard=shard)
    out = [(x.clone(), y.clone()) for _ in range(epochs) for x, y in loader]
    return out, loader.state_dict()


@pytest.mark.parametrize("augment", ["none", "crop_flip", "fastai"])
@pytest.mark.parametrize("world", [2, 3])
def test_rank_slices_make_up_the_single_process_batches(digits, augment, world):
    """Concatenated over the ranks, the slices are the one-process batches bit for bit:
    same order, same augmentation draws; the generators end in the same state."""
    whole, whole_state = batches(digits, augment)
    parts = [batches(digits, augment, (r, world)) for r in range(world)]
    assert all(len(p[0]) == len(whole) for p in parts)
    for i, (x, y) in enumerate(whole):
        assert torch.equal(torch.cat([p[0][i][0] for p in parts]), x)
        assert torch.equal(torch.cat([p[0][i][1] for p in parts]), y)
        assert all(len(p[0][i][1]) == len(y) // world for p in parts)
    for _, state in parts:
        assert all(torch.equal(state[k], whole_state[k]) for k in whole_state)


def test_no_shard_and_world_one_are_the_plain_loader(digits):
    plain, _ = batches(digits, "crop_flip")
    for shard in (None, (0, 1)):
        same, _ = batches(digits, "crop_flip", shard)
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(plain, same))


def test_shard_that_does_not_divide_the_batch_is_refused(digits):
    with pytest.raises(LthError, match="does not split into 7 equal slices"):
        DeviceLoader(digits.train_x, digits.train_y, digits, 60, "cpu", train=True, shard=(0, 7))


def test_evaluation_loader_is_never_sharded(digits):
    loader = DeviceLoader(digits.test_x, digits.test_y, digits, 100, "cpu", train=False, shard=(1, 2))
    assert sum(len(y) for _, y in loader) == len(digits.test_y)


def test_single_process_answers(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.active() and not distributed.launched()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.shard() is None and distributed.callbacks() == []
    model = torch.nn.Linear(3, 2)
    assert distributed.data_parallel(model) is model
    assert distributed.setup("cpu") == torch.device("cpu")
    distributed.barrier()                     # no-op
    distributed.check_same({"config hash": "x"})
    distributed.check_batch(7)


@pytest.mark.parametrize("batch,world", [(64, 3), (10, 4), (1, 2)])
def test_world_size_that_does_not_divide_the_batch(monkeypatch, batch, world):
    monkeypatch.setenv("WORLD_SIZE", str(world))
    with pytest.raises(LthError, match=f"--batch-size {batch} does not split over {world} ranks"):
        distributed.check_batch(batch)


def test_setup_refuses_an_incomplete_environment_and_a_pinned_device(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(LthError, match="start data-parallel runs with torchrun"):
        distributed.setup("cpu")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29999")
    with pytest.raises(LthError, match="pins one device"):
        distributed.setup("cuda:1")


def test_sync_bn_needs_cuda():
    with pytest.raises(LthError, match="--sync-bn needs CUDA"):
        distributed.prepare_model(torch.nn.BatchNorm2d(3), True, torch.device("cpu"))
    bn = torch.nn.BatchNorm2d(3)
    assert distributed.prepare_model(bn, False, torch.device("cpu")) is bn


def test_mask_checksum_sees_a_moved_weight():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 4))
    masks = Masks.for_model(model)
    base = distributed.mask_checksum(masks)
    masks.tensors[1].view(-1)[3] = 0
    one = distributed.mask_checksum(masks)
    masks.tensors[1].view(-1)[3] = 1
    masks.tensors[1].view(-1)[5] = 0        # same count pruned, another position
    other = distributed.mask_checksum(masks)
    assert not torch.equal(base, one) and not torch.equal(one, other)
    assert torch.equal(base[:2], one[:2])   # layer 0 untouched
    masks.tensors[1].view(-1)[5] = 1
    assert torch.equal(distributed.mask_checksum(masks), base)


def test_follower_store_writes_nothing(tmp_path):
    store = FollowerStore(tmp_path / "run")
    store.make_root()
    store.create({"config": {}})
    with store.lock():
        assert store.remove_stale_temp_files() == []
        store.save_init({"w": torch.zeros(2)})
        store.save_rewind({"w": torch.zeros(2)})
        store.save_checkpoint(1, {"w": torch.zeros(2)})
        store.save_round(1, {}, {}, [{"a": 1}], {"round": 1})
        store.discard_checkpoint(1)
    assert not (tmp_path / "run").exists()
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("argv,message", [
    (["--nproc-per-node", "2", "--batch-size", "63"], "--batch-size 63 does not split over 2 ranks"),
    (["--nproc-per-node", "0"], "--nproc-per-node must be a whole number of ranks >= 1, got '0'"),
    (["--nproc-per-node=x"], "--nproc-per-node must be a whole number of ranks >= 1, got 'x'"),
    (["--nproc-per-node", "3", "--lr", "-1"], "lr"),
])
def test_launcher_checks_before_any_rank_starts(tmp_path, capsys, argv, message):
    from lth import run
    from lth.errors import cli_main
    code = cli_main(run.main, ["--preset", "quick", "--device", "cpu", "--run-dir", str(tmp_path / "r"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]
    assert not (tmp_path / "r").exists()


def test_the_follower_store_takes_every_write_as_the_run_store_does():
    """A rank's FollowerStore stands in for RunStore: every method it overrides must accept
    the same arguments (save_round gained loader= for the continue restart and the follower
    had not: a 2-rank run died at its first round's end)."""
    import inspect
    from lth.runs.follower import FollowerStore
    from lth.runs.store import RunStore
    overridden = [n for n, f in vars(FollowerStore).items() if callable(f) and not n.startswith("__")]
    assert "save_round" in overridden
    for name in overridden:
        assert inspect.signature(getattr(FollowerStore, name)) == inspect.signature(getattr(RunStore, name)), name
