"""Late rewinding as Frankle et al. 2020 and OpenLTH do it (issue 10 item 6): W_k from dense
training, every round and every ticket copy training steps k..T-1, the loader's position at k.

Tiny: digits (offline), LeNet-300-100, 30 steps a round (22 batches an epoch, so the rounds
cross an epoch boundary after the rewind step 15), crop-and-flip augmentation on."""
import itertools
import signal
import textwrap

import pytest
import torch

from analysis import tickets
from analysis.copies import make_workspace, train_copy
from lth import config, run
from lth.data import datasets
from lth.lottery import rewinding
from lth.lottery import imp
from lth.lottery import assemble
from lth.training import loop as train_module
from lth.data.loader import DeviceLoader
from lth.errors import LthError
from lth.lottery.execution import run_metadata
from lth.pruning import MaskUpdater
from lth.runs.store import RunStore, run_name
from lth.training.callbacks import StepProbe
from lth.training.loop import lr_at, total_steps

import runhelpers
from runhelpers import assert_same_run, start, tensors_equal

T, K = 30, 15
BASE = ["--preset", "quick", "--steps", str(T), "--rounds", "3", "--augment", "crop_flip", "--no-progress",
        "--device", "cpu"]


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits")


def make_cfg(*argv):
    return runhelpers.resolved_config(*BASE, *argv)


class Recorder:
    """Wraps the one loop's train_step: records (who, lr, batch); the dense phase is the run's
    only training without masks."""

    def __init__(self, monkeypatch):
        self.calls = []
        monkeypatch.setattr(train_module, "train_step", self.wrap(train_module.train_step))

    def wrap(self, real):
        def step(forward, optimizer, masks, x, y, lr, *rest, **options):
            self.calls.append(("dense" if masks is None else "round", lr, x.clone()))
            return real(forward, optimizer, masks, x, y, lr, *rest, **options)
        return step


@pytest.fixture(scope="module")
def late_run(tmp_path_factory, digits):
    """A 3-round late-rewinding run, with every optimizer step and mask update recorded."""
    cfg = make_cfg("--rewind-step", str(K))
    with pytest.MonkeyPatch.context() as mp:
        recorder = Recorder(mp)
        progress = []
        real_update = MaskUpdater.update
        mp.setattr(MaskUpdater, "update", lambda self, t, optimizer=None: (progress.append(t),
                                                                             real_update(self, t, optimizer))[1])
        store = RunStore(tmp_path_factory.mktemp("late") / run_name(cfg))
        store.create(run_metadata(cfg, torch.device("cpu")))
        with store.lock():
            imp.run(cfg, store, digits, "cpu", progress=False)
    return cfg, store, recorder.calls, progress


def dense_reference(cfg, dataset, steps):
    """An independent dense run: lth.training.loop with no pruning (all-ones mask) over the whole
    budget; the state after `steps` steps and every step's (lr, batch)."""
    model = assemble.build_model(cfg, dataset, cfg.seeds.init_seed, "cpu")
    masks = assemble.make_masks(cfg, model)
    seen, calls = {}, []
    real = train_module.train_step

    def recording(forward, optimizer, m, x, y, lr, *rest, **options):
        calls.append((lr, x.clone()))
        return real(forward, optimizer, m, x, y, lr, *rest, **options)

    def after_step(step, model, masks):
        if step == steps:
            seen["state"] = {n: v.detach().clone() for n, v in model.state_dict().items()}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "train_step", recording)
        train_module.fit(assemble.loop(cfg, dataset, "cpu", model, masks), callbacks=[StepProbe(after_step)],
                         progress=False)
    return seen["state"], calls


# ---- the loader's position --------------------------------------------------------------------

def loader(dataset, augment="crop_flip", order_seed=3, augment_seed=4):
    return DeviceLoader(dataset.train_x, dataset.train_y, dataset, 64, "cpu", train=True, augment=augment,
                        image_size=8, order_seed=order_seed, augment_seed=augment_seed)


def batches(it, n):
    out = []
    while len(out) < n:
        for x, y in it:
            out.append((x.clone(), y.clone()))
            if len(out) == n:
                break
    return out


@pytest.mark.parametrize("augment", ["crop_flip", "fastai"])
@pytest.mark.parametrize("k", [1, 15, 22, 37, 44])   # inside epoch 0, at its end, inside epoch 1, ...
def test_a_restored_position_continues_with_exactly_the_remaining_batches(digits, k, augment):
    straight = batches(loader(digits, augment), k + 30)
    first = loader(digits, augment)
    taken = 0
    while taken < k:  # k batches, as lth.lottery.rewinding draws them: the (k+1)-th never drawn
        taken += len(list(itertools.islice(first, k - taken)))
    state = first.state_dict(position=True)
    assert ("consumed" in state) == (k % len(first) != 0)
    restored = loader(digits, augment, order_seed=99, augment_seed=98)   # its own seeds are overwritten
    restored.load_state_dict(state)
    after = batches(restored, 30)
    for (x, y), (x0, y0) in zip(after, straight[k:]):
        assert torch.equal(x, x0) and torch.equal(y, y0)


