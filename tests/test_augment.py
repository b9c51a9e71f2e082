"""fastai's aug_transforms() defaults (lth.data.augment): the probabilities, ranges and maps of each
part, and the loader's use of them (labels aligned, seeded)."""
import math

import pytest
import torch

from lth.data import augment
from lth.data.datasets import Dataset
from lth.data.loader import DeviceLoader

N = 40_000          # images drawn for the rates: a binomial's 3 sigma at p = 0.75 is 0.0065


def neutral(n: int) -> dict:
    return {"flip": torch.ones(n), "angle": torch.zeros(n), "zoom": torch.ones(n), "centre_x": torch.full((n,), 0.5),
            "centre_y": torch.full((n,), 0.5), "warp_x": torch.zeros(n), "warp_y": torch.zeros(n),
            "brightness": torch.full((n,), 0.5), "contrast": torch.ones(n)}


@pytest.fixture(scope="module")
def drawn():
    return augment.draw(N, torch.Generator().manual_seed(0), "cpu")


def test_each_part_has_fastais_probability(drawn):
    rates = augment.measure(N, seed=0)
    assert rates["flip"] == pytest.approx(0.5, abs=0.01)
    for part in ("rotate", "zoom", "warp_x", "warp_y", "brightness", "contrast"):
        assert rates[part] == pytest.approx(0.75, abs=0.01), part
    assert rates["no_rotate_zoom_warp"] == pytest.approx(0.25 ** 4, abs=0.002)
    # the draws are independent: warp x and y kept together about 0.75^2 of the time
    both = float(((drawn["warp_x"] != 0) & (drawn["warp_y"] != 0)).float().mean())
    assert both == pytest.approx(0.5625, abs=0.01)
    lit = float(((drawn["brightness"] != 0.5) | (drawn["contrast"] != 1)).float().mean())
    assert lit == pytest.approx(1 - 0.25 ** 2, abs=0.01)


def test_each_part_has_fastais_range(drawn):
    changed = drawn["angle"] != 0
    assert float(drawn["angle"].abs().max()) <= 10.0
    assert float(drawn["angle"][changed].abs().mean()) == pytest.approx(5.0, abs=0.1)   # U(-10, 10)
    assert 1.0 <= float(drawn["zoom"].min()) and float(drawn["zoom"].max()) <= 1.1
    assert float(drawn["warp_x"].abs().max()) <= 0.2 and float(drawn["warp_y"].abs().max()) <= 0.2
    b = drawn["brightness"]
    assert 0.4 <= float(b.min()) and float(b.max()) <= 0.6
    c = drawn["contrast"][drawn["contrast"] != 1]
    assert 0.8 <= float(c.min()) and float(c.max()) <= 1.25
    assert float(c.log().mean()) == pytest.approx(0.0, abs=0.01)   # log-uniform, symmetric in log
    assert set(drawn["flip"].tolist()) == {-1.0, 1.0}


def test_neutral_parameters_leave_images_unchanged():
    x = torch.rand(3, 3, 12, 10, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(augment.apply(x, neutral(3)), x, atol=1e-5)
    flipped = neutral(3)
    flipped["flip"] = -torch.ones(3)
    assert torch.allclose(augment.apply(x, flipped), x.flip(-1), atol=1e-5)


def test_rotation_and_zoom_matrices_are_fastais():
    p = neutral(2)
    p["angle"] = torch.tensor([10.0, -10.0])
    m = augment.affine(p, 8, 8)
    t = math.radians(10)
    assert torch.allclose(m[0], torch.tensor([[math.cos(t), math.sin(t), 0.0], [-math.sin(t), math.cos(t), 0.0]]))
    p = neutral(2)
    p["zoom"], p["centre_x"], p["centre_y"] = torch.tensor([1.1, 1.1]), torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5])
    m = augment.affine(p, 8, 8)
    s = 1 / 1.1
    assert torch.allclose(m[:, 0, 0], torch.tensor([s, s])) and torch.allclose(m[:, 1, 1], torch.tensor([s, s]))
    # the zoomed window stays inside the image: centre 1 touches the right edge, 0 the left one
    assert float(m[0, 0, 0] + m[0, 0, 2]) == pytest.approx(1.0)
    assert float(-m[1, 0, 0] + m[1, 0, 2]) == pytest.approx(-1.0)


def test_warp_takes_the_moved_corners_to_the_image_corners():
    p = neutral(3)
    p["warp_x"], p["warp_y"] = torch.tensor([0.2, -0.1, 0.0]), torch.tensor([0.05, 0.2, 0.0])
    h = augment.warp_homography(p)
    assert torch.allclose(h[2], torch.eye(3), atol=1e-6)
    for i in range(2):
        wx, wy = float(p["warp_x"][i]), float(p["warp_y"][i])
        moved = [(-1 - wy, -1 - wx), (-1 + wy, 1 + wx), (1 + wy, -1 + wx), (1 - wy, 1 - wx)]
        for (qx, qy), corner in zip(moved, [(-1, -1), (-1, 1), (1, -1), (1, 1)]):
            v = h[i] @ torch.tensor([qx, qy, 1.0])
            assert torch.allclose(v[:2] / v[2], torch.tensor(corner, dtype=torch.float32), atol=1e-5)


