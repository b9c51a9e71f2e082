"""--decode device (lth.data.device_decode, issue 21): torchvision's decode_jpeg in the main
process, here on the CPU (the code path CUDA's nvJPEG takes, device aside): pixels within 1 of
--decode cpu's, streamed equal to in memory bit for bit, exact mid-epoch resume, bad files named
in one line, the choice in the hash, a device without a JPEG decoder refused in one line."""
import pytest
import torch

from lth import config, run
from lth.data import device_decode, folders, sources
from lth.data.streaming import StreamDataset, make_loader
from lth.errors import LthError, cli_main
from tests.folderhelpers import add_jpeg_modes, break_image, make_folder, truncate_image


def cfg_for(root, **overrides):
    return config.from_overrides({"dataset": f"imagefolder:{root}", "image_size": 8, "model": "lenet300_100",
                                  "layers": "all", "device": "cpu", "workers": 1, **overrides})


@pytest.fixture
def folder(tmp_path):
    root = make_folder(tmp_path / "f", classes=3, per_class=12, split=True)
    add_jpeg_modes(root / "train" / "class0")
    return root


def test_torchvision_decodes_as_pil_does(folder):
    """The decoders agree exactly (libjpeg-turbo both): JPEG, grayscale and CMYK JPEGs to RGB."""
    files = [f for f, _ in folders.scan_imagefolder(folder, 0)[0] if f.endswith(".jpg")]
    assert any(f.endswith("cmyk.jpg") for f in files) and any(f.endswith("gray.jpg") for f in files)
    encoded = device_decode.EncodedFiles([(f, 0) for f in files], 8, "cpu")
    from torchvision.io import ImageReadMode, decode_jpeg
    for i, path in enumerate(files):
        data, _, _ = encoded[i]
        assert isinstance(data, bytes)   # a JPEG: bytes, not decoded by the worker
        data = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        assert torch.equal(decode_jpeg(data, mode=ImageReadMode.RGB), folders.full_image(path)), path


def test_pixels_within_one_of_the_cpu_path(folder):
    """The only difference is the resize (PIL's fixed point vs float32): at most 1 per pixel."""
    cpu = sources.load_config(cfg_for(folder, loader="memory"))
    dev = sources.load_config(cfg_for(folder, loader="memory", decode="device"))
    assert dev.train_x.shape == cpu.train_x.shape and torch.equal(dev.train_y, cpu.train_y)
    diff = (dev.train_x.int() - cpu.train_x.int()).abs()
    assert int(diff.max()) <= 1 and 0 < float((diff > 0).float().mean()) < 0.5


@pytest.fixture
def both(folder):
    """--decode device: the same folder in memory and streamed."""
    memory = sources.load_config(cfg_for(folder, loader="memory", decode="device"))
    stream = sources.load_config(cfg_for(folder, loader="stream", decode="device"))
    assert isinstance(stream, StreamDataset) and isinstance(stream.train_x, device_decode.EncodedFiles)
    return memory, stream


def loaders(both, **kw):
    return [make_loader(d.train_x, d.train_y, d, 5, "cpu", train=True, augment="fastai", image_size=12,
                        order_seed=3, augment_seed=4, **kw) for d in both]


def same(xs, ys):
    return len(xs) == len(ys) and all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(xs, ys))


def test_streamed_equals_memory_and_resumes_exactly(both):
    memory, stream = both
    assert torch.equal(memory.mean, stream.mean) and torch.equal(memory.std, stream.std)
    a, b = loaders(both)
    reference = [list(a), list(a)]
    assert same(reference[0], list(b)) and same(reference[1], list(b))   # two epochs, same draws
    _, b = loaders(both)
    it = iter(b)
    first = [next(it) for _ in range(2)]
    _, resumed = loaders(both)
    resumed.load_state_dict(b.state_dict(position=True))
    assert same(first + list(resumed) + list(resumed), reference[0] + reference[1])


def test_two_workers_keep_the_order(both):
    _, stream = both
    one, two = (make_loader(stream.train_x, stream.train_y, stream, 5, "cpu", train=True, augment="crop_flip",
                            image_size=12, order_seed=3, augment_seed=4) for _ in range(2))
    one.workers, two.workers = 1, 2
    assert same(list(one), list(two))


@pytest.mark.parametrize("bad_images", ["fail", "skip"])
def test_a_jpeg_failing_mid_stream_is_named(folder, bad_images):
    """As on the CPU path: the header reads (checked first), the pixels do not: named when its
    batch comes, under skip too (skipping then would change the batches)."""
    stream = sources.load_config(cfg_for(folder, loader="stream", decode="device", bad_images=bad_images))
    stream.stats
    bad = truncate_image(folder / "train" / "class2" / "img02.jpg")
    loader = make_loader(stream.train_x, stream.train_y, stream, 4, "cpu", train=False)
    with pytest.raises(LthError, match=f"image {bad} does not decode"):
        list(loader)


def test_bad_jpegs_fail_or_are_skipped_in_memory(folder, caplog):
    bad = truncate_image(folder / "train" / "class1" / "img02.jpg")
    with pytest.raises(LthError, match=f"image {bad} does not decode"):
        sources.load_config(cfg_for(folder, loader="memory", decode="device"))
    ds = sources.load_config(cfg_for(folder, loader="memory", decode="device", bad_images="skip"))
    assert len(ds.train_y) == 3 * 8 + 2 - 1 and str(bad) in caplog.text


def test_bad_file_on_the_cli_exits_2(folder, tmp_path, capsys):
    break_image(folder / "val" / "class2" / "img03.png")
    argv = ["--preset", "quick", "--dataset", f"imagefolder:{folder}", "--image-size", "8", "--decode", "device",
            "--runs-root", str(tmp_path / "runs"), "--no-progress", "--device", "cpu", "--loader", "stream"]
    assert cli_main(run.main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: image ") and "img03.png" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_a_device_without_a_jpeg_decoder_is_one_line(folder, monkeypatch):
    import torchvision.io

    def no_nvjpeg(*args, **kwargs):
        raise RuntimeError("Not compiled with GPU support\nmore lines")
    monkeypatch.setattr(torchvision.io, "decode_jpeg", no_nvjpeg)
    with pytest.raises(LthError, match=r"^--decode device on cpu: torchvision .* cannot decode JPEGs there "
                                       r"\(Not compiled with GPU support\); use --decode cpu$"):
        sources.load_config(cfg_for(folder, loader="stream", decode="device"))


def test_decode_is_in_the_hash_of_file_datasets_only(folder):
    cpu, dev = cfg_for(folder).resolved(), cfg_for(folder, decode="device").resolved()
    assert cpu.hash() != dev.hash()
    assert "decode" not in cpu.experiment_dict()["data"]   # the default: hashes made before --decode stand
    assert (config.from_overrides({"dataset": "cifar10", "decode": "device"}).resolved().hash()
            == config.from_overrides({"dataset": "cifar10"}).resolved().hash())