def test_seek_puts_a_fresh_loader_k_batches_into_its_own_order(digits):
    straight = batches(loader(digits, augment="none"), 60)
    for k in (5, 22, 30):
        sought = loader(digits, augment="none")
        sought.seek(k)
        for (x, y), (x0, y0) in zip(batches(sought, 20), straight[k:]):
            assert torch.equal(x, x0) and torch.equal(y, y0)


def test_an_epoch_end_state_is_the_plain_one(digits):
    """Epoch checkpoints (saved at epoch ends) keep their old two keys."""
    ld = loader(digits)
    batches(ld, len(ld))
    assert sorted(ld.state_dict(position=True)) == ["augment", "order"]
    assert sorted(ld.state_dict()) == ["augment", "order"]


# ---- W_k, and the rounds that start from it ---------------------------------------------------

def test_wk_is_the_dense_network_after_k_steps(late_run, digits):
    cfg, store, _, _ = late_run
    point = store.load_rewind()
    assert point["step"] == K and point["format"] == rewinding.REWIND_FORMAT
    reference, _ = dense_reference(cfg, digits, K)
    assert tensors_equal(point["model"], reference)
    assert not tensors_equal(point["model"], store.load_init())
    for name in store.load_mask(1):
        assert bool((point["model"][name] != 0).all()), f"W_k has zeros in {name}"


def test_every_round_trains_steps_k_to_t_from_wk(late_run, digits):
    cfg, store, calls, _ = late_run
    total = total_steps(cfg.train, len(digits.train_y))
    assert total == T
    dense = [c for c in calls if c[0] == "dense"]
    rounds = [c for c in calls if c[0] == "round"]
    assert len(dense) == K and len(rounds) == 3 * (T - K)
    expected_lrs = [lr_at(s, T, cfg.train) for s in range(K, T)]
    _, reference = dense_reference(cfg, digits, K)
    assert [lr for _, lr, _ in dense] == [lr for lr, _ in reference[:K]]
    for r in range(3):
        window = rounds[r * (T - K):(r + 1) * (T - K)]
        assert [lr for _, lr, _ in window] == expected_lrs   # starts at LR(k/T), no warm-up again
        # the batches (order and augmentation) the dense run would have seen at steps k..T-1
        assert all(torch.equal(x, x0) for (_, _, x), (_, x0) in zip(window, reference[K:]))
    for r in (1, 2, 3):
        summary, metrics = store.load_summary(r), store.load_metrics(r)
        assert summary["start_step"] == K and summary["steps"] == T and metrics[-1]["step"] == T


def test_the_schedule_spans_the_window_and_ends_at_the_exact_target(late_run, digits):
    cfg, store, _, progress = late_run
    per_round = len(progress) // 3
    assert per_round == T - K + 1   # before each of steps k..T-1, and t = 1 after the last
    for r in range(3):
        ts = progress[r * per_round:(r + 1) * per_round]
        assert ts == [s / (T - K) for s in range(T - K)] + [1.0]
    masks = assemble.make_masks(cfg, assemble.build_model(cfg, digits, 0, "cpu"))
    targets = imp.sparsity_targets(cfg, masks)   # per layer: the preset prunes the output layer at half rate
    for r in (1, 2, 3):
        mask, target = store.load_mask(r), targets[r]
        per_layer = target if isinstance(target, list) else [target] * len(masks.names)
        for name, s in zip(masks.names, per_layer):
            assert abs(int((~mask[name]).sum()) - s * mask[name].numel()) <= 1, (r, name)
        assert store.load_summary(r)["target_sparsity"] == target


def test_rounds_start_from_wk_times_the_previous_mask(tmp_path, digits):
    cfg = make_cfg("--rewind-step", str(K), "--rounds", "2")
    starts = {}
    store = RunStore(tmp_path / "run")
    store.create(run_metadata(cfg, torch.device("cpu")))
    with store.lock():
        imp.run(cfg, store, digits, "cpu", progress=False,
                on_round_start=lambda r, model, masks: starts.update(
                    {r: {k: v.detach().clone() for k, v in model.state_dict().items()}}))
    wk = store.load_rewind()["model"]
    assert tensors_equal(starts[1], wk)   # round 1 too starts from W_k, not W0
    previous = store.load_mask(1)
    assert tensors_equal(starts[2], {n: v * previous[n] if n in previous else v for n, v in wk.items()})


