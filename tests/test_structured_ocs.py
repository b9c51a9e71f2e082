"""OCSPruner's per-epoch logic with scripted candidates (lth.structured.ocspruner): the score
and its average, the automatic start of the regularization, lambda's growth, the trigger at
tau or at the cap, the fixed-epoch ablation, and the shrink acting only while regularizing."""
import torch

from lth.models.resnet import ResNet
from lth.pruning.channel_select import Selection
from lth.structured.config import StructuredConfig
from lth.structured.context import ChannelContext
from lth.structured.ocspruner import OcsPruner


def scripted(candidates, **settings):
    """An OcsPruner on a tiny ResNet whose candidate at epoch e is candidates[min(e, last)]
    (channel indices to prune in group 0; the other groups prune nothing)."""
    torch.manual_seed(0)
    model = ResNet((4, 8), (1, 1), num_classes=5, in_channels=3, imagenet_stem=False).eval()
    s = StructuredConfig(**settings)
    ctx = ChannelContext(model, torch.zeros(1, 3, 16, 16), 5, s)
    calls = []

    def select(target, already=None):
        pruned = [torch.tensor(candidates[min(len(calls), len(candidates) - 1)])] + \
                 [torch.zeros(0, dtype=torch.long)] * (len(ctx.groups.groups) - 1)
        calls.append(target)
        return Selection(pruned, [g.size - len(p) for g, p in zip(ctx.groups.groups, pruned)], target)

    ctx.select = select
    return OcsPruner(ctx, s, epochs=30), model


def drive(ocs, epochs):
    out = []
    for e in range(epochs):
        if ocs.prune_due(e):
            return out, e
        rec = ocs.begin_epoch(e)
        rec.update(ocs.end_epoch(e))
        out.append(rec)
    return out, None


def test_trigger_at_tau_after_the_candidate_stops_changing():
    cands = [[0, 1], [1, 2], [0, 1], [2, 3], [3]]           # from epoch 4 on: always prune channel 3
    ocs, _ = scripted(cands, monitor_start=1, sl_start="2", sl_end=25, reg=0.1, reg_delta=0.1, reg_timing="start")
    recs, pruned_at = drive(ocs, 30)
    assert recs[0]["psi"] == 0.0 and "kept" not in recs[0]  # warm-up epoch
    # the first candidate is epoch 1's. J at epoch 3: epochs 1 and 3 both prune {0, 1}: 1.0;
    # at epoch 4: epoch 2 kept {0, 3}, epoch 4 kept {0, 1}: 1/3 in group 0, 1.0 in the others
    n = len(ocs.ctx.groups.groups)
    assert recs[1]["J"] == recs[2]["J"] == 0.0 and recs[3]["J"] == 1.0
    assert abs(recs[4]["J"] - (1 / 3 + (n - 1)) / n) < 1e-9
    assert [r["lambda"] for r in recs[:5]] == [0.0, 0.0, 0.1, 0.2, 0.30000000000000004]
    assert ocs.trigger == "tau" and recs[ocs.stable_epoch]["psi"] >= 0.999
    assert all(r["psi"] < 0.999 for r in recs[:ocs.stable_epoch])
    assert pruned_at == ocs.stable_epoch + 1
    assert [int(i) for i in ocs.selection()[0]] == [3]


def test_lambda_starts_two_epochs_late_already_incremented_as_the_cifar_code():
    """The default (issue 19): main_cifar.py regularizes from epoch > sl_start + 1 with lambda
    already --reg + --reg-delta there; --reg-timing start is lth's earlier choice."""
    changing = [[0], [1], [2], [3]] * 10   # never stable: no trigger within these epochs
    ocs, _ = scripted(changing, monitor_start=0, sl_start="2", sl_end=25, reg=0.1, reg_delta=0.1)
    recs, _ = drive(ocs, 7)
    assert [r["lambda"] for r in recs] == [0.0, 0.0, 0.0, 0.0, 0.2, 0.30000000000000004, 0.4]
    ocs, _ = scripted(changing, monitor_start=0, sl_start="2", sl_end=25, reg=0.1, reg_delta=0.1,
                      reg_timing="start")
    recs, _ = drive(ocs, 5)
    assert [r["lambda"] for r in recs] == [0.0, 0.0, 0.1, 0.2, 0.30000000000000004]


def test_cap_triggers_when_the_candidate_keeps_changing():
    """The default cap fires at the first epoch > --sl-end (the CIFAR code's `epoch > sl_end`);
    --cap-rule at fires at --sl-end itself."""
    ocs, _ = scripted([[0], [1], [2], [3]] * 10, monitor_start=0, sl_start="0", sl_end=6)
    recs, pruned_at = drive(ocs, 30)
    assert ocs.trigger == "cap" and ocs.stable_epoch == 7 and pruned_at == 8
    ocs, _ = scripted([[0], [1], [2], [3]] * 10, monitor_start=0, sl_start="0", sl_end=6, cap_rule="at")
    recs, pruned_at = drive(ocs, 30)
    assert ocs.trigger == "cap" and ocs.stable_epoch == 6 and pruned_at == 7


def test_automatic_start_on_a_plateau_of_psi():
    ocs, _ = scripted([[0], [1], [0], [1], [2]], monitor_start=0, sl_start="auto", sl_end=25)
    recs, _ = drive(ocs, 30)
    psi = [r["psi"] for r in recs]
    first = next(t for t in range(4, len(psi)) if psi[t] - psi[t - 2] <= 1e-4)
    assert ocs.reg_start == first
    assert all(r["lambda"] == 0 for r in recs[:first]) and recs[first]["lambda"] == 1e-4


def test_fixed_epoch_ablation_ignores_the_score():
    ocs, _ = scripted([[0]], monitor_start=0, sl_start="0", prune_at="4")
    recs, pruned_at = drive(ocs, 30)
    assert pruned_at == 4 and ocs.trigger == "fixed" and len(recs) == 4


def test_shrink_acts_on_the_candidate_only_while_regularizing():
    ocs, model = scripted([[1]], monitor_start=0, sl_start="2", sl_end=25, reg=0.5, reg_timing="start")
    name = ocs.ctx.groups.names[0]
    weight = model.get_submodule(name).weight
    for e in range(3):
        ocs.begin_epoch(e)
        before = weight.detach().clone()
        ocs.after_step(lr=1.0)
        changed = (weight.detach() != before).flatten(1).any(1).nonzero().flatten().tolist()
        assert changed == ([] if e < 2 else [1])
