"""The Slurm executor (issue 22): each task of a study is one Slurm job, submitted through submitit.

    python -m lth.study table2 --scale paper --executor slurm --partition gpu --gpus-per-task 1
    python -m lth.study my.toml --executor slurm --partition cpu --cpus-per-task 2 --jobs 50

A run task of a study with `gpus = G` asks for G GPUs (--gpus-per-task x G) in its job and
launches G torchrun ranks there (lth.study.ranks); copies and interpolations ask for
--gpus-per-task. Without --gpus-per-task the jobs run on CPUs. submitit (the `slurm` extra:
pip install -e ".[slurm]") pickles the task into STUDY_DIR/slurm/<job id>/ and writes its
result there; the runs root must be on a file system the nodes share, as with Ray.

Requeue and pre-emption: jobs are submitted with --requeue, so a pre-empted (or
`scontrol requeue`d) job starts again from the top, and the task resumes what the killed
attempt left from the run's epoch checkpoints (every task is resumable); near its time limit
Slurm signals the job and submitit requeues it (the task is a submitit Checkpointable).

State is read from Slurm (squeue, then scontrol for jobs that left the queue; sacct is not
needed, so clusters without accounting work): a job that ended without a result (FAILED,
NODE_FAIL, CANCELLED, OUT_OF_MEMORY, ...) is submitted again up to `max_retries` times, then
reported failed with Slurm's state. STUDY_DIR/slurm/jobs.json maps tasks to job ids, so a
driver started again adopts the jobs still queued or running instead of submitting twice, and
`python -m lth.study SPEC status` shows each unfinished task's job and its Slurm state.
"""
import json
import logging
import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

from lth.errors import LthError
from lth.runs.files import write_json
from lth.study.executors.base import Executor, Outcome
from lth.study.executors.local import wanted

log = logging.getLogger(__name__)

# Slurm job states (squeue %T / scontrol JobState): still going, or ended
LIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING",
        "SUSPENDED", "STAGE_OUT", "SIGNALING", "RESV_DEL_HOLD", "PREEMPTED"}
ENDED_WITHOUT_RESULT = {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
                        "SPECIAL_EXIT", "REVOKED"}
RESULT_GRACE_S = 30.0   # a COMPLETED job's result file may take this long to appear on a shared file system


def slurm_states(job_ids: List[str]) -> Dict[str, tuple]:
    """{job id: (state, node list)} from squeue, then scontrol for jobs that left the queue;
    jobs Slurm no longer knows are absent."""
    out: Dict[str, tuple] = {}
    if not job_ids:
        return out
    q = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i|%T|%N"], capture_output=True, text=True)
    for line in q.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[0] in job_ids:
            out[parts[0]] = (parts[1], parts[2])
    for job in (j for j in job_ids if j not in out):
        s = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True)
        fields = dict(item.split("=", 1) for item in s.stdout.split() if "=" in item)
        if fields.get("JobState"):
            out[job] = (fields["JobState"], fields.get("NodeList", ""))
    return out


def partitions() -> List[str]:
    r = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True)
    if r.returncode != 0:
        raise LthError(f"cannot reach Slurm (sinfo: {' '.join(r.stderr.split())[:200] or 'exit ' + str(r.returncode)})")
    return [p.strip().rstrip("*") for p in r.stdout.split() if p.strip()]


class SlurmTask:
    """What a job runs: one study task. submitit requeues it near the time limit (checkpoint)."""

    def __init__(self, payload: dict, threads: int, log_file: str, device: str):
        self.payload, self.threads, self.log_file, self.device = payload, threads, log_file, device

    def __call__(self) -> dict:
        from lth.study.tasks import perform
        return perform(self.payload, self.device, self.threads, self.log_file)

    def checkpoint(self, *args, **kwargs):
        import submitit
        return submitit.helpers.DelayedSubmission(self)   # the task resumes from the run's checkpoints