def test_lighting_is_brightness_then_contrast_on_logits():
    v = torch.tensor([0.1, 0.5, 0.8, 0.0])
    x = v.view(4, 1, 1, 1).expand(4, 2, 3, 3).contiguous()
    p = neutral(4)
    p["brightness"], p["contrast"] = torch.tensor([0.6, 0.4, 0.5, 0.6]), torch.tensor([1.25, 0.8, 1.1, 1.0])
    out = augment.lighting(x, p)
    logit = torch.logit(v.clamp(1e-7, 1 - 1e-7))
    expected = torch.sigmoid((logit + torch.logit(p["brightness"])) * p["contrast"])
    assert torch.allclose(out[:, 0, 0, 0], expected, atol=1e-6)
    assert float(out[1, 0, 0, 0]) == pytest.approx(float(torch.sigmoid(torch.logit(torch.tensor(0.4)) * 0.8)))
    assert float(out[3].max()) < 1e-5          # black stays (nearly) black: logit clamps at 1e-7


def test_same_generator_same_batch_other_seed_other_batch():
    x = torch.rand(16, 3, 12, 12, generator=torch.Generator().manual_seed(2))

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return augment.apply(x, augment.draw(16, g, "cpu"))
    assert torch.equal(run(5), run(5))
    assert not torch.allclose(run(5), run(6))


# ---- through the loader ------------------------------------------------------------------

def constant_images(values, labels, size=16) -> Dataset:
    v = torch.as_tensor(values, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, size, size).contiguous()
    y = torch.as_tensor(labels, dtype=torch.int64)
    return Dataset("constant", v, y, v.clone(), y.clone(), num_classes=int(y.max()) + 1)


def centre(loader: DeviceLoader, x: torch.Tensor) -> torch.Tensor:
    """Each image's centre pixel on the [0, 1] scale (constant images stay constant there)."""
    h, w = x.shape[-2:]
    return (x * loader.std + loader.mean)[:, 0, h // 2, w // 2]


def envelope(v: float):
    """The lowest and highest value lighting can make of pixel value v."""
    logit = math.log(v / (1 - v))
    lo, hi = math.log(0.4 / 0.6), math.log(0.6 / 0.4)
    values = [1 / (1 + math.exp(-(logit + b) * c)) for b in (lo, 0.0, hi) for c in (0.8, 1.0, 1.25)]
    return min(values), max(values)


def test_loader_keeps_labels_aligned_under_lighting():
    # four grey levels whose lighting envelopes do not overlap: each label decodes uniquely
    levels = [15, 85, 170, 240]
    labels = [i % 4 for i in range(80)]
    ds = constant_images([levels[k] for k in labels], labels)
    bounds = [envelope(v / 255) for v in levels]
    assert all(bounds[i][1] < bounds[i + 1][0] for i in range(3))
    loader = DeviceLoader(ds.train_x, ds.train_y, ds, 20, "cpu", train=True, augment="fastai",
                          order_seed=3, augment_seed=4)
    for _ in range(2):
        for x, y in loader:
            values = centre(loader, x)
            for value, label in zip(values.tolist(), y.tolist()):
                lo, hi = bounds[label]
                assert lo - 1e-4 <= value <= hi + 1e-4, (value, label)


def test_loader_lighting_fills_fastais_range_and_spares_one_image_in_16():
    ds = constant_images([64] * 4000, [0] * 4000)   # away from 0.5, where contrast alone barely shows
    loader = DeviceLoader(ds.train_x, ds.train_y, ds, 4000, "cpu", train=True, augment="fastai",
                          order_seed=0, augment_seed=7)
    values = centre(loader, next(iter(loader))[0])
    v = 64 / 255
    lo, hi = envelope(v)
    assert float(values.min()) >= lo - 1e-4 and float(values.max()) <= hi + 1e-4
    assert float(values.min()) < lo + 0.01 and float(values.max()) > hi - 0.01   # the extremes are reached
    unchanged = float(((values - v).abs() < 1e-4).float().mean())
    assert unchanged == pytest.approx(0.25 ** 2, abs=0.02)


def test_loader_flips_half_the_images():
    half = torch.zeros(1, 1, 16, 16, dtype=torch.uint8)
    half[..., 8:] = 255                       # dark left half, bright right half
    x = half.expand(2000, 1, 16, 16).contiguous()
    y = torch.zeros(2000, dtype=torch.int64)
    ds = Dataset("halves", x, y, x.clone(), y.clone(), num_classes=1)
    loader = DeviceLoader(ds.train_x, ds.train_y, ds, 2000, "cpu", train=True, augment="fastai",
                          order_seed=0, augment_seed=1)
    out, _ = next(iter(loader))
    flipped = out[..., :8].mean((1, 2, 3)) > out[..., 8:].mean((1, 2, 3))
    assert float(flipped.float().mean()) == pytest.approx(0.5, abs=0.04)
