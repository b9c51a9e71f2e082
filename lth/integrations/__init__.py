"""Adapters of lth.Pruner for other trainers, each an optional extra imported only when used:

    lth.integrations.lightning     LthPruning, a lightning.pytorch Callback      (pip install 'lth[lightning]')
    lth.integrations.huggingface   LthPruningCallback, a transformers TrainerCallback   (pip install 'lth[hf]')

Both are thin: they make an lth.Pruner on the trainer's model and optimizer when training
starts (the budget defaults to the trainer's own count of optimizer steps) and keep its state
in the trainer's checkpoints. docs/your-own-loop.md shows them in use.
"""
import importlib

from lth.errors import LthError


def require(module: str, extra: str):
    """Import `module` or raise one line naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise LthError(f"lth.integrations needs {module}: pip install 'lth[{extra}]'") from None
