"""`python -m lth.run ... --dry-run`: what a run would train and the device-hours it would take.

    python -m lth.run --preset imagenet_resnet50 --dry-run                 # paper scale, on CUDA
    python -m lth.run --preset vit --dry-run --assume-tflops 300
    python -m lth.run --preset quick --device cpu --dry-run                # timed here on this CPU

Nothing is written and no data needs to be present: the dataset's sizes come from its files
when they are there (a folder or ImageNet is scanned, not decoded), else from its official
sizes (lth.study.estimate.OFFICIAL: ImageNet 1,281,167 / 50,000). The throughput is the one a
study's --dry-run uses (lth.study.estimate.Estimator): recorded rounds under the runs root, a
few steps timed here on a CPU, or, for CUDA, the training FLOP per image counted on the meta
device at an assumed sustained rate (--assume-tflops): an estimate, not a measurement. A text
model on a glue:/hf-text: dataset is costed per sequence of --max-length tokens: 3 x (2 x
non-embedding parameters + attention) FLOP a token (lth.study.text_cost states the formula).

Cost of the run = the dense phase of late rewinding (k steps) + rounds x (budget steps x batch
+ evaluations) / images per second. A ticket's stability (analysis.stability) trains two more
copies per measured round: about 2 rounds' cost each, printed beside.
"""
from typing import List

from lth.config import PRESET_SOURCES, RunConfig
from lth.errors import LthError


def estimate_lines(cfg: RunConfig, preset, device_kind: str, assume_tflops: float) -> List[str]:
    from lth.study.estimate import EVAL_SPEEDUP, Estimator, is_text
    if device_kind not in ("cpu", "cuda"):
        raise LthError(f"--dry-run estimates for cpu or cuda, got {device_kind!r}")
    estimator = Estimator(cfg.runtime.runs_root, device_kind, assume_tflops)
    try:
        facts = estimator.dataset(cfg)
        rate, how = estimator.rate(cfg)
    except LthError:
        raise
    except Exception as e:  # a model that cannot take the dataset's inputs (a text model on images, ...)
        raise LthError(f"--dry-run cannot estimate {cfg.model.model} on {cfg.data.dataset}: {type(e).__name__}: "
                       f"{str(e).splitlines()[0][:120] if str(e) else ''} (the estimate covers image models, and text models on glue:/hf-text: datasets)") from None
    t, p = cfg.train, cfg.prune
    per_epoch = max(1, facts.n_train // t.batch_size)
    steps = t.steps or max(1, round(t.epochs * per_epoch))
    k = int(cfg.prune.restart_params.get("rewind_step", 0) or 0)
    evals = (int((steps / per_epoch) // t.eval_every) if t.eval_every else 0) + 1
    round_s = (steps - k) * t.batch_size / rate + evals * facts.n_test / (EVAL_SPEEDUP * rate)
    dense_s = k * t.batch_size / rate
    total_s = dense_s + p.rounds * round_s
    lines = []
    if preset in PRESET_SOURCES:
        lines.append(f"preset {preset}: {PRESET_SOURCES[preset]}")
    size = cfg.data.image_size or facts.native_size
    items, shape = (("sequences", f"at most {size} tokens") if is_text(cfg) else ("images", f"{size} px"))
    lines += [f"model {cfg.model.model}, dataset {cfg.data.dataset} ({facts.n_train} train / {facts.n_test} test "
              f"{items}, {facts.num_classes} classes, {shape}; {facts.source})",
              f"{p.rounds} rounds of {steps} steps ({steps / per_epoch:g} epochs of {per_epoch} steps, batch "
              f"{t.batch_size})" + (f", rounds train steps {k}..{steps - 1} after a dense phase of {k} steps" if k else ""),
              f"throughput on {device_kind}: {rate:.0f} training {items}/s [{how}]",
              f"estimated {device_kind} device-hours (an estimate, not a measurement): {total_s / 3600:.1f} h for the "
              f"run ({round_s / 3600:.2f} h a round); ticket stability of one round (2 copies): "
              f"{2 * round_s / 3600:.1f} h more"]
    return lines
