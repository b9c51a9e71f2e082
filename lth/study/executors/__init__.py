"""Executors: where a study's tasks run, behind one interface (lth.study.executors.base).

    local   worker processes on this machine: one per GPU, or --jobs N on a CPU (the default)
    ray     Ray tasks on a Ray cluster (--address auto) or a local one the command starts
    slurm   one Slurm job per task through submitit (--partition, --gpus-per-task; issue 22)

`EXECUTORS` maps the --executor names to their factories; Ray is imported only when chosen.
"""
from lth.study.executors.base import Executor, Outcome  # noqa: F401


def _local(**options):
    from lth.study.executors.local import LocalExecutor
    return LocalExecutor(**options)


def _ray(**options):
    from lth.study.executors.ray_cluster import RayExecutor
    return RayExecutor(**options)


def _slurm(**options):
    from lth.study.executors.slurm import SlurmExecutor
    return SlurmExecutor(**options)


EXECUTORS = {"local": _local, "ray": _ray, "slurm": _slurm}
