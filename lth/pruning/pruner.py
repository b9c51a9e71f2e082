"""lth.Pruner: lth's in-round schedules, masks and selection on any model and optimizer.

Your loop stays as it is; the pruner hooks the optimizer's step:

    pruner = lth.Pruner(model, optimizer, schedule="ocp", final_sparsity=0.9, total_steps=T)
    for x, y in loader:                      # T optimizer steps
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
    pruner.masks.sparsity()                  # 0.9 after the T-th step
    pruner.save_masks("mask.pt")             # lth's mask format (lth.runs.files.save_tensors)

It follows the schedule exactly as `lth run` does (docs/DESIGN.md §2, tests/test_pruner.py
compares the per-step sparsity): the mask of step k is the MaskUpdater's update at
t = k / total_steps (every `interval` steps, within `tolerance`), and after the last step the
round ends at exactly `final_sparsity` (t = 1). The update for step 0 happens when the pruner is
made; the update for step k + 1 right after step k, so that step k + 1's forward pass already
sees it, as in lth's loop. Around every step, pruned gradients are zeroed (before the update;
a closure passed to `step`, as Lightning passes one, is wrapped so the masking comes after its
backward) and pruned weights are multiplied by zero after it. Steps after `total_steps`
fine-tune under the final mask.

IMP rounds: one pruner per round, from the previous round's mask, e.g. with
`s = lth.pruning.targets.round_targets(R, rate)` round r is
`Pruner(..., initial_sparsity=s[r-1], final_sparsity=s[r], masks=previous_mask)` after
`lth.rewind(model, init_state, previous_mask)` (lth.lottery.rewind_api).
"""
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import torch
from torch import nn

from lth.errors import LthError
from lth.pruning import schedules
from lth.pruning.criteria import CRITERIA
from lth.pruning.masks import LAYER_SETS, Masks
from lth.pruning.scope import SCOPES
from lth.pruning.targets import in_round_target
from lth.pruning.updater import MaskUpdater

STATE_FORMAT = "lth-pruner/1"  # recorded in state_dict(), checked by load_state_dict()
# The same defaults as `lth run` (lth.config.PruneConfig; lth.pruning does not import the config,
# tests/test_pruner.py checks they agree): --prune-tolerance, --prune-interval, --criterion, --scope.
DEFAULTS = {"tolerance": 1e-3, "interval": 1, "criterion": "magnitude", "scope": "local"}


