"""Training images/s from an image folder: lth's streaming loader against torchvision's DataLoader.

    python -m lth.bench.folder_loader DIR --image-size 32 --batch-size 64 --workers 0 2 --batches 20
    python -m lth.bench.folder_loader DIR --decode cpu device --device cuda    # nvJPEG against PIL

Rows, each over the same folder (imagefolder:DIR's layout, its training split), batches
delivered on --device, timed after WARMUP_BATCHES untimed ones (workers started, queues full):
  lth stream, W workers,    lth.data.streaming.StreamingLoader: files decoded by W DataLoader
    decode cpu              workers (decode, shorter side to S, centre square), crop_flip and
                            normalisation batched on the device
  lth stream, W workers,    the same with --decode device (lth.data.device_decode): the workers
    decode device           read the files, the main process decodes the batch's JPEGs with
                            torchvision's decode_jpeg on --device (batched nvJPEG on CUDA) and
                            resizes them there
  torchvision, W workers    torchvision.datasets.ImageFolder, transforms Resize(S), CenterCrop(S),
                            RandomCrop(S, padding=4), RandomHorizontalFlip, ToTensor, Normalize,
                            a shuffling DataLoader with W workers (pinned memory on CUDA)
  lth memory                lth.data.loader.DeviceLoader over the decoded images (decoding once,
                            timed separately), for scale
Images/s is the median of 3 passes of --batches batches. Prints one table (a CLI's result).

Measured (2026-12-06, a 2-core CPU shared with other jobs, no GPU; 400 JPEGs of 500x375 px, q90,
made by a script like tests/folderhelpers.py's; `--batch-size 32 --batches 4 --workers 0 1
--decode cpu device --device cpu`), images/s:
                       224 px: W=0   W=1      64 px: W=0   W=1
  lth stream, decode cpu     292    316             707   665
  lth stream, decode device  283    276             730   684
  torchvision                405    373             665   628
On a CPU --decode device only moves the decoding from the workers into the main process (the
same libjpeg-turbo), so it gains nothing and loses the workers' parallelism; it is for CUDA,
where nvJPEG decodes the batch. nvJPEG was not measured here (no GPU): the same command with
--device cuda measures it.
"""
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, List, Sequence

import torch

from lth.bench.engine import cycle
from lth.data import folders
from lth.data.device_decode import EncodedFiles, check_decoder
from lth.data.datasets import Dataset
from lth.data.loader import DeviceLoader
from lth.data.streaming import StreamDataset, StreamingLoader
from lth.knobs import number
from lth.errors import LthError, OneLineParser, cli_main
from lth.training.device import pick_device

WARMUP_BATCHES = 2
PASSES = 3


def _rate(make: Callable[[], Iterator], batches: int, batch_size: int, device: torch.device) -> float:
    """Median images/s over PASSES passes of `batches` batches (after the warm-up ones)."""
    rates = []
    for _ in range(PASSES):
        it = make()
        for _ in range(WARMUP_BATCHES):
            next(it)
        start = time.perf_counter()
        for _ in range(batches):
            x, _ = next(it)
            x = x.to(device, non_blocking=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        rates.append(batches * batch_size / (time.perf_counter() - start))
    return statistics.median(rates)


def measure(root: Path, image_size: int, batch_size: int, workers: List[int], batches: int, device,
            decodes: Sequence[str] = ("cpu",)) -> List[dict]:
    from torch.utils.data import DataLoader
    import torchvision
    from torchvision import transforms as T
    train, test, classes = folders.scan_imagefolder(root, 0)
    if len(train) < batch_size * (batches + WARMUP_BATCHES):
        raise LthError(f"{root}: {len(train)} training images; --batches {batches} of {batch_size} (plus "
                       f"{WARMUP_BATCHES} warm-up) need {batch_size * (batches + WARMUP_BATCHES)}")
    files = folders.ImageFiles(train, image_size)
    labels = files.labels()
    stream = StreamDataset(root.name, files, labels, files, labels, len(classes), image_size)
    mean, std = stream.mean.tolist(), stream.std.tolist()
    if "device" in decodes:
        check_decoder(device)
    datasets = {"cpu": files, "device": EncodedFiles(train, image_size, device)}   # by decode location
    rows = []
    for w in workers:
        for decode in decodes:
            def lth_stream(w=w, images=datasets[decode]):
                loader = StreamingLoader(images, labels, stream, batch_size, device, train=True, augment="crop_flip",
                                         image_size=image_size, order_seed=1, augment_seed=2, workers=w)
                loader.workers = w   # 0: decode in this process (the constructor's 0 means "one per core")
                return cycle(loader)
            rows.append({"loader": f"lth stream, {w} workers, decode {decode}",
                         "images_per_s": _rate(lth_stream, batches, batch_size, device)})
        transform = T.Compose([T.Resize(image_size), T.CenterCrop(image_size), T.RandomCrop(image_size, padding=4),
                               T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
        folder = torchvision.datasets.ImageFolder(str(root / "train") if (root / "train").is_dir() else str(root),
                                                  transform=transform)

        def tv(w=w):
            return cycle(DataLoader(folder, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=w,
                                       pin_memory=device.type == "cuda", persistent_workers=w > 0,
                                       generator=torch.Generator().manual_seed(1)))
        rows.append({"loader": f"torchvision, {w} workers", "images_per_s": _rate(tv, batches, batch_size, device)})
    start = time.perf_counter()
    x = torch.stack([files[i][0] for i in range(len(files))])
    decode_s = time.perf_counter() - start
    memory = Dataset(root.name, x, labels, x, labels, len(classes))
    rows.append({"loader": f"lth memory (decoding once: {len(files) / decode_s:.0f} images/s)",
                 "images_per_s": _rate(lambda: cycle(DeviceLoader(memory.train_x, memory.train_y, memory, batch_size,
                                                                     device, train=True, augment="crop_flip",
                                                                     image_size=image_size, order_seed=1,
                                                                     augment_seed=2)),
                                       batches, batch_size, device)})
    return rows


def parser() -> OneLineParser:
    p = OneLineParser(prog="python -m lth.bench.folder_loader", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="an image folder (imagefolder:DIR's layout)")
    p.add_argument("--image-size", type=number(int, "image_size", ge=1), default=32,
                   help="decoded size S [default: 32; >= 1]")
    p.add_argument("--batch-size", type=number(int, "batch_size", ge=1), default=64, help="[default: 64; >= 1]")
    p.add_argument("--workers", type=number(int, "workers", ge=0), nargs="+", default=[0, 2],
                   help="DataLoader workers to try [default: 0 2; >= 0]")
    p.add_argument("--batches", type=number(int, "batches", ge=1), default=10,
                   help="timed batches per pass [default: 10; >= 1]")
    p.add_argument("--decode", nargs="+", choices=("cpu", "device"), default=["cpu", "device"],
                   help="where the streamed rows decode JPEGs (lth.data.device_decode) [default: cpu device]")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto [default: auto]")
    p.add_argument("--threads", type=number(int, "threads", ge=1), default=1,
                   help="intra-op threads of the main process [default: 1; >= 1]")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    device = pick_device(args.device)
    rows = measure(Path(args.folder).expanduser(), args.image_size, args.batch_size, args.workers, args.batches, device,
                   args.decode)
    print(f"images/s from {args.folder} at {args.image_size} px, batch {args.batch_size}, on {device} "
          f"(median of {PASSES} passes of {args.batches} batches)")
    for row in rows:
        print(f"  {row['loader']:<48} {row['images_per_s']:>9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
