"""A user's `MODULE:FUNCTION`, imported with one-line errors (models and datasets by factory)."""
import importlib
from types import ModuleType
from typing import Callable, Tuple

from lth.errors import LthError


def import_callable(name: str, what: str, not_a_module: str) -> Tuple[ModuleType, Callable]:
    """(module, function) of `name` = "MODULE:FUNCTION". what: "model factory", "dataset
    factory"; not_a_module: the error when MODULE itself cannot be found (what else it could be)."""
    module_name, function = name.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise LthError(not_a_module) from None
        raise LthError(f"{what} module {module_name} failed to import: {e}") from None
    except Exception as e:  # the user's module raised while importing
        raise LthError(f"{what} module {module_name} failed to import: {type(e).__name__}: {e}") from None
    fn = getattr(module, function, None)
    if not callable(fn):
        raise LthError(f"{what} {name}: {module_name} has no function {function!r}")
    return module, fn
