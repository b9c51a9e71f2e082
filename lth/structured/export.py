"""The shrunk network as a file that loads with weights_only=True, and what it costs.

    save(path, model, "resnet20", num_classes=10, in_channels=3, image_size=32, groups={...})
    net = load(path)                 # rebuilt: lth.models.build, shrunk to the kept channels, weights loaded
    costs(net, example)              # {"flops", "params"}: torch-pruning's counter
    latency({"dense": d, "pruned": net}, (3, 32, 32), batches=(1, 64), repeats=30)

    python -m lth.structured.export RUN_DIR [--batches 1 64] [--repeats 30]   # re-measure a finished run

The file holds plain tensors and containers (lth.runs.files.save_tensors: checksummed, atomic):
the model's registry name and shape arguments, every channel group's size and kept channel
indices (root layer name -> indices), and the shrunk state dict. No pickled classes.
"""
import statistics
import sys
import time
from typing import Dict, Sequence

import torch
from torch import nn

from lth import models
from lth.errors import LthError, OneLineParser, cli_main
from lth.knobs import number
from lth.pruning.channels import count, group_sizes, shrink
from lth.runs.files import load_tensors, save_tensors

FORMAT = "lth-structured/1"
WARMUP = 3   # untimed forward passes per network and batch size


def save(path, model: nn.Module, model_name: str, num_classes: int, in_channels: int, image_size: int,
         groups: Dict[str, dict], text_length: int = 0) -> None:
    """groups: root layer name -> {"size": C, "kept": kept channel indices}; text_length: a text
    model's sequence length (its example input is token ids, not an image), 0 for images."""
    payload = {"format": FORMAT, "model": model_name, "num_classes": num_classes, "in_channels": in_channels,
               "image_size": image_size, "text_length": int(text_length),
               "groups": {n: {"size": int(g["size"]), "kept": torch.tensor(sorted(int(i) for i in g["kept"]),
                                                                           dtype=torch.long)}
                          for n, g in groups.items()},
               "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}}
    save_tensors(path, payload)


def example_of(payload: dict) -> torch.Tensor:
    """The example input the export was traced with: token ids of one (not padding) or a zero image."""
    if payload.get("text_length"):
        return torch.ones(1, payload["text_length"], dtype=torch.long)
    return torch.zeros(1, payload["in_channels"], payload["image_size"], payload["image_size"])


def load(path, device="cpu") -> nn.Module:
    """The exported network, in eval mode, on `device`."""
    p = load_tensors(path)
    if not isinstance(p, dict) or p.get("format") != FORMAT:
        raise LthError(f"{path} is not an exported structured network ({FORMAT})")
    model = models.build(p["model"], p["num_classes"], p["in_channels"], p["image_size"])
    example = example_of(p)
    try:   # issue 21: heads count heads, ResNeXt groups conv-group positions
        sizes = group_sizes(model, list(p["groups"]), example)
    except LthError as e:
        raise LthError(f"{path}: model {p['model']}: {e}") from None
    pruned = {}
    for name, g in p["groups"].items():
        if sizes[name] != g["size"]:
            raise LthError(f"{path}: layer {name} of {p['model']} has {sizes[name]} channels, the file says {g['size']}")
        kept = set(g["kept"].tolist())
        pruned[name] = [i for i in range(sizes[name]) if i not in kept]
    shrink(model, pruned, example)
    try:
        model.load_state_dict(p["state_dict"])
    except RuntimeError as e:
        raise LthError(f"{path}: the weights do not fit the rebuilt network ({str(e).splitlines()[0][:120]})") from None
    return model.to(device).eval()


def costs(model: nn.Module, example: torch.Tensor) -> dict:
    flops, params = count(model, example)
    return {"flops": flops, "params": params}


@torch.inference_mode()
def latency(nets: Dict[str, nn.Module], shape: Sequence[int], batches: Sequence[int], repeats: int,
            channels_last: bool = True, seed: int = 0, vocab: int = 0) -> Dict[str, Dict[str, float]]:
    """Median CPU forward time in ms, by network and batch size. The networks alternate inside
    every repeat, so load from other processes hits them alike. vocab > 0: inputs are token ids
    1..vocab-1 of shape (batch, *shape) (a text model), not images."""
    generator = torch.Generator().manual_seed(seed)
    nets = {n: m.cpu().eval() for n, m in nets.items()}
    if channels_last:
        nets = {n: m.to(memory_format=torch.channels_last) for n, m in nets.items()}
    out: Dict[str, Dict[str, float]] = {n: {} for n in nets}
    for b in batches:
        x = (torch.randint(1, vocab, (b, *shape), generator=generator) if vocab
             else torch.randn(b, *shape, generator=generator))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        times = {n: [] for n in nets}
        for r in range(WARMUP + repeats):
            for n, m in nets.items():
                start = time.perf_counter()
                m(x)
                if r >= WARMUP:
                    times[n].append(time.perf_counter() - start)
        for n in nets:
            out[n][str(b)] = 1e3 * statistics.median(times[n])
    return out


def parser() -> OneLineParser:
    p = OneLineParser(prog="python -m lth.structured.export", description="re-measure a finished run's export")
    p.add_argument("run_dir")
    p.add_argument("--batches", type=number(int, "batches", ge=1), nargs="+", default=[1, 64],
                   help="batch sizes [default: 1 64; >= 1]")
    p.add_argument("--repeats", type=number(int, "repeats", ge=1), default=30,
                   help="timed passes per batch size [default: 30; >= 1]")
    return p


def main(argv=None) -> int:
    from lth.structured.store import StructuredStore
    args = parser().parse_args(argv)
    store = StructuredStore(args.run_dir)
    meta = store.meta()
    net = load(store.export_path)
    cfg = meta["config"]
    dense = models.build(cfg["model"]["model"], meta["num_classes"], meta["in_channels"], meta["image_size"])
    example = example_of(load_tensors(store.export_path))
    text = not example.is_floating_point()   # token ids: their values do not change the time (all 1 here)
    shape = tuple(example.shape[1:])
    times = latency({"dense": dense, "pruned": net}, shape, args.batches, args.repeats, channels_last=not text,
                    vocab=2 if text else 0)
    print(f"{'network':>8}  {'MFLOPs':>8}  {'params':>8}  " + "  ".join(f"{'ms@' + str(b):>8}" for b in args.batches))
    for name, m in (("dense", dense), ("pruned", net)):
        c = costs(m, example)
        print(f"{name:>8}  {c['flops'] / 1e6:>8.2f}  {c['params']:>8d}  "
              + "  ".join(f"{times[name][str(b)]:>8.2f}" for b in args.batches))
    print(f"threads: {torch.get_num_threads()}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
