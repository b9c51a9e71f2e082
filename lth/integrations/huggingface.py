"""lth.Pruner as a Hugging Face Trainer callback (extra: hf).

    from lth.integrations.huggingface import LthPruningCallback
    trainer = transformers.Trainer(model, args, train_dataset=...,
                                   callbacks=[LthPruningCallback(schedule="ocp", final_sparsity=0.9)])
    trainer.train()

The pruner is made in on_train_begin on the model and the Trainer's optimizer (the torch
optimizer inside accelerate's wrapper), with total_steps = the Trainer's max_steps unless given.
Gradients are masked as backward produces them (grad_hooks), before the Trainer clips them.
Each saved checkpoint gets the pruner's state as checkpoint-N/lth_pruner.pt (weights-only);
`trainer.train(resume_from_checkpoint=...)` picks it up from the checkpoint of the restored
global step. `layers` defaults to "all_but_output" here (transformers have no convolutions;
lth run's default "conv" would find nothing); any lth.Pruner keyword passes through.
"""
from pathlib import Path
from typing import Optional

from lth.integrations import require

transformers = require("transformers", "hf")

from lth.errors import LthError  # noqa: E402
from lth.pruning.pruner import Pruner  # noqa: E402
from lth.runs.files import load_tensors, save_tensors  # noqa: E402

STATE_FILE = "lth_pruner.pt"


def torch_optimizer(optimizer):
    """The torch optimizer inside accelerate's AcceleratedOptimizer (whose step calls it)."""
    while hasattr(optimizer, "optimizer") and optimizer.optimizer is not optimizer:
        optimizer = optimizer.optimizer
    return optimizer


class LthPruningCallback(transformers.TrainerCallback):
    def __init__(self, *, final_sparsity, schedule: str = "ocp", total_steps: Optional[int] = None,
                 layers: str = "all_but_output", **pruner_kwargs):
        self.kwargs = dict(final_sparsity=final_sparsity, schedule=schedule, layers=layers, **pruner_kwargs)
        self.total_steps = total_steps
        self.pruner: Optional[Pruner] = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if model is None or optimizer is None:
            raise LthError("LthPruningCallback needs the Trainer's model and optimizer (transformers passes both)")
        total = self.total_steps if self.total_steps is not None else state.max_steps
        saved = None
        if state.global_step > 0:  # resuming: the checkpoint of the restored step holds the pruner's state
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}" / STATE_FILE
            if not path.exists():
                raise LthError(f"resuming at step {state.global_step} but {path} is missing: the checkpoint was "
                               "not saved with LthPruningCallback")
            saved = load_tensors(path)
        self.pruner = Pruner(model, torch_optimizer(optimizer), total_steps=int(total), grad_hooks=True,
                             state=saved, **self.kwargs)

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.pruner is not None and folder.is_dir():
            save_tensors(folder / STATE_FILE, self.pruner.state_dict())

    def on_train_end(self, args, state, control, **kwargs):
        # Not finish(): see lth.integrations.lightning (call callback.pruner.finish() after an early stop)
        if self.pruner is not None:
            self.pruner.remove()
