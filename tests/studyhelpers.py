"""Helpers for the study tests (import as `studyhelpers`: pytest puts tests/ on sys.path).

    spec_file(tmp_path, TINY_STABILITY)      # a study .toml in tmp_path
    Inline()                                 # an executor that runs each task in this process
    fake_mnist(folder, n_train=256)          # MNIST's four IDX files with random images
"""
import textwrap
from pathlib import Path
from typing import List

import numpy as np

from lth.study.executors.base import Executor, Outcome
from lth.study.tasks import perform

# Two rounds of 12 steps of LeNet-300-100 on digits; every round's ticket and the random control
# at the last round, with copies of 6 steps: 10 tasks, a few seconds in all.
TINY_STABILITY = """
name = "tiny"
preset = "quick"
[base]
rounds = 2
steps = 12
batch_size = 32
[grid]
schedule = ["ocp"]
[analysis.stability]
rounds = "all"
controls = ["random"]
steps = 6
"""


def mini_table2(steps: int) -> str:
    """A Table 2 study of 4 runs: one-shot and OCP to 90 %, 2 seeds, one round of `steps` steps."""
    return f"""
name = "mini"
preset = "quick"
seeds = 2
[base]
rounds = 1
steps = {steps}
batch_size = 32
[grid]
schedule = ["one_shot", "ocp"]
final_sparsity = [0.9]
[analysis]
table = "table2"
"""


def spec_file(folder: Path, text: str, name: str = "study.toml") -> Path:
    path = Path(folder) / name
    path.write_text(textwrap.dedent(text))
    return path


class Inline(Executor):
    """Runs each submitted task in this process when polled; records the submission order."""
    name = "inline"

    def __init__(self):
        self.queue: List[tuple] = []
        self.order: List[str] = []

    def free_slots(self) -> int:
        return 1 - len(self.queue)

    def submit(self, task_id, payload, log_file) -> None:
        self.queue.append((task_id, payload, log_file))
        self.order.append(task_id)

    def poll(self, timeout) -> List[Outcome]:
        out = []
        for task_id, payload, log_file in self.queue:
            r = perform(payload, "cpu", 1, log_file)
            out.append(Outcome(task_id, r["ok"], r.get("result"), r.get("error"), r["seconds"], r["pid"], r["host"]))
        self.queue = []
        return out


def _idx(path: Path, array: np.ndarray) -> None:
    code = {1: 0x08}[array.dtype.itemsize]
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_mnist(folder: Path, n_train: int = 256, n_test: int = 64, seed: int = 0) -> None:
    """MNIST's layout (MNIST/raw/<the four IDX files>) holding random 28x28 images."""
    rng = np.random.default_rng(seed)
    raw = Path(folder) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        _idx(raw / f"{stem}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        _idx(raw / f"{stem}-labels-idx1-ubyte", rng.integers(0, 10, (n,), dtype=np.uint8))
