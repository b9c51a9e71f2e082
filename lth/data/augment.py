"""fastai's `aug_transforms()` with its defaults, batched on the device, from a private generator.

    params = draw(len(x), generator, x.device)      # each image's random parameters
    x = apply(x, params)                            # float images in [0, 1], (B, C, H, W)
    python -m lth.data.augment --samples 100000          # the measured rates and ranges

lth.data.loader.DeviceLoader(augment="fastai") calls both. What fastai does to each image (fastai
vision/augment.py: aug_transforms, setup_aug_tfms, Flip, Rotate, Zoom, Warp, Brightness,
Contrast; batch=False: every draw is per image and independent), and so does this:

  flip      horizontal, probability 0.5
  rotate    angle U(-10, 10) degrees with probability p_affine (else 0)
  zoom      factor U(1, 1.1) with probability p_affine (else 1); the zoomed window's centre is
            drawn uniformly over the room left, on each axis
  warp      perspective: two magnitudes U(-0.2, 0.2), EACH kept with probability p_affine
            (else 0); the corners move as in fastai's _WarpCoord
  lighting  in logit space, x -> sigmoid((logit(x) + logit(b)) * c): brightness b U(0.4, 0.6)
            with probability p_lighting (else 0.5, no change) and contrast c log-uniform in
            [0.8, 1.25] with probability p_lighting (else 1), drawn independently; logit clamps
            x to [1e-7, 1 - 1e-7] as fastai's does
  (p_affine = p_lighting = 0.75.) The affine part is one matrix, flip @ rotate @ zoom, applied to
  the output grid; the warp then maps those coordinates; one bilinear grid_sample (reflection
  padding, align_corners=True) resamples. So about 0.4 % of images (0.25^4) get no rotation,
  zoom or warp at all, and 6.25 % no lighting change.
"""
import math
import sys
from dataclasses import dataclass
from typing import Dict

import torch
import torch.nn.functional as F

from lth.errors import OneLineParser, cli_main
from lth.knobs import SEED_BOUNDS, number


@dataclass(frozen=True)
class FastaiAugment:
    """aug_transforms()'s arguments; the defaults are fastai's."""
    p_flip: float = 0.5          # do_flip=True: Flip(p=0.5)
    max_rotate: float = 10.0     # degrees
    min_zoom: float = 1.0
    max_zoom: float = 1.1
    max_warp: float = 0.2        # corner displacement in [-1, 1] image coordinates
    p_affine: float = 0.75       # probability of each of rotate, zoom and the two warp magnitudes
    max_lighting: float = 0.2    # brightness and contrast strength
    p_lighting: float = 0.75     # probability of each of brightness and contrast


FASTAI = FastaiAugment()
LOGIT_EPS = 1e-7                 # fastai's logit clamps its input to [eps, 1 - eps]


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def _kept(value: torch.Tensor, p: float, neutral: float, generator: torch.Generator) -> torch.Tensor:
    """fastai's mask_tensor: each value kept with probability p, else the neutral value."""
    keep = torch.rand(value.shape, generator=generator, device=value.device) < p
    return torch.where(keep, value, torch.full_like(value, neutral))


def draw(n: int, generator: torch.Generator, device, aug: FastaiAugment = FASTAI) -> Dict[str, torch.Tensor]:
    """The random parameters of n images, each a tensor of n values (always drawn in this order)."""
    g = generator
    flip = torch.where(torch.rand(n, generator=g, device=device) < aug.p_flip, -1.0, 1.0)
    angle = _kept(_uniform(n, -aug.max_rotate, aug.max_rotate, g, device), aug.p_affine, 0.0, g)
    zoom = _kept(_uniform(n, aug.min_zoom, aug.max_zoom, g, device), aug.p_affine, 1.0, g)
    centre_x, centre_y = _uniform(n, 0, 1, g, device), _uniform(n, 0, 1, g, device)
    warp_x = _kept(_uniform(n, -aug.max_warp, aug.max_warp, g, device), aug.p_affine, 0.0, g)
    warp_y = _kept(_uniform(n, -aug.max_warp, aug.max_warp, g, device), aug.p_affine, 0.0, g)
    lo, hi = 0.5 * (1 - aug.max_lighting), 0.5 * (1 + aug.max_lighting)
    brightness = _kept(_uniform(n, lo, hi, g, device), aug.p_lighting, 0.5, g)
    log_c = -math.log(1 - aug.max_lighting) if aug.max_lighting < 1 else 0.0
    contrast = _kept(torch.exp(_uniform(n, -log_c, log_c, g, device)), aug.p_lighting, 1.0, g)
    return {"flip": flip, "angle": angle, "zoom": zoom, "centre_x": centre_x, "centre_y": centre_y,
            "warp_x": warp_x, "warp_y": warp_y, "brightness": brightness, "contrast": contrast}