class Pruner:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, schedule: str = "ocp",
                 final_sparsity: float, total_steps: int, initial_sparsity: float = 0.0,
                 schedule_params: Optional[dict] = None, layers: str = "conv", exclude: Sequence[str] = (),
                 scope: str = DEFAULTS["scope"],
                 criterion: str = DEFAULTS["criterion"], interval: int = DEFAULTS["interval"],
                 tolerance: float = DEFAULTS["tolerance"], seed: int = 0,
                 masks: Optional[Dict[str, torch.Tensor]] = None, state: Optional[dict] = None,
                 grad_hooks: bool = False):
        """final_sparsity: the fraction of the chosen layers' weights pruned after `total_steps`
        optimizer steps, from `initial_sparsity` (an IMP round: s_{r-1} -> s_r).
        schedule / schedule_params: lth.pruning.schedules (e.g. {"alpha": 14, "beta": 5} for ocp).
        layers / exclude: which weights (lth.pruning.masks.prunable_weights: all, conv,
        all_but_output; globs of names never pruned). initial_sparsity and final_sparsity may be
        lists, one per chosen layer in model order (local scope: what --layer-rate makes,
        lth.pruning.targets.layer_rates).
        scope: local (every layer to the target) or global (one threshold over all layers).
        interval / tolerance: as --prune-interval / --prune-tolerance (0: the exact per-step trajectory).
        seed: the generator of the random criterion. masks: a mask to start from (lth's format,
        e.g. the previous round's), whose sparsity should be initial_sparsity.
        state: a state_dict() to continue from (resuming), applied instead of the step-0 update,
        so no weight of the restored model is touched. grad_hooks: also mask each gradient as
        backward produces it (tensor hooks), so that gradient clipping and accumulation see the
        masked gradients (the Lightning and Hugging Face adapters turn it on)."""
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise LthError(f"Pruner needs a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise LthError(f"total_steps must be a positive int (the optimizer steps of the schedule), got {total_steps!r}")
        if scope not in SCOPES:
            raise LthError(f"unknown scope {scope!r}; choose one of {', '.join(SCOPES)}")
        if layers not in LAYER_SETS:
            raise LthError(f"unknown layer set {layers!r}; choose one of {', '.join(LAYER_SETS)}")
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise LthError(f"interval must be a positive int, got {interval!r}")
        if isinstance(exclude, str) or not all(isinstance(e, str) for e in exclude):
            raise LthError("exclude takes a list of glob strings, not one string")
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)):
            raise LthError(f"tolerance must be a number in [0, 1), got {tolerance!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise LthError(f"seed must be an int, got {seed!r}")
        if schedule_params is not None and not isinstance(schedule_params, dict):
            raise LthError(f"schedule_params must be a dict of the schedule's parameters, got {schedule_params!r}")
        if masks is not None and not (isinstance(masks, dict) and all(torch.is_tensor(m) for m in masks.values())):
            raise LthError("masks must be a mask in lth's format: a dict of weight name -> bool tensor")
        CRITERIA.get(criterion)  # a one-line error naming the criteria
        entry = schedules.SCHEDULES.get(schedule)
        unknown = set(schedule_params or {}) - set(entry.param_names())
        if unknown:
            raise LthError(f"schedule {schedule!r} has no parameter {sorted(unknown)[0]!r} "
                           f"(it takes: {', '.join(entry.param_names()) or 'none'})")
        params = vars(entry.make_params(dict(schedule_params or {})))
        self.model, self.optimizer = model, optimizer
        self.masks = Masks.for_model(model, exclude, layers)
        s_i, s_f = _targets(initial_sparsity, final_sparsity, len(self.masks.names), scope)
        self.config = {"schedule": schedule, "schedule_params": params, "initial_sparsity": s_i,
                       "final_sparsity": s_f, "total_steps": total_steps, "layers": layers,
                       "exclude": list(exclude), "scope": scope,
                       "criterion": criterion, "interval": interval, "tolerance": float(tolerance), "seed": seed}
        generator = torch.Generator().manual_seed(seed) if CRITERIA.get(criterion).traits["seeded"] else None
        self.updater = MaskUpdater(self.masks, in_round_target(schedule, params, s_i, s_f), criterion, scope,
                                   interval, generator, tolerance=tolerance)
        if masks is not None:
            self.masks.load_state_dict(masks)
        self.step = 0          # optimizer steps taken under this pruner
        self.finished = False  # the t = 1 update has been applied
        if state is not None:
            self.load_state_dict(state)
        else:
            self.masks.enforce()
            self._update_for(0)
        self._handles = [optimizer.register_step_pre_hook(self._before_step),
                         optimizer.register_step_post_hook(self._after_step)]
        if grad_hooks:  # the mask tensors keep their identity (Masks), so the hooks see every update
            self._handles += [p.register_hook(lambda grad, mask=m: grad * mask)
                              for p, m in zip(self.masks.params, self.masks.tensors)]

    # ---- the hooks ------------------------------------------------------------------------------
    def _update_for(self, step: int) -> None:
        """Bring the mask to step `step`'s target (t = step / total; t = 1 after the last step)."""
        total = self.config["total_steps"]
        if step >= total:
            self.finish()
        elif self.updater.due(step):
            self.updater.update(step / total, self.optimizer)

    def _before_step(self, optimizer, args, kwargs):
        # args[0] is the optimizer itself (torch passes the step's full positional args)
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if closure is None:
            self.masks.mask_grads()
            return None

        def masked_closure():
            with torch.enable_grad():
                loss = closure()
            self.masks.mask_grads()
            return loss
        if "closure" in kwargs:
            return args, {**kwargs, "closure": masked_closure}
        return (args[0], masked_closure, *args[2:]), kwargs

    def _after_step(self, optimizer, args, kwargs) -> None:
        self.masks.enforce()
        self.step += 1
        self._update_for(self.step)

    def mask_grads(self) -> None:
        """Zero the pruned weights' gradients now (adapters call it right after backward, so that
        gradient clipping sees the masked gradients)."""
        self.masks.mask_grads()

    def finish(self) -> None:
        """Apply the final target (t = 1) now if it is not applied yet: the end of the round.
        The hook does it after the total_steps-th step; call it when a loop stops earlier."""
        if not self.finished:
            self.updater.update(1.0, self.optimizer)
            self.finished = True

    def remove(self) -> None:
        """Detach from the optimizer (the mask stays as it is; pruned weights stay zero only
        while something keeps enforcing them)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # ---- measuring and saving -------------------------------------------------------------------
    def sparsity(self) -> float:
        """The pruned fraction of the chosen layers' weights (one host sync)."""
        return self.masks.sparsity()

    def target(self, step: Optional[int] = None) -> Union[float, list]:
        """The schedule's sparsity at `step` (default: the current step), as the updater reads it."""
        step = self.step if step is None else step
        return self.updater.target(min(1.0, step / self.config["total_steps"]))

    def save_masks(self, path) -> None:
        """The mask in lth's format (a round's mask.pt: bool tensors by weight name, checksummed,
        written atomically); load it with lth.runs.files.load_tensors."""
        from lth.runs.files import save_tensors
        save_tensors(Path(path), self.masks.state_dict())

    def state_dict(self) -> dict:
        """Everything to continue this pruner: the mask, the step, the updater's state and the
        configuration (checked on load). Plain tensors and values: torch.save it with your checkpoint."""
        return {"format": STATE_FORMAT, "config": self.config, "step": self.step, "finished": self.finished,
                "masks": self.masks.state_dict(), "updater": self.updater.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise LthError(f"not a Pruner state (expected format {STATE_FORMAT!r})")
        if state["config"] != self.config:
            differing = sorted(k for k in set(state["config"]) | set(self.config)
                               if state["config"].get(k) != self.config.get(k))
            raise LthError(f"the saved Pruner state was made with other settings (differs in {', '.join(differing)})")
        self.masks.load_state_dict(state["masks"])
        self.updater.load_state_dict(state["updater"])
        self.step, self.finished = int(state["step"]), bool(state["finished"])
        self.masks.enforce()
        self.masks.zero_optimizer_state(self.optimizer)


def _targets(initial, final, layers: int, scope: str):
    """(s_i, s_f) as floats, or as lists of one per layer; one-line errors for anything else."""
    def one(name, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise LthError(f"{name} must be a number in [0, 1) (or a list of them, one per layer), got {value!r}")
        return float(value)
    if isinstance(initial, (list, tuple)) or isinstance(final, (list, tuple)):
        if not SCOPES.get(scope).traits["per_layer"]:
            raise LthError("per-layer sparsities need scope='local' (global pruning has one threshold)")
        initial = list(initial) if isinstance(initial, (list, tuple)) else [initial] * layers
        final = list(final) if isinstance(final, (list, tuple)) else [final] * layers
        for name, values in (("initial_sparsity", initial), ("final_sparsity", final)):
            if len(values) != layers:
                raise LthError(f"{name} has {len(values)} entries for {layers} prunable layers")
        pairs = [(one("initial_sparsity", a), one("final_sparsity", b)) for a, b in zip(initial, final)]
    else:
        pairs = [(one("initial_sparsity", initial), one("final_sparsity", final))]
    for a, b in pairs:
        if a > b:
            raise LthError(f"initial_sparsity {a} is above final_sparsity {b}: masks only lose weights")
    if len(pairs) == 1 and not isinstance(final, list):
        return pairs[0]
    return [a for a, _ in pairs], [b for _, b in pairs]
