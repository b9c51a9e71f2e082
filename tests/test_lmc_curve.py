"""lth.lmc.interpolate: alpha 0 and 1 reproduce the checkpoints, the curve, instability error
and barrier equal what the stability analysis (analysis.interpolate) computes for the same two
checkpoints, in both BatchNorm modes; bad input is one line.

    python -m pytest tests/test_lmc_curve.py -q
"""
import itertools

import pytest
import torch
import torch.nn.functional as F

from analysis import interpolate as analysis_interpolate
from analysis.settings import ProbeSettings
from lth import lmc, models
from lth.data import datasets
from lth.data.loader import DeviceLoader
from lth.errors import LthError
from lth.runs.files import save_tensors
from lth.training.loop import evaluate as lth_evaluate


@pytest.fixture(scope="module")
def setup():
    """Two resnet20 checkpoints (BatchNorm) trained a few steps apart on digits, and the loaders."""
    ds = datasets.load("digits")
    test = DeviceLoader(ds.test_x, ds.test_y, ds, 512, "cpu", train=False, image_size=8)
    bn = DeviceLoader(ds.train_x, ds.train_y, ds, 32, "cpu", train=False, image_size=8)
    states = []
    for seed in (0, 1):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = models.build("resnet20", 10, 1, 8)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for x, y in itertools.islice(bn, 4 + seed):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    return ds, test, bn, states


def probe_model():
    return models.build("resnet20", 10, 1, 8)


@pytest.mark.parametrize("mode", ["interpolate", "reset"])
def test_agrees_with_the_stability_analysis(setup, mode):
    _, test, bn, (a, b) = setup
    alphas = ProbeSettings(alphas=5).grid()
    model = probe_model()
    theirs = analysis_interpolate.curve(model, model, a, b, alphas, mode, test, bn, 2, False)
    expected = lmc.summarise(theirs)   # the one definition; the curves above are the independent check
    ours = lmc.interpolate(a, b, 5, lambda m: lth_evaluate(m, m, test, bf16=False), model=probe_model(), bn=mode,
                           bn_batches=bn, bn_limit=2)
    assert ours["bn_mode"] == mode
    assert ours["curve"] == theirs                     # alpha, acc, error, loss at every point
    assert ours["instability_error"] == expected["instability_error"]
    assert ours["error_barrier"] == expected["error_barrier"]
    assert ours["endpoints"] == expected["endpoints"]
    assert ours["instability_error"] == next(p["error"] for p in ours["curve"] if p["alpha"] == 0.5)
    errors = [p["error"] for p in ours["curve"]]
    assert ours["error_barrier"] == pytest.approx(max(errors) - (errors[0] + errors[-1]) / 2)


def test_alpha_one_and_zero_are_the_checkpoints(setup, tmp_path):
    _, test, _, (a, b) = setup
    seen = {}

    def evaluate(model):
        seen[len(seen)] = {k: v.clone() for k, v in model.state_dict().items()}
        return lth_evaluate(model, model, test, bf16=False)

    torch.save(a, tmp_path / "a.pt")                      # a plain torch checkpoint ...
    save_tensors(tmp_path / "b.pt", {"model": b})          # ... and lth's format with a "model" entry
    model = probe_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = lmc.interpolate(tmp_path / "a.pt", str(tmp_path / "b.pt"), [0.25], evaluate, model=model)
    assert [p["alpha"] for p in result["curve"]] == [0.0, 0.25, 0.5, 1.0]   # 0, 0.5 and 1 always
    for index, state in ((0, b), (3, a)):
        assert all(torch.equal(seen[index][k], v) for k, v in state.items() if v.is_floating_point())
    for alpha, state in ((1.0, a), (0.0, b)):
        own = probe_model()
        own.load_state_dict(state)
        alone = lth_evaluate(own, own, test, bf16=False)["test_acc"]
        assert next(p["acc"] for p in result["curve"] if p["alpha"] == alpha) == alone
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())   # the probe is restored


def test_a_model_without_batchnorm_records_none_and_takes_a_float_metric():
    torch.manual_seed(0)
    a, b = [models.build("lenet300_100", 10, 1, 8).state_dict() for _ in range(2)]
    result = lmc.interpolate(a, b, 3, lambda m: 0.5, model=models.build("lenet300_100", 10, 1, 8), bn="reset")
    assert result["bn_mode"] == "none" and result["instability_error"] == 0.5 and result["error_barrier"] == 0.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(bn="recompute"), "unknown BatchNorm mode"),
    (dict(bn="reset"), "pass bn_batches"),
    (dict(bn="reset", bn_batches=iter([])), "re-iterable"),
    (dict(alphas=1), "int >= 2"),
    (dict(alphas=[0.2, 1.5]), r"lie in \[0, 1\]"),
    (dict(alphas="abc"), "alphas must be a count or a list"),
    (dict(evaluate=lambda m: 3.0), "accuracy in"),
    (dict(evaluate=lambda m: {"loss": 1.0}), "accuracy in"),
    (dict(evaluate=None), "evaluate must be a callable"),
    (dict(state_a={"nope": torch.ones(1)}), "checkpoint a does not fit the model"),
    (dict(state_b="/nonexistent/b.pt"), "does not exist"),
    (dict(state_b={"x": 1}), "not a state dict of tensors"),
    (dict(model="resnet20"), "model must be an nn.Module"),
])
def test_bad_input_is_one_line(setup, kwargs, message, tmp_path):
    _, _, _, (a, b) = setup
    args = {"state_a": a, "state_b": b, "alphas": 3, "evaluate": lambda m: 0.9, "model": probe_model(), **kwargs}
    with pytest.raises(LthError, match=message) as e:
        lmc.interpolate(args.pop("state_a"), args.pop("state_b"), args.pop("alphas"), args.pop("evaluate"), **args)
    assert "\n" not in str(e.value)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(LthError, match="not a weights-only torch file"):
        lmc.interpolate(a, tmp_path / "junk.pt", 3, lambda m: 0.9, model=probe_model())