def affine(params: Dict[str, torch.Tensor], h: int, w: int) -> torch.Tensor:
    """flip @ rotate @ zoom as (n, 2, 3) matrices on the output grid's [-1, 1] coordinates."""
    theta = params["angle"] * (math.pi / 180.0)
    cos, sin, zero, one = torch.cos(theta), torch.sin(theta), torch.zeros_like(theta), torch.ones_like(theta)
    scale = 1.0 / params["zoom"]
    flip = torch.stack([torch.stack([params["flip"], zero, zero], 1), torch.stack([zero, one, zero], 1),
                        torch.stack([zero, zero, one], 1)], 1)
    rotate = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1),
                          torch.stack([zero, zero, one], 1)], 1)
    zoom = torch.stack([torch.stack([scale, zero, (1 - scale) * (2 * params["centre_x"] - 1)], 1),
                        torch.stack([zero, scale, (1 - scale) * (2 * params["centre_y"] - 1)], 1),
                        torch.stack([zero, zero, one], 1)], 1)
    m = flip @ rotate @ zoom
    m[:, 0, 1] *= h / w   # a rotation of a non-square image stays a rotation in pixels
    m[:, 1, 0] *= w / h
    return m[:, :2]


def warp_homography(params: Dict[str, torch.Tensor]) -> torch.Tensor:
    """(n, 3, 3) homographies taking fastai's moved corners back to the image corners."""
    wx, wy = params["warp_x"], params["warp_y"]
    corners = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]], device=wx.device)
    corners = corners.expand(len(wx), 4, 2)
    moved = torch.stack([torch.stack([-1 - wy, -1 - wx], 1), torch.stack([-1 + wy, 1 + wx], 1),
                         torch.stack([1 + wy, -1 + wx], 1), torch.stack([1 - wy, 1 - wx], 1)], 1)
    qx, qy, px, py = moved[..., 0], moved[..., 1], corners[..., 0], corners[..., 1]
    one, zero = torch.ones_like(qx), torch.zeros_like(qx)
    # p = H q projectively, h22 = 1: two linear equations per corner in the other 8 entries
    rows_x = torch.stack([qx, qy, one, zero, zero, zero, -px * qx, -px * qy], -1)
    rows_y = torch.stack([zero, zero, zero, qx, qy, one, -py * qx, -py * qy], -1)
    a = torch.cat([rows_x, rows_y], 1)                                   # (n, 8, 8)
    b = torch.cat([px, py], 1).unsqueeze(-1)                             # (n, 8, 1)
    h = torch.linalg.solve(a, b).squeeze(-1)
    return torch.cat([h, torch.ones_like(h[:, :1])], 1).view(-1, 3, 3)


def lighting(x: torch.Tensor, params: Dict[str, torch.Tensor]) -> torch.Tensor:
    """Brightness, then contrast, on the logits of the pixels."""
    b = params["brightness"].view(-1, 1, 1, 1)
    c = params["contrast"].view(-1, 1, 1, 1)
    # (logit(x) + logit(b)) * c as one fused multiply-add; logit's eps clamps x like fastai's
    return torch.sigmoid(torch.addcmul(torch.logit(b) * c, torch.logit(x, eps=LOGIT_EPS), c))


