"""lth.rewind, lth.snapshot and lth.RewindPoint (late rewinding in your own loop).

    python -m pytest tests/test_rewind_api.py -q
"""
import pytest
import torch
import torch.nn.functional as F

import lth
from lth import models
from lth.errors import LthError
from lth.runs.files import save_tensors


def tiny(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = models.build("lenet300_100", 10, 1, 8)
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def train_steps(model, optimizer, n):
    g = torch.Generator().manual_seed(1)
    for _ in range(n):
        x, y = torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


def test_rewind_loads_the_state_and_applies_the_mask_exactly():
    model, optimizer = tiny()
    init = lth.snapshot(model)
    pruner = lth.Pruner(model, optimizer, final_sparsity=0.6, total_steps=5, layers="all")
    train_steps(model, optimizer, 5)
    lth.rewind(model, init, pruner)
    for name, value in model.state_dict().items():
        mask = pruner.masks.state_dict().get(name)
        expected = init[name] if mask is None else init[name] * mask
        assert torch.equal(value, expected), name   # kept weights are W0 bit for bit
    for masks in (pruner.masks, pruner.masks.state_dict()):  # Masks, or lth's mask format
        fresh, _ = tiny(seed=3)
        lth.rewind(fresh, init, masks)
        assert all(torch.equal(fresh.state_dict()[k], model.state_dict()[k]) for k in init)


def test_rewind_point_captures_w_k_and_round_trips(tmp_path):
    model, optimizer = tiny()
    point = lth.RewindPoint(model, optimizer, step=3)
    train_steps(model, optimizer, 3)
    reference = lth.snapshot(model)
    assert point.captured
    train_steps(model, optimizer, 4)   # later steps do not move the captured W_k
    assert all(torch.equal(point.state[k], reference[k]) for k in reference)
    point.save(tmp_path / "rewind.pt")
    loaded = lth.RewindPoint.load(tmp_path / "rewind.pt")
    assert loaded.step == 3 and all(torch.equal(loaded.state[k], reference[k]) for k in reference)
    lth.rewind(model, loaded.state)
    assert all(torch.equal(model.state_dict()[k], reference[k]) for k in reference)
    assert lth.RewindPoint(model, step=0).captured   # step 0: W0, now


def test_bad_input_is_one_line(tmp_path):
    model, optimizer = tiny()
    with pytest.raises(LthError, match="step must be an int >= 0"):
        lth.RewindPoint(model, optimizer, step=-1)
    with pytest.raises(LthError, match="needs the optimizer"):
        lth.RewindPoint(model, step=2)
    with pytest.raises(LthError, match="not captured yet"):
        lth.RewindPoint(model, optimizer, step=2).save(tmp_path / "x.pt")
    save_tensors(tmp_path / "other.pt", {"a": torch.ones(1)})
    with pytest.raises(LthError, match="not a rewind point"):
        lth.RewindPoint.load(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(LthError, match="corrupted or not an lth file"):
        lth.RewindPoint.load(tmp_path / "junk.pt")
    with pytest.raises(LthError, match="does not fit the model"):
        lth.rewind(model, {"nope": torch.ones(1)})
    init = lth.snapshot(model)
    with pytest.raises(LthError, match="names no parameter"):
        lth.rewind(model, init, {"nope.weight": torch.ones(1)})
    with pytest.raises(LthError, match="has shape"):
        lth.rewind(model, init, {"1.weight": torch.ones(2)})
    with pytest.raises(LthError, match="masks must be"):
        lth.rewind(model, init, [1, 2])