class SlurmExecutor(Executor):
    name = "slurm"

    def __init__(self, jobs: Optional[int] = None, partition: Optional[str] = None, gpus_per_task: Optional[int] = None,
                 cpus_per_task: int = 1, study_dir: Optional[str] = None, time_min: int = 24 * 60,
                 max_retries: int = 2, **_):
        try:
            import submitit
        except ImportError as e:
            raise LthError(f"--executor slurm needs submitit: pip install -e \".[slurm]\" (import failed: {e})") from None
        for tool in ("sbatch", "squeue", "scontrol", "sinfo", "srun"):
            if shutil.which(tool) is None:
                raise LthError(f"--executor slurm needs Slurm's {tool} on PATH: run the study on a Slurm login node")
        known = partitions()
        if partition is not None and partition not in known:
            raise LthError(f"Slurm has no partition {partition!r}; partitions here: {', '.join(known) or 'none'}")
        if gpus_per_task is not None and gpus_per_task < 1:
            raise LthError(f"--gpus-per-task must be at least 1, got {gpus_per_task}")
        if time_min < 1:
            raise LthError(f"--time-min must be at least 1, got {time_min}")
        self.submitit = submitit
        self.folder = Path(study_dir or "studies/slurm") / "slurm"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.jobs_file = self.folder / "jobs.json"
        self.partition, self.gpus, self.cpus, self.time_min = partition, gpus_per_task, cpus_per_task, time_min
        self.slots = jobs or 256  # jobs in the queue at once; Slurm decides what runs
        self.max_retries = max_retries
        import lth
        self.code_root = str(Path(lth.__file__).resolve().parent.parent)
        self.executor = submitit.SlurmExecutor(folder=str(self.folder / "%j"))
        self.in_flight: Dict[str, object] = {}       # task id -> submitit job
        self.tasks: Dict[str, tuple] = {}            # task id -> (payload, log file): to submit again
        self.attempts: Dict[str, int] = {}
        self.started: Dict[str, str] = {}            # task id -> job id whose start was reported
        self.completed_at: Dict[str, float] = {}     # task id -> when Slurm first said COMPLETED
        self.known = self._read_jobs()
        log.info("slurm executor: partition %s, %s per task, up to %d jobs queued", partition or "(default)",
                 f"{gpus_per_task} GPU(s)" if gpus_per_task else f"{cpus_per_task} CPU(s)", self.slots)

    # ---- the jobs file: task -> job id, for adoption after a driver restart and for status
    def _read_jobs(self) -> Dict[str, str]:
        try:
            return {str(k): str(v) for k, v in json.loads(self.jobs_file.read_text()).items()}
        except (OSError, ValueError):
            return {}

    def _record(self, task_id: str, job_id: str) -> None:
        self.known[task_id] = job_id
        write_json(self.jobs_file, self.known)

    def free_slots(self) -> int:
        return self.slots - len(self.in_flight)

    def _parameters(self, payload: dict, log_file: str) -> dict:
        g = wanted(payload)
        params = dict(partition=self.partition, time=self.time_min, cpus_per_task=self.cpus * (1 if self.gpus else g),
                      job_name=f"lth-{payload['kind']}", signal_delay_s=120, stderr_to_stdout=True,
                      additional_parameters={"requeue": True},
                      setup=[f"export PYTHONPATH={self.code_root}${{PYTHONPATH:+:$PYTHONPATH}}",
                             f"export OMP_NUM_THREADS={self.cpus}"])
        if self.gpus:
            params["gpus_per_task"] = self.gpus * g
        return {k: v for k, v in params.items() if v is not None}

    def submit(self, task_id: str, payload: dict, log_file: str) -> None:
        self.attempts[task_id] = self.attempts.get(task_id, 0) + 1
        self.tasks[task_id] = (payload, log_file)
        old = self.known.get(task_id)
        if old is not None and slurm_states([old]).get(old, ("", ""))[0] in LIVE:
            log.info("%s: following Slurm job %s, queued by an earlier driver", task_id, old)
            self.in_flight[task_id] = self.submitit.SlurmJob(folder=str(self.folder / "%j"), job_id=old)
            return
        self.executor.update_parameters(**self._parameters(payload, log_file))
        device = "cuda" if self.gpus else "cpu"
        job = self.executor.submit(SlurmTask(payload, self.cpus, log_file, device))
        self.in_flight[task_id] = job
        self._record(task_id, str(job.job_id))
        log.info("%s: Slurm job %s", task_id, job.job_id)

    def poll(self, timeout: float) -> List[Outcome]:
        if not self.in_flight:
            time.sleep(timeout)
            return []
        deadline = time.time() + timeout
        while True:
            out = self._check()
            if out or time.time() >= deadline:
                return out
            time.sleep(min(1.0, max(0.0, deadline - time.time())))

    def _check(self) -> List[Outcome]:
        out: List[Outcome] = []
        states = slurm_states([str(j.job_id) for j in self.in_flight.values()])
        for task_id, job in list(self.in_flight.items()):
            job_id = str(job.job_id)
            state, nodes = states.get(job_id, ("", ""))
            state = state.split()[0] if state else ""
            if job.paths.result_pickle.exists():
                out.append(self._finished(task_id, job))
            elif state == "RUNNING" and self.started.get(task_id) != job_id:
                self.started[task_id] = job_id
                out.append(Outcome(task_id, True, pid=None, host=f"{nodes} (slurm job {job_id})", started=True))
            elif state in ENDED_WITHOUT_RESULT or not state or (state == "COMPLETED" and self._grace_over(task_id)):
                out += self._lost(task_id, job_id, state or "no longer known to Slurm")
        return out

    def _grace_over(self, task_id: str) -> bool:
        first = self.completed_at.setdefault(task_id, time.time())
        return time.time() - first > RESULT_GRACE_S

    def _finished(self, task_id: str, job) -> Outcome:
        from submitit.core import utils
        del self.in_flight[task_id]
        self.attempts.pop(task_id, None)
        self.completed_at.pop(task_id, None)
        try:
            kind, value = utils.pickle_load(job.paths.result_pickle)
        except Exception as e:  # noqa: BLE001 - a truncated or foreign result file
            return Outcome(task_id, False, error=f"slurm job {job.job_id}: unreadable result ({type(e).__name__})")
        if kind != "success":  # perform() never raises: this is submitit's own failure
            first = next((line for line in str(value).splitlines()[::-1] if line.strip()), "failed")
            return Outcome(task_id, False, error=f"slurm job {job.job_id}: {first.strip()[:200]}")
        r = value
        return Outcome(task_id, r["ok"], r.get("result"), r.get("error"), r.get("seconds", 0.0), r.get("pid"),
                       r.get("host"))

    def _lost(self, task_id: str, job_id: str, state: str) -> List[Outcome]:
        """The job ended without a result: submit it again (it resumes), or give up."""
        del self.in_flight[task_id]
        self.completed_at.pop(task_id, None)
        payload, log_file = self.tasks[task_id]
        if self.attempts.get(task_id, 0) <= self.max_retries:
            log.warning("slurm job %s of %s ended %s without a result; submitting it again (attempt %d of %d)",
                        job_id, task_id, state, self.attempts[task_id] + 1, self.max_retries + 1)
            self.known.pop(task_id, None)
            self.submit(task_id, payload, log_file)
            return []
        self.attempts.pop(task_id, None)
        return [Outcome(task_id, False, error=f"slurm job {job_id} ended {state} without a result "
                                              f"({self.max_retries + 1} attempts; see {self.folder / job_id})")]

    def close(self) -> None:
        """Jobs in the queue keep going (a driver is not needed for them to finish): the next
        driver adopts them through jobs.json. Nothing to stop here."""
        if self.in_flight:
            log.info("%d Slurm job(s) keep running: %s; run the same command again to follow them "
                     "(or scancel them)", len(self.in_flight), " ".join(str(j.job_id) for j in self.in_flight.values()))


def status_lines(study_dir: Path, unfinished: List[str]) -> List[str]:
    """`status` of a study run through Slurm: each unfinished task's job and Slurm's state of it."""
    try:
        known = json.loads((Path(study_dir) / "slurm" / "jobs.json").read_text())
    except (OSError, ValueError):
        return []
    jobs = {t: str(j) for t, j in known.items() if t in unfinished}
    if not jobs or shutil.which("squeue") is None:
        return [f"slurm: {len(jobs)} unfinished task(s) had jobs; Slurm's tools are not on PATH here"] if jobs else []
    states = slurm_states(sorted(set(jobs.values())))
    return [f"slurm: {t}: job {j} {states.get(j, ('no longer known to Slurm', ''))[0]}"
            + (f" on {states[j][1]}" if j in states and states[j][1] else "") for t, j in sorted(jobs.items())]
