"""Plugins: installed packages that add entries to lth's registries (docs/plugins.md).

A plugin is a distribution that declares an entry point in the group `lth.plugins`:

    [project.entry-points."lth.plugins"]
    toy = "lth_toy:register"      # a callable: called once, with no arguments, to register
    # toy = "lth_toy.entries"     # or a module: importing it registers

`load()` loads every installed one once per process, in entry-point name order, after lth's own
entries: lth.config calls it before a parser reads its flags and choice lists and before a
config resolves, so a plugin's model, dataset, schedule, ... is a choice like the built-in ones.

A plugin that fails to load, or registers a name that is taken, is a one-line LthError naming
it (exit 2 from every CLI), raised again at every later call: lth never runs with half a
plugin. `LTH_NO_PLUGINS=1` skips loading (to run lth while a broken plugin is installed).

    from lth import plugins
    plugins.load()        # ['toy']: the names loaded (idempotent)
"""
import importlib.metadata
import logging
import os
import types
from typing import Iterable, List, Optional

from lth.errors import LthError
from lth.registry import registering_as

log = logging.getLogger(__name__)

GROUP = "lth.plugins"
DISABLE = "LTH_NO_PLUGINS"   # set to 1: load no plugin

_loaded: Optional[List[str]] = None     # names loaded, once load() has finished
_failure: Optional[LthError] = None     # the error of a failed load, raised again at every call
_loading = False                        # a plugin's own import may reach lth.config: no recursion


def load(entry_points: Optional[Iterable[importlib.metadata.EntryPoint]] = None) -> List[str]:
    """Load the plugins (the installed ones of GROUP, or `entry_points`) once; their names."""
    global _loaded, _failure, _loading
    if _failure is not None:
        raise _failure
    if _loaded is not None or _loading:
        return list(_loaded or [])
    if os.environ.get(DISABLE, "") not in ("", "0"):
        _loaded = []
        return []
    import lth.builtins  # noqa: F401  every built-in entry first: a clash is then the plugin's
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=GROUP)
    _loading = True
    names = []
    try:
        for ep in sorted(entry_points, key=lambda e: (e.name, e.value)):
            _load_one(ep)
            names.append(ep.name)
    except LthError as e:
        _failure = e
        raise
    finally:
        _loading = False
    _loaded = names
    if names:
        log.debug("lth plugins loaded: %s", ", ".join(names))
    return list(names)


def _load_one(ep: importlib.metadata.EntryPoint) -> None:
    who = f"plugin {ep.name!r} ({ep.value})"
    with registering_as(f"plugin {ep.name!r}"):
        try:
            target = ep.load()
        except LthError as e:  # a module plugin: lth refused an entry it registers on import
            raise LthError(f"{who}: {e}") from None
        except Exception as e:  # an import of third-party code can fail in any way
            raise LthError(f"{who} failed to load: {_one_line(e)}; fix or uninstall it, or set "
                           f"{DISABLE}=1") from None
        if isinstance(target, types.ModuleType):
            return  # importing it registered its entries
        if not callable(target):
            raise LthError(f"{who} is neither a module nor a callable (got {type(target).__name__})")
        try:
            target()
        except LthError as e:  # lth refused an entry (a name taken, a bad declaration)
            raise LthError(f"{who}: {e}") from None
        except Exception as e:
            raise LthError(f"{who} failed while registering: {_one_line(e)}") from None


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def reset() -> None:
    """Forget what load() did (tests that load other entry points in the same process)."""
    global _loaded, _failure
    _loaded, _failure = None, None