def apply(x: torch.Tensor, params: Dict[str, torch.Tensor]) -> torch.Tensor:
    """The augmented batch: one resampling for flip, rotation, zoom and warp, then lighting."""
    n, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=x.device),
                            torch.linspace(-1, 1, w, device=x.device), indexing="ij")
    xs, ys = xs.reshape(1, -1), ys.reshape(1, -1)                                 # (1, h*w)
    # elementwise rather than batched matmuls with inner size 3: 5 ms -> 1 ms for 128 CIFAR images on a CPU core
    a = affine(params, h, w).unsqueeze(-1)                                        # (n, 2, 3, 1)
    u = a[:, 0, 0] * xs + a[:, 0, 1] * ys + a[:, 0, 2]                            # (n, h*w)
    v = a[:, 1, 0] * xs + a[:, 1, 1] * ys + a[:, 1, 2]
    m = warp_homography(params).unsqueeze(-1)                                     # (n, 3, 3, 1)
    depth = m[:, 2, 0] * u + m[:, 2, 1] * v + m[:, 2, 2]
    coords = torch.stack([(m[:, 0, 0] * u + m[:, 0, 1] * v + m[:, 0, 2]) / depth,
                          (m[:, 1, 0] * u + m[:, 1, 1] * v + m[:, 1, 2]) / depth], -1).view(n, h, w, 2)
    resampled = F.grid_sample(x, coords, mode="bilinear", padding_mode="reflection", align_corners=True)
    return lighting(resampled, params)


def measure(samples: int, seed: int = 0) -> Dict[str, float]:
    """How often each part changes an image, and the ranges drawn, over `samples` images."""
    p = draw(samples, torch.Generator().manual_seed(seed), "cpu")
    return {"flip": float((p["flip"] < 0).float().mean()), "rotate": float((p["angle"] != 0).float().mean()),
            "zoom": float((p["zoom"] != 1).float().mean()), "warp_x": float((p["warp_x"] != 0).float().mean()),
            "warp_y": float((p["warp_y"] != 0).float().mean()),
            "no_rotate_zoom_warp": float(((p["angle"] == 0) & (p["zoom"] == 1) & (p["warp_x"] == 0)
                                          & (p["warp_y"] == 0)).float().mean()),
            "brightness": float((p["brightness"] != 0.5).float().mean()),
            "contrast": float((p["contrast"] != 1).float().mean()),
            "angle_range": (float(p["angle"].min()), float(p["angle"].max())),
            "zoom_range": (float(p["zoom"].min()), float(p["zoom"].max())),
            "warp_range": (float(p["warp_x"].min()), float(p["warp_x"].max())),
            "brightness_range": (float(p["brightness"].min()), float(p["brightness"].max())),
            "contrast_range": (float(p["contrast"].min()), float(p["contrast"].max()))}


def parser() -> OneLineParser:
    p = OneLineParser(prog="python -m lth.data.augment", description="Measure fastai augmentation's draws.")
    p.add_argument("--samples", type=number(int, "samples", ge=1), default=100_000,
                   help="images drawn [default: 100000; >= 1]")
    p.add_argument("--seed", type=number(int, "seed", **SEED_BOUNDS), default=0,
                   help="augmentation generator seed [default: 0]")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    expected = {"flip": FASTAI.p_flip, "rotate": FASTAI.p_affine, "zoom": FASTAI.p_affine,
                "warp_x": FASTAI.p_affine, "warp_y": FASTAI.p_affine,
                "no_rotate_zoom_warp": (1 - FASTAI.p_affine) ** 4, "brightness": FASTAI.p_lighting,
                "contrast": FASTAI.p_lighting}
    print(f"{'part':<20} {'measured':>9} {'fastai':>7}   ({args.samples} images, seed {args.seed})")
    for name, value in measure(args.samples, args.seed).items():
        if name in expected:
            print(f"{name:<20} {value:>9.4f} {expected[name]:>7.4f}")
        else:
            print(f"{name:<20} {value[0]:>9.4f} .. {value[1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
