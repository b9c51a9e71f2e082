"""`lth`: one command for every job, generated from the runner registry.

    lth run --preset quick --schedule ocp          # IMP with an in-round schedule (python -m lth.run)
    lth stability runs/<name> --rounds last        # ticket stability (python -m analysis.stability)
    lth study table2 --scale cpu                   # a whole study (python -m lth.study)
    lth --help                                     # every command, one line each
    lth COMMAND --help                             # a command's flags

Each command is an entry of `RUNNERS` naming the `module:function` that runs it: the module is
imported only when its command runs, so `lth --help` stays instant and a command's optional
dependencies load only with it. `python -m lth.run` and the other module entry points keep
working as aliases. This is the top of the import graph (it dispatches into analysis too, by
name); nothing imports it. A plugin (lth.plugins) may register more runners.
"""
import importlib
import sys
from dataclasses import dataclass
from typing import List, Optional

from lth import __version__, plugins
from lth.errors import EXIT_USAGE, LthError
from lth.registry import Registry

RUNNERS = Registry("command")


@dataclass(frozen=True)
class Runner:
    target: str   # "module:function", the function taking argv (a list of strings) and returning an exit code
    alias: str    # the `python -m` form that does the same

    def load(self):
        module, _, function = self.target.partition(":")
        return getattr(importlib.import_module(module), function)


def add_runner(name: str, target: str, alias: str, help: str) -> None:
    RUNNERS.register(name, help=help)(Runner(target, alias))


# name, module:function, the python -m alias, what it does
BUILTIN_RUNNERS = (
    ('run', 'lth.run:main', 'python -m lth.run',
     'IMP rounds with an in-round pruning schedule (the main job)'),
    ('stability', 'analysis.stability:main', 'python -m analysis.stability',
     'ticket stability: two copies per round, interpolated; Fig. 3 and Table 4'),
    ('study', 'lth.study.cli:main', 'python -m lth.study',
     'a grid of runs and analyses as one command'),
    ('structured', 'lth.structured.cli:main', 'python -m lth.structured',
     'structured (channel) pruning in one cycle: OCSPruner and the schedules; export'),
    ('bimp', 'lth.lottery.bimp:main', 'python -m lth.bimp',
     'budgeted IMP and pruning-while-training baselines at one budget'),
    ('figures', 'analysis.figures:main', 'python -m analysis.figures',
     "the paper's figures from finished runs"),
    ('tables', 'lth.study.tables:main', 'python -m analysis.tables',
     "the paper's Tables 1-3 from studies, beside its numbers"),
    ('mask-overlap', 'analysis.mask_overlap:main', 'python -m analysis.mask_overlap',
     'where a ticket settles: kept-weight Jaccard between rounds and runs, as a figure'),
    ('retrain', 'analysis.retrain:main', 'python -m analysis.retrain',
     'the retraining-schedule and BIMP table and figure'),
    ('structured-report', 'analysis.structured:main', 'python -m analysis.structured',
     "the structured runs' table and figure"),
    ('bench', 'lth.bench.cli:main', 'python -m lth.bench',
     'benchmarks that print figures'),
    ('runs', 'lth.runs.index:main', 'python -m lth.runs',
     'list the run directories under a root'),
)
for _row in BUILTIN_RUNNERS:
    add_runner(*_row)


def usage() -> str:
    width = max(len(n) for n in RUNNERS.names())
    rows = [f"  {n:<{width}}  {RUNNERS.get(n).help}" for n in RUNNERS.names()]
    return "\n".join([f"usage: lth COMMAND [flags]   (lth {__version__})", "",
                      "Lottery-ticket research: IMP with in-round pruning schedules, ticket stability, studies.", "",
                      "commands:", *rows, "", "lth COMMAND --help lists a command's flags."])


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    plugins.load()   # a plugin may add commands (RUNNERS) as well as entries
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else EXIT_USAGE
    if argv[0] == "--version":
        print(f"lth {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name.startswith("-"):
        raise LthError(f"{name}: give a command first (lth COMMAND [flags]); lth --help lists them")
    runner = RUNNERS.get(name).fn
    return runner.load()(rest) or 0


def console() -> None:
    """The `lth` console script (setup.cfg's entry point); under torchrun (`torchrun $(which lth)
    run ...`) it leaves the process group as `python -m lth.run` does."""
    from lth.training import distributed
    sys.exit(distributed.cli_main_then_leave(main))


if __name__ == "__main__":
    console()
