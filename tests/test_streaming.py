"""The streaming loader (lth.data.streaming, issue 21): DeviceLoader's batches bit for bit, exact
mid-epoch resume, seek, workers, a file that fails mid-stream named in one line, and a whole IMP
run streamed equal to the same run held in memory."""
import pytest
import torch

from lth import config
from lth.data import sources
from lth.data.loader import DeviceLoader
from lth.data.streaming import StreamDataset, StreamingLoader, make_loader
from lth.errors import LthError
from tests.folderhelpers import break_image, make_folder


@pytest.fixture
def both(tmp_path):
    """The same folder decoded into memory and streamed."""
    root = make_folder(tmp_path / "f", classes=3, per_class=12, split=True)
    overrides = {"dataset": f"imagefolder:{root}", "image_size": 8, "model": "lenet300_100", "layers": "all",
                 "device": "cpu", "workers": 1}
    memory = sources.load_config(config.from_overrides({**overrides, "loader": "memory"}))
    stream = sources.load_config(config.from_overrides({**overrides, "loader": "stream"}))
    assert isinstance(stream, StreamDataset)
    return memory, stream


def loaders(both, train=True, augment="fastai", batch=5, **kw):
    memory, stream = both
    a = make_loader(memory.train_x, memory.train_y, memory, batch, "cpu", train=train, augment=augment,
                    image_size=12, order_seed=3, augment_seed=4, **kw)
    b = make_loader(stream.train_x, stream.train_y, stream, batch, "cpu", train=train, augment=augment,
                    image_size=12, order_seed=3, augment_seed=4, **kw)
    assert type(a) is DeviceLoader and type(b) is StreamingLoader
    return a, b


def same(xs, ys):
    return len(xs) == len(ys) and all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(xs, ys))


def test_stats_come_from_the_images(both):
    memory, stream = both
    assert torch.allclose(memory.mean, stream.mean) and torch.allclose(memory.std, stream.std)


@pytest.mark.parametrize("augment", ["none", "crop_flip", "fastai"])
def test_same_batches_as_the_device_loader(both, augment):
    a, b = loaders(both, augment=augment)
    for _ in range(2):   # two epochs: the generators advance alike
        assert same(list(a), list(b))
    a, b = loaders(both, train=False, batch=7)
    assert len(b) == 4 and same(list(a), list(b))     # eval: fixed order, the last partial batch kept


def test_mid_epoch_resume_is_exact(both):
    _, b = loaders(both)
    reference = [batch for _ in range(2) for batch in b]   # two uninterrupted epochs
    _, b = loaders(both)
    it = iter(b)
    first = [next(it) for _ in range(3)]
    state = b.state_dict(position=True)
    assert int(state["consumed"]) == 3
    _, resumed = loaders(both)
    resumed.load_state_dict(state)
    rest = list(resumed) + list(resumed)
    assert same(first + rest, reference)


def test_seek_matches(both):
    a, b = loaders(both)
    a.seek(9)
    b.seek(9)
    assert same(list(a), list(b))


def test_workers_keep_the_order(both):
    _, one = loaders(both)
    _, stream = both
    two = StreamingLoader(stream.train_x, stream.train_y, stream, 5, "cpu", train=True, augment="crop_flip",
                          image_size=12, order_seed=3, augment_seed=4, workers=2)
    one.augment = "crop_flip"
    assert same(list(one), list(two))


def test_a_file_failing_mid_stream_is_named(tmp_path):
    root = make_folder(tmp_path / "f", split=True)
    cfg = config.from_overrides({"dataset": f"imagefolder:{root}", "image_size": 8, "model": "lenet300_100",
                                 "layers": "all", "device": "cpu", "loader": "stream", "workers": 1})
    stream = sources.load_config(cfg)
    stream.stats   # computed before the file breaks
    bad = break_image(root / "train" / "class2" / "img02.jpg")
    loader = make_loader(stream.train_x, stream.train_y, stream, 4, "cpu", train=False)
    with pytest.raises(LthError, match=f"image {bad} does not decode"):
        list(loader)


@pytest.mark.slow
@pytest.mark.parametrize("decode", ["cpu", "device"])   # device: lth.data.device_decode, here on the CPU
def test_imp_run_streamed_equals_in_memory(tmp_path, decode):
    """Two rounds from a folder: masks and weights bit for bit the same, memory or streamed."""
    from lth import execute
    root = make_folder(tmp_path / "f", classes=2, per_class=9, split=True)
    results = {}
    for loader in ("memory", "stream"):
        cfg = config.from_overrides({"dataset": f"imagefolder:{root}", "image_size": 8, "model": "conv2",
                                     "layers": "all", "augment": "crop_flip", "steps": 3, "batch_size": 4,
                                     "rounds": 2, "eval_every": 0, "device": "cpu", "loader": loader,
                                     "workers": 1, "channels_last": False, "decode": decode})
        results[loader] = execute(cfg, runs_root=str(tmp_path / loader), device="cpu")
    a, b = (r.run_dir for r in results.values())
    assert a.name == b.name    # the loader is a runtime choice: one run, one hash
    for name in ("round_02/mask.pt", "round_02/final.pt"):
        x, y = (torch.load(d / name, weights_only=True)["payload"] for d in (a, b))
        assert all(torch.equal(x[k], y[k]) for k in x), name
