"""OCSPruner's stability score on known sets: Jaccard, the per-group mean two epochs apart, the
3-epoch running mean, the plateau rule of the automatic start, and the lambda schedule."""
import pytest
import torch

from lth.structured.stability import StabilityTracker, jaccard, net_similarity, reg_lambda


def t(*xs):
    return torch.tensor(xs, dtype=torch.long)


@pytest.mark.parametrize("a,b,j", [([0, 1, 2], [1, 2, 3], 2 / 4), ([0, 1], [0, 1], 1.0), ([0], [1], 0.0),
                                   ([], [], 1.0), ([0, 1, 2, 3], [0, 1], 0.5)])
def test_jaccard(a, b, j):
    assert jaccard(a, b) == pytest.approx(j)
    assert jaccard(b, a) == pytest.approx(j)


def test_net_similarity_is_the_mean_over_groups():
    assert net_similarity([[0, 1, 2], [0, 1]], [[1, 2, 3], [0, 1]]) == pytest.approx((0.5 + 1.0) / 2)
    with pytest.raises(ValueError):
        net_similarity([[0]], [[0], [1]])


def test_score_compares_candidates_two_epochs_apart_and_psi_averages_three():
    tr = StabilityTracker(gap=2, window=3)
    seq = [[t(0, 1, 2), t(0)],          # epoch 0
           [t(0, 1, 3), t(0)],          # epoch 1
           [t(1, 2, 3), t(1)],          # epoch 2: vs epoch 0: (2/4 + 0/2) / 2 = 0.25
           [t(1, 2, 3), t(1)],          # epoch 3: vs epoch 1: (2/4 + 0) / 2 = 0.25
           [t(1, 2, 3), t(1)],          # epoch 4: vs epoch 2: 1.0
           [t(1, 2, 3), t(1)]]          # epoch 5: vs epoch 3: 1.0
    raw_expect = [0.0, 0.0, 0.25, 0.25, 1.0, 1.0]
    psi_expect = [0.0, 0.0, 0.25 / 3, 0.5 / 3, 1.5 / 3, 2.25 / 3]
    for kept, r, p in zip(seq, raw_expect, psi_expect):
        tr.push(kept)
        assert tr.update() == pytest.approx(p)
        assert tr.raw[-1] == pytest.approx(r)
    assert len(tr.history) == 3                   # only what the gap needs is kept


def test_unmonitored_epochs_count_zero():
    tr = StabilityTracker()
    assert tr.update(monitored=False) == 0.0 and tr.raw == [0.0]
    for _ in range(3):
        tr.push([t(0, 1)])
    assert tr.update() == pytest.approx(0.5)       # mean of 0 (unmonitored) and 1


def test_psi_reaches_one_only_after_five_identical_candidates():
    tr = StabilityTracker(gap=2, window=3)
    psis = []
    for _ in range(5):
        tr.push([t(0, 1)])
        psis.append(tr.update())
    assert psis[:4] == [0.0, 0.0, pytest.approx(1 / 3), pytest.approx(2 / 3)] and psis[4] == 1.0


def test_tracker_state_round_trip():
    tr = StabilityTracker()
    for k in ([t(0, 1)], [t(1, 2)], [t(0, 2)]):
        tr.push(k)
        tr.update()
    other = StabilityTracker(gap=5, window=9)
    other.load_state_dict(tr.state_dict())
    assert other.state_dict() == tr.state_dict()
    other.push([t(0, 2)])
    tr.push([t(0, 2)])
    assert other.update() == tr.update()


def test_plateau_rule_of_the_automatic_start():
    tr = StabilityTracker()
    tr.psi = [0.1, 0.3, 0.5, 0.6, 0.60005]
    assert not tr.plateaued(1e-4)                 # t = 4: 0.60005 - 0.5 > 1e-4
    tr.psi.append(0.60009)
    assert tr.plateaued(1e-4)                     # t = 5: 0.60009 - 0.6 <= 1e-4
    tr.psi = [0.5, 0.5, 0.5, 0.5]
    assert not tr.plateaued(1e-4)                 # t = 3 is not > 3


def test_lambda_grows_from_reg_by_delta_every_interval():
    assert reg_lambda(4, None, 1e-4, 1e-4, 1) == 0.0            # no start yet (auto)
    assert reg_lambda(29, 30, 1e-4, 1e-4, 1) == 0.0
    assert reg_lambda(30, 30, 1e-4, 1e-4, 1) == pytest.approx(1e-4)
    assert reg_lambda(40, 30, 1e-4, 1e-4, 1) == pytest.approx(1.1e-3)
    assert reg_lambda(33, 30, 1e-4, 1e-4, 2) == pytest.approx(2e-4)   # ImageNet: every 2 epochs
