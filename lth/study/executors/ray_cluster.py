"""The Ray executor: each run, copy and interpolation is a Ray task asking for its CPUs and GPUs.

    python -m lth.study table2 --executor ray                   # a local Ray cluster, started here
    python -m lth.study table2 --executor ray --address auto    # the cluster this node belongs to

Ray is an optional extra (`pip install -e ".[ray]"`), imported only here. The runs root must be
a folder every node sees under the same path (a shared filesystem): tasks read and write run
directories there, and the driver reads them to know what is done. The driver, not file locks,
decides who runs what (flock is not reliable on network filesystems): it submits each task
once, only after its dependencies. A task whose worker or node is lost is retried by Ray
(`max_retries`), on any node, and resumes from the checkpoints the lost attempt left. Workers
import lth from the same folder as the driver (PYTHONPATH set in the task's runtime env).

Resources: on a cluster with GPUs a task asks for 1 GPU and --cpus-per-task CPUs (default 1);
without GPUs, --cpus-per-task CPUs, and runs torch with that many threads. A run task of a
study with `gpus = G` (issue 22) asks for G GPUs (G x --cpus-per-task CPUs without GPUs) on one
node and launches G torchrun ranks there (lth.study.ranks); Ray's CUDA_VISIBLE_DEVICES names them.
"""
import logging
import os
import time
from pathlib import Path
from typing import Dict, List, Optional

from lth.errors import LthError
from lth.study.executors.base import Executor, Outcome
from lth.study.executors.local import wanted

log = logging.getLogger(__name__)


def _perform_on_ray(payload: dict, threads: int, log_file: str) -> dict:
    """The body of every Ray task (Ray sets CUDA_VISIBLE_DEVICES to the GPU it granted)."""
    import ray
    from lth.study.tasks import perform
    device = "cuda" if ray.get_gpu_ids() else "cpu"
    return perform(payload, device, threads, log_file)


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, jobs: Optional[int] = None, address: Optional[str] = None, cpus_per_task: int = 1,
                 max_retries: int = 3, **_):
        try:
            import ray
        except ImportError as e:
            raise LthError(f"--executor ray needs Ray: pip install -e \".[ray]\" (import failed: {e})") from None
        self.ray = ray
        import lth
        code_root = str(Path(lth.__file__).resolve().parent.parent)
        env = {"PYTHONPATH": os.pathsep.join(p for p in (code_root, os.environ.get("PYTHONPATH")) if p),
               "OMP_NUM_THREADS": str(cpus_per_task)}
        kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                      runtime_env={"env_vars": env})
        if address is None:
            kwargs["num_cpus"] = jobs or 1
        try:
            ray.init(address=address, **kwargs)
        except Exception as e:  # noqa: BLE001 - Ray raises many types for "no cluster there"
            raise LthError(f"cannot start or reach a Ray cluster (address {address or 'local'}): "
                           f"{' '.join(str(e).split())[:200]}") from None
        resources = ray.cluster_resources()
        self.gpus = 1 if resources.get("GPU", 0) >= 1 else 0
        self.cpus = cpus_per_task
        slots_by_cpu = int(resources.get("CPU", 1) // cpus_per_task)
        self.slots = max(1, min(slots_by_cpu, int(resources["GPU"])) if self.gpus else slots_by_cpu)
        if jobs is not None and address is not None:
            self.slots = min(self.slots, jobs)
        self.remote_fn, self.max_retries = ray.remote(_perform_on_ray), max_retries
        self.remote = self._options(1)
        self.in_flight: Dict[object, str] = {}
        self.held: Dict[str, int] = {}   # task id -> slots it holds (a G-GPU run: G)
        log.info("ray executor: %d task slot(s) of %d CPU%s on %s", self.slots, cpus_per_task,
                 " + 1 GPU" if self.gpus else "", address or "a local cluster")

    def _options(self, g: int):
        """The remote function asking for g slots: g GPUs (g x --cpus-per-task CPUs without GPUs)."""
        return self.remote_fn.options(num_cpus=self.cpus * (1 if self.gpus else g), num_gpus=g * self.gpus,
                                      max_retries=self.max_retries, retry_exceptions=False)

    def free_slots(self) -> int:
        return self.slots - sum(self.held.values())

    def fits(self, payload: dict) -> bool:
        return wanted(payload) <= self.free_slots()

    def check(self, payloads) -> None:
        for payload in payloads:
            if wanted(payload) > self.slots:
                raise LthError(f"{payload['id']} asks for {wanted(payload)} {'GPUs' if self.gpus else 'CPU slots'} "
                               f"per task but the Ray cluster offers {self.slots}; lower gpus in the study spec")

    def submit(self, task_id: str, payload: dict, log_file: str) -> None:
        g = wanted(payload)
        remote = self.remote if g == 1 else self._options(g)
        ref = remote.remote(payload, self.cpus, log_file)
        self.in_flight[ref] = task_id
        self.held[task_id] = g

    def poll(self, timeout: float) -> List[Outcome]:
        if not self.in_flight:
            time.sleep(timeout)
            return []
        refs = list(self.in_flight)
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        out = []
        for ref in ready:
            task_id = self.in_flight.pop(ref)
            self.held.pop(task_id, None)
            try:
                r = self.ray.get(ref)
            except Exception as e:  # noqa: BLE001 - lost after all retries, cancelled, object lost
                first = " ".join(str(e).split())[:200]
                out.append(Outcome(task_id, False, error=f"ray: {type(e).__name__}: {first}"))
                continue
            out.append(Outcome(task_id, r["ok"], r.get("result"), r.get("error"), r.get("seconds", 0.0),
                               r.get("pid"), r.get("host")))
        return out

    def close(self) -> None:
        for ref in list(self.in_flight):
            try:
                self.ray.cancel(ref, force=True)  # it resumes from its checkpoints next time
            except Exception:  # noqa: BLE001 - already finished or gone: nothing to cancel
                pass
        self.in_flight.clear()
        self.held.clear()
        self.ray.shutdown()
