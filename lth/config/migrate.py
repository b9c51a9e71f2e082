"""Older config.json formats read as today's: format 1 (flat --method, --alpha, ...), format 2
(before the pruning tolerance). Pure functions of dicts: RunConfig.from_dict applies them."""
import json

def migrate_v1(d: dict) -> dict:
    """A format-1 config (flat optimizer, LR-schedule and pruning knobs) as format 2, so runs
    made before the registries still open for analysis and `lth runs list`. Format 1 had no
    momentum cycling and pruned every layer: the migrated config says so explicitly."""
    d = json.loads(json.dumps(d))
    t, p = d.get("train", {}), d.get("prune", {})
    if t:
        momentum, beta2, eps = t.pop("momentum", None), t.pop("beta2", None), t.pop("eps", None)
        if t.get("optimizer") == "adamw":
            t["optimizer_params"] = _present(beta1=momentum, beta2=beta2, eps=eps)
        elif t.get("optimizer") == "sgd":
            t["optimizer_params"] = _present(momentum=momentum)
        warmup, div, div_final = t.pop("warmup", None), t.pop("div", None), t.pop("div_final", None)
        milestones, gamma = t.pop("milestones", None), t.pop("gamma", None)
        schedule = t.get("lr_schedule")
        t["lr_schedule_params"] = (_present(warmup=warmup, div=div, div_final=div_final, moms=[]) if schedule == "one_cycle" else
                                   _present(warmup=warmup, milestones=milestones, gamma=gamma) if schedule == "step" else
                                   _present(warmup=warmup) if schedule == "constant" else {})
    if p:
        alpha, beta, start = p.pop("alpha", None), p.pop("beta", None), p.pop("start", None)
        end, steps = p.pop("end", None), p.pop("prune_steps", None)
        schedule = p.get("schedule")
        p["schedule_params"] = (_present(alpha=alpha, beta=beta) if schedule == "ocp" else
                                _present(start=start, end=end, prune_steps=steps) if schedule == "iterative" else
                                _present(start=start, end=end) if schedule == "agp" else
                                _present(start=start) if schedule == "one_shot" else {})
        method = p.pop("method", "local")
        p["criterion"] = "random" if method == "random" else "magnitude"
        p["scope"] = "global" if method == "global" else "local"
        p["layers"] = "all"      # format 1 pruned every conv and linear layer
        p["restart"] = "rewind"
        p["restart_params"] = _present(rewind_step=p.pop("rewind_step", None))
    return d


def migrate_v2(d: dict) -> dict:
    """A format-1 or -2 config as format 3: those runs updated the mask whenever a target count
    rose, which is prune_tolerance 0."""
    d = dict(d)
    if isinstance(d.get("prune"), dict):  # a config.json always has it; a file without one takes the defaults
        d["prune"] = {"prune_tolerance": 0.0, **d["prune"]}
    return d


def _present(**values) -> dict:
    return {k: v for k, v in values.items() if v is not None}
