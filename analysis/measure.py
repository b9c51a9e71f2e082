"""One stability measurement: the result of (run, round, kind) for given settings.

Reused when saved. Otherwise: build the starting point (analysis.tickets), obtain the two copies
(loaded when finished, else trained or continued: analysis.copies), evaluate the line between
them (analysis.interpolate), and save the record, with everything that decided it:

    run, round, kind, schedule, dataset, model, sparsity   what was measured
    settings, bn_mode, bn_images, budget, start            how (seeds in `copies`, provenance in `start`)
    copies.a / copies.b     each copy's own test accuracy and loss after training ("copy
                            accuracy": its trained weights and BatchNorm statistics), its seeds
    ticket_acc              the mean of the two copy accuracies: the re-trained ticket (Table 4)
    curve                   accuracy, error and loss at each alpha, in the BatchNorm mode used
    endpoints               the curve at alpha 1 (copy a) and 0 (copy b): equal to the copy
                            accuracies in interpolate mode, not in reset mode (recomputed stats)
    instability_error       error at alpha 0.5 (Fig. 3)
    error_barrier           max error on the grid minus the mean of the curve's endpoint errors
    device, world_size      where it ran (world_size: data-parallel ranks, issue 22; not a setting)
    timing                  seconds taken; the only fields that differ between identical runs
"""
import logging
import time
from typing import Callable

from analysis import cli, ranks
from analysis.copies import Workspace, budget, load_copy, train_copy
from analysis.interpolate import curve
from lth.lmc.curve import summarise
from lth.lmc.probe import has_batchnorm
from analysis.settings import (COPIES, CopySettings, ProbeSettings, copy_checkpoint_path, copy_path, find_result,
                               result_path)
from analysis.tickets import StartingPoint, starting_point
from lth.lottery import assemble
from lth.data.streaming import make_loader
from lth.runs.store import RunStore
from lth.runs.files import read_json, write_json
from lth.training import distributed

log = logging.getLogger("analysis.stability")

RESULT_FORMAT = "lth-stability/1"   # recorded in every result, for readers of older files


def measure(store: RunStore, r: int, kind: str, copies: CopySettings, probe: ProbeSettings,
            workspace: Callable[[], Workspace], progress: bool) -> dict:
    """The result of (round r, kind): reused when saved, else measured and saved. The caller
    holds the folder's lock; `workspace()` gives the run's model and data (built on first need)."""
    saved = distributed.decided(lambda: saved_result(store, r, kind, copies, probe))   # rank 0 reads (analysis.ranks)
    if saved is not None:
        log.info("%s round %d %s: already measured (%s), reused", cli.run_name(store), r, kind, saved[0])
        return saved[1]
    ws = workspace()
    start = starting_point(store, ws.cfg, ws.dataset, r, kind, copies.seed)
    trained = {copy: obtain_copy(store, ws, r, kind, start, copies, copy, progress) for copy in COPIES}
    result = interpolation_result(store, ws, r, kind, start, trained, copies, probe)
    if ranks.writes():
        write_json(result_path(store, r, kind, copies, probe, result["has_batchnorm"]), result)
    log.info("%s round %d %s: instability error %.4f, error barrier %.4f (bn %s)", cli.run_name(store), r, kind,
             result["instability_error"], result["error_barrier"], result["bn_mode"])
    return result


def saved_result(store: RunStore, r: int, kind: str, copies: CopySettings, probe: ProbeSettings):
    """(file name, record) of the saved result of (round r, kind) with these settings, or None."""
    path = find_result(store, r, kind, copies, probe)
    return None if path is None else (path.name, read_json(path))


def obtain_copy(store: RunStore, ws: Workspace, r: int, kind: str, start: StartingPoint, copies: CopySettings,
                copy: str, progress: bool) -> dict:
    """A finished copy, loaded; else trained (or continued from its checkpoint) and saved."""
    path, desc = copy_path(store, r, kind, copies, copy), f"{cli.run_name(store)} round {r} {kind} copy {copy}"
    checkpoint = copy_checkpoint_path(store, r, kind, copies, copy)
    if distributed.decided(path.exists):   # rank 0 looks; every rank loads it (analysis.ranks)
        log.info("%s: already trained, reused", desc)
        if ranks.writes():
            checkpoint.unlink(missing_ok=True)  # left behind by a kill between saving the copy and removing it
        return load_copy(path, start)
    seeds = copies.copy_seeds(copy)
    steps = budget(ws)
    log.info("%s: training steps %d..%d (order seed %d, augment seed %d)", desc, steps["start_step"],
             steps["steps"] - 1, seeds["order_seed"], seeds["augment_seed"])
    payload = train_copy(ws, start, seeds, path, checkpoint, progress, desc)
    log.info("%s: test acc %.4f", desc, payload["outcome"]["test_acc"])
    return payload


def interpolation_result(store: RunStore, ws: Workspace, r: int, kind: str, start: StartingPoint, trained: dict,
                         copies: CopySettings, probe: ProbeSettings) -> dict:
    """Evaluate the interpolation between the two trained copies and assemble the record."""
    began = time.perf_counter()
    with_bn = has_batchnorm(ws.model)
    mode = probe.mode(with_bn)
    if not with_bn:
        log.info("%s has no BatchNorm: --bn %s changes nothing (recorded as bn_mode none)",
                 ws.cfg.model.model, probe.bn)
    size, channels_last = assemble.image_size(ws.cfg, ws.dataset), ws.cfg.train.channels_last
    # make_loader: a DeviceLoader, or the streaming loader for images on disk (issue 21)
    test_loader = make_loader(ws.dataset.test_x, ws.dataset.test_y, ws.dataset, probe.eval_batch_size, ws.device,
                              train=False, image_size=size, channels_last=channels_last)
    # BatchNorm statistics come from the first training images, unaugmented, in a fixed order.
    bn_loader = make_loader(ws.dataset.train_x, ws.dataset.train_y, ws.dataset, ws.cfg.train.batch_size,
                            ws.device, train=False, image_size=size, channels_last=channels_last)
    points = curve(ws.model, ws.forward, trained["a"]["model"], trained["b"]["model"], probe.grid(), mode,
                   test_loader, bn_loader, probe.bn_batches, ws.cfg.train.bf16)
    cfg = ws.cfg
    return {
        "format": RESULT_FORMAT, "run": cli.run_name(store), "run_hash": store.config().get("hash"),
        "dataset": cfg.data.dataset, "model": cfg.model.model, "schedule": cfg.prune.schedule,
        "round": r, "kind": kind, "sparsity": start.sparsity, "round_sparsity": store.load_summary(r)["sparsity"],
        "start": start.provenance, "has_batchnorm": with_bn, "bn_mode": mode,
        "bn_images": min(probe.bn_batches * cfg.train.batch_size, len(ws.dataset.train_y)) if mode == "reset" else None,
        "settings": {**copies.to_dict(), **probe.to_dict(with_bn)}, "budget": budget(ws),
        "copies": {c: {**trained[c]["outcome"], **trained[c]["seeds"]} for c in COPIES},
        "ticket_acc": sum(trained[c]["outcome"]["test_acc"] for c in COPIES) / len(COPIES),
        **summarise(points), "curve": points, "device": str(ws.device),
        "world_size": distributed.world_size(),   # data-parallel ranks (not a setting: docs/distributed.md)
        "timing": {**{f"copy_{c}_s": trained[c]["timing"]["wall_time_s"] for c in COPIES},
                   "interpolation_s": time.perf_counter() - began, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
    }
