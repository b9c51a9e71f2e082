"""Evaluation split over data-parallel ranks (issue 22, lth.training.loop.evaluate): each rank's
batches are the single-process batches by number, and 2 and 3 real gloo ranks get the
single-process accuracy and loss exactly. About 15 s (the ranks are processes).

    python -m pytest tests/test_sharded_eval.py -q
"""
import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lth.data.datasets import load
from lth.data.loader import DeviceLoader
from lth.data.streaming import make_loader
from lth.errors import LthError
from lth.training.loop import evaluate
from tests.test_streaming import both  # noqa: F401  (fixture: one image folder, in memory and streamed)

EVAL_BATCH = 37     # digits' 360 test images: 10 batches, the last one partial (27 images)


def model():
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


def test_every_nth_yields_the_single_process_batches_by_number():
    ds = load("digits")
    loader = DeviceLoader(ds.test_x, ds.test_y, ds, EVAL_BATCH, "cpu", train=False)
    whole = list(loader)
    for world in (1, 2, 3, 4):
        seen = sorted(i for r in range(world) for i, _ in loader.every_nth(r, world))
        assert seen == list(range(len(whole)))      # disjoint, and together every batch
        for r in range(world):
            for i, (x, y) in loader.every_nth(r, world):
                assert i % world == r and torch.equal(x, whole[i][0]) and torch.equal(y, whole[i][1])
    train = DeviceLoader(ds.train_x, ds.train_y, ds, 60, "cpu", train=True)
    with pytest.raises(LthError, match="splits an evaluation loader"):
        next(train.every_nth(0, 2))


def test_streamed_every_nth_decodes_the_same_batches(both):  # noqa: F811
    memory, stream = both
    a = make_loader(memory.train_x, memory.train_y, memory, 7, "cpu", train=False, image_size=12)
    b = make_loader(stream.train_x, stream.train_y, stream, 7, "cpu", train=False, image_size=12)
    whole = list(a)
    for r in range(2):
        got = list(b.every_nth(r, 2))
        assert [i for i, _ in got] == list(range(r, len(whole), 2))
        assert all(torch.equal(x, whole[i][0]) and torch.equal(y, whole[i][1]) for i, (x, y) in got)


def _rank(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    ds = load("digits")
    loader = DeviceLoader(ds.test_x, ds.test_y, ds, EVAL_BATCH, "cpu", train=False)
    net = model()
    measured = evaluate(net, net, loader)
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(measured))
    dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 3])
def test_sharded_evaluation_equals_the_unsharded_one(tmp_path, world):
    """Accuracy from integer counts: identical. Loss: each batch's sum is the same computation on
    every rank, added in batch order in float32, so identical here too (the docstring's caveat:
    on another device type a batch's own sum may differ in its last bits)."""
    torch.set_num_threads(1)
    ds = load("digits")
    net = model()
    whole = evaluate(net, net, DeviceLoader(ds.test_x, ds.test_y, ds, EVAL_BATCH, "cpu", train=False))
    mp.spawn(_rank, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    for r in range(world):
        sharded = json.loads((tmp_path / f"rank{r}.json").read_text())
        assert sharded["test_acc"] == whole["test_acc"]
        assert sharded["test_loss"] == whole["test_loss"]