def test_rewind_steps_that_leave_nothing_to_train_are_refused(tmp_path, digits):
    for k in (T, T + 1):
        with pytest.raises(LthError, match=f"--rewind-step {k} is beyond the round's budget of {T} steps"):
            imp.run(make_cfg("--rewind-step", str(k)), RunStore(tmp_path / "run"), digits, "cpu", progress=False)
        assert not (tmp_path / "run").exists()


def test_an_old_in_round_rewind_file_is_refused(tmp_path, digits):
    cfg = make_cfg("--rewind-step", str(K))
    store = RunStore(tmp_path / "run")
    store.create(run_metadata(cfg, torch.device("cpu")))
    store.save_rewind(assemble.build_model(cfg, digits, 0, "cpu").state_dict())  # the old format: a state dict
    with pytest.raises(LthError, match="captured inside round 1"):
        assemble.rewind_state(store, cfg)


# ---- the analysis: copies and controls --------------------------------------------------------

def test_the_random_control_keeps_no_zeros_and_copies_train_from_k(late_run, digits, tmp_path, monkeypatch):
    cfg, store, _, _ = late_run
    wk = store.load_rewind()["model"]
    for kind in ("ticket", "random"):
        point = tickets.starting_point(store, cfg, digits, 3, kind, 0)
        for name, m in point.mask.items():
            assert bool((point.state[name][m] != 0).all()), f"{kind}: zeros among the kept weights of {name}"
            assert torch.equal(point.state[name], wk[name] * m)
    recorder = Recorder(monkeypatch)
    ws = make_workspace(cfg, digits, torch.device("cpu"))
    point = tickets.starting_point(store, cfg, digits, 3, "reinit", 0)
    payload = train_copy(ws, point, {"order_seed": 1000, "augment_seed": 1001}, tmp_path / "a.pt",
                         tmp_path / "a.ckpt", False, "copy a")
    assert [lr for _, lr, _ in recorder.calls] == [lr_at(s, T, cfg.train) for s in range(K, T)]
    assert payload["outcome"]["steps"] == T
    # its own order seed, positioned at step k of that order
    own = DeviceLoader(digits.train_x, digits.train_y, digits, cfg.train.batch_size, "cpu", train=True,
                       augment=cfg.data.augment, image_size=8, order_seed=1000, augment_seed=1001)
    own.seek(K)
    assert torch.equal(recorder.calls[0][2], next(iter(own))[0])


def test_copies_budget_at_or_below_k_is_refused(late_run, digits):
    cfg, _, _, _ = late_run
    short = config.RunConfig.from_dict(cfg.to_dict())
    short.train.steps = K
    with pytest.raises(LthError, match=f"--rewind-step {K} is beyond the copies' budget of {K} steps"):
        make_workspace(short, digits, torch.device("cpu"))


# ---- kill during the dense phase --------------------------------------------------------------

# SIGKILL from inside the process at the n-th optimizer step of the dense phase
KILL_AT_DENSE_STEP = textwrap.dedent("""
    import os, runpy, signal, sys
    import lth.training.loop
    at = int(sys.argv[1])
    del sys.argv[1:2]
    real, count = lth.training.loop.train_step, [0]

    def step(*args, **options):
        count[0] += args[2] is None   # the dense phase trains without masks
        if count[0] == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **options)

    lth.training.loop.train_step = step
    sys.argv[0] = "lth.run"
    runpy.run_module("lth.run", run_name="__main__", alter_sys=True)
""")


@pytest.mark.slow
def test_killed_during_the_dense_phase_then_resumed_gives_the_same_run(tmp_path):
    argv = ["--preset", "quick", "--steps", str(T), "--rounds", "2", "--augment", "crop_flip", "--no-progress",
            "--rewind-step", str(K), "--runs-root", "runs"]
    (tmp_path / "ref").mkdir()
    assert run.main([*argv[:-1], str(tmp_path / "ref" / "runs")]) == 0
    reference = runhelpers.only_run_dir(tmp_path / "ref" / "runs")
    proc = start([str(K // 2), *argv], cwd=tmp_path, code=KILL_AT_DENSE_STEP)
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    killed = runhelpers.only_run_dir(tmp_path / "runs")
    assert (killed / "init.pt").exists() and not (killed / "rewind.pt").exists()
    runhelpers.record_fault("SIGKILL in the dense phase of late rewinding", "resumed identically")
    assert run.main([*argv[:-1], str(tmp_path / "runs")]) == 0   # the same command again
    assert_same_run(reference, killed)
