"""Packing multi-device tasks onto a node's devices (issue 22): which GPUs (or CPU job slots)
a task that asks for G of them gets.

    packer = Packer(4)                  # a node with 4 GPUs (or --jobs 4 on a CPU)
    packer.fits(2)                      # True
    packer.take("run:a", 2)             # [0, 1]
    packer.take("run:b", 1)             # [2]
    packer.fits(2)                      # False: one left; the driver submits something smaller
    packer.release("run:a")             # 0 and 1 are free again

First fit in the driver's order (runs first, then analyses), lowest-numbered devices first, so a
task's devices are contiguous whenever they can be (NVLink pairs on most 8-GPU nodes). A task
asking for more devices than the node has can never run: `check` refuses it before anything starts.
"""
from typing import Dict, List

from lth.errors import LthError


class Packer:
    def __init__(self, count: int):
        if count < 1:
            raise LthError(f"a node needs at least one device to run tasks on, got {count}")
        self.count = count
        self.free: List[int] = list(range(count))
        self.held: Dict[str, List[int]] = {}

    def check(self, wanted: int, what: str) -> None:
        if wanted > self.count:
            raise LthError(f"{what} asks for {wanted} devices per task but this node has {self.count}; "
                           f"lower gpus in the study spec or run it where {wanted} fit")

    def fits(self, wanted: int) -> bool:
        return wanted <= len(self.free)

    def take(self, task_id: str, wanted: int) -> List[int]:
        if task_id in self.held:
            raise LthError(f"task {task_id} already holds devices {self.held[task_id]}")
        if not self.fits(wanted):
            raise LthError(f"task {task_id} needs {wanted} devices; {len(self.free)} are free")
        got = self._contiguous(wanted) or self.free[:wanted]
        self.free = [d for d in self.free if d not in got]
        self.held[task_id] = got
        return got

    def _contiguous(self, wanted: int) -> List[int]:
        """The lowest run of `wanted` consecutive free devices, or [] when there is none."""
        free = set(self.free)
        for start in sorted(free):
            run = list(range(start, start + wanted))
            if free.issuperset(run):
                return run
        return []

    def release(self, task_id: str) -> List[int]:
        got = self.held.pop(task_id, [])
        self.free = sorted(self.free + got)
        return got
