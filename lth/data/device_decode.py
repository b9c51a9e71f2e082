"""--decode device: JPEGs decoded by torchvision on the run's device (batched nvJPEG on CUDA).

    python -m lth.run --dataset imagenet --data-dir /data --image-size 224 --loader stream --decode device
    files = EncodedFiles(train_files, size=224, device=torch.device("cuda"))
    x = files.decode_batch([files[i] for i in (3, 1, 4)])    # uint8 (3, 3, 224, 224) on the device

`EncodedFiles[i]` is what a DataLoader worker returns, (data, label, path): data the file's
bytes (Python bytes, no decoding: pickled through the worker's pipe; torchvision.io.read_file's
tensors, sent through shared memory, failed here with EBADF) for a JPEG, or, for any other format (PNG, BMP, ...),
the image decoded by PIL in the worker at full size (uint8 (3, H, W)): torchvision reads fewer
formats than PIL, and the CPU path takes all of PIL's. The main process then decodes the batch's
JPEGs with one `torchvision.io.decode_jpeg(list, device=..., mode=RGB)` call (grayscale and CMYK
become RGB), and resizes every image on the device with `square`: shorter side to S (float32,
bilinear, antialiased, rounded), centre square. That is the resize a MODULE:FUNCTION dataset's
tensors get (lth.data.sources), not PIL's fixed-point one, so the pixels differ from --decode cpu
by at most 1 (8 to 16 % of the pixels on the folders measured; tests/test_device_decode.py holds
the bound) and the decode location is in the run's hash (lth.config: DataConfig.decode).

A batch that fails to decode is decoded file by file to name the one that does not decode (a JPEG
that the device's decoder refuses is retried on the CPU first, logged once), so a bad file stops
the run with one line naming it, as on the CPU path.
"""
import logging
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from lth.data.folders import full_image
from lth.errors import LthError

log = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8\xff"   # every JPEG/JFIF/EXIF file starts with SOI + a marker
Decoded = Union[torch.Tensor, str]   # an image, or the path of a file that does not decode


def square(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (C, H, W) -> uint8 (C, size, size): shorter side to `size` (float32, bilinear,
    antialiased, rounded: the same on every device; uint8 antialiased interpolation exists only on
    the CPU), then the centre square. Already square at `size`: returned as is."""
    h, w = image.shape[-2:]
    if (h, w) == (size, size):
        return image
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    image = F.interpolate(image[None].float(), size=(nh, nw), mode="bilinear", antialias=True,
                          align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
    top, left = (nh - size) // 2, (nw - size) // 2
    return image[:, top:top + size, left:left + size].contiguous()


def check_decoder(device: torch.device) -> None:
    """A one-line error when this torchvision cannot decode JPEGs on `device` (a build without
    nvJPEG, an old version): tried on a tiny image made here, before any data is read."""
    import torchvision
    from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg
    probe = encode_jpeg(torch.zeros(3, 8, 8, dtype=torch.uint8))
    try:
        decode_jpeg([probe], mode=ImageReadMode.RGB, device=device)
    except Exception as e:   # torchvision raises RuntimeError or others, depending on the build
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise LthError(f"--decode device on {device}: torchvision {torchvision.__version__} cannot decode JPEGs "
                       f"there ({reason}); use --decode cpu") from None


class EncodedFiles(torch.utils.data.Dataset):
    """Files read, not decoded, by the workers (module docstring); item i is (bytes or image,
    label, path), or (path, label, path) when the file cannot be read or a non-JPEG does not
    decode (the path rides along so the main process can name a JPEG that fails there)."""

    def __init__(self, files, size: int, device):
        self.files, self.size, self.device = list(files), size, torch.device(device)
        self._fell_back = False   # a device-decoder refusal retried on the CPU is logged once

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        path, label = self.files[i]
        try:
            with open(path, "rb") as f:
                data = f.read()
            if data.startswith(JPEG_MAGIC):
                return data, label, path
            return full_image(path), label, path
        except Exception:   # unreadable, or PIL's many error types: the caller names the path
            return path, label, path

    def labels(self) -> torch.Tensor:
        return torch.tensor([label for _, label in self.files], dtype=torch.int64)

    @staticmethod
    def collate(items):
        """A DataLoader batch as is (bytes of different lengths do not stack)."""
        return list(items)

    def decode_items(self, items: Sequence) -> List[Decoded]:
        """Each item (self[i]) as uint8 (3, S, S) on the device, or its path."""
        out: List[Optional[Decoded]] = [item if isinstance(item, str) else None for item, _, _ in items]
        jpegs = [k for k, (item, _, _) in enumerate(items) if isinstance(item, bytes)]
        if jpegs:
            datas = [torch.frombuffer(bytearray(items[k][0]), dtype=torch.uint8) for k in jpegs]
            for k, image in zip(jpegs, self._decode_jpegs(datas, [items[k][2] for k in jpegs])):
                out[k] = image
        for k, (item, _, _) in enumerate(items):
            if out[k] is None:   # decoded by PIL in the worker: only resized here
                out[k] = item.to(self.device, non_blocking=True)
        return [image if isinstance(image, str) else square(image, self.size) for image in out]

    def decode_batch(self, items: Sequence) -> Decoded:
        """A batch as uint8 (B, 3, S, S) on the device, or the path of its first bad file."""
        images = self.decode_items(items)
        bad = next((image for image in images if isinstance(image, str)), None)
        return bad if bad is not None else torch.stack(images)

    def _decode_jpegs(self, datas: List[torch.Tensor], paths: List[str]) -> List[Decoded]:
        from torchvision.io import ImageReadMode, decode_jpeg
        try:   # the common case: the whole batch in one call (batched nvJPEG on CUDA)
            return list(decode_jpeg(datas, mode=ImageReadMode.RGB, device=self.device))
        except Exception:   # some file is bad, or one the device's decoder refuses: one at a time
            pass
        out: List[Decoded] = []
        for data, path in zip(datas, paths):
            try:
                out.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device))
                continue
            except Exception:
                pass
            try:
                image = decode_jpeg(data, mode=ImageReadMode.RGB).to(self.device)
            except Exception:   # libjpeg refuses it too: a bad file
                out.append(path)
                continue
            if not self._fell_back and self.device.type != "cpu":
                log.warning("--decode device: %s's decoder refused %s; decoding such files on the CPU", self.device, path)
                self._fell_back = True
            out.append(image)
        return out
