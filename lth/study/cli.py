"""`python -m lth.study SPEC [status]`: run a study, show its status, or estimate its cost.

    python -m lth.study table2 --scale cpu --jobs 2          # run every cell, then Table 2
    python -m lth.study table2 --scale paper --dry-run       # cells, done/pending, device-hours
    python -m lth.study table2 --scale cpu status            # done/running/failed/pending per cell
    python -m lth.study my_study.toml --executor ray --address auto   # on a Ray cluster

Exit code 0 when every task is done, 1 when some failed or were blocked (rerun to retry them),
2 for bad input (nothing written), 130 on Ctrl-C (rerun to continue).
"""
import logging
import signal
import sys
from pathlib import Path

from lth.errors import EXIT_INTERRUPTED, LthError, OneLineParser, cli_main
from lth.knobs import number
from lth.study import analyses, analysis_spec, cells as cells_mod, plan as plan_mod, report, spec as spec_mod
from lth.study.state import StudyState

log = logging.getLogger("lth.study")


def parser() -> OneLineParser:
    p = OneLineParser(prog="python -m lth.study", description=__doc__.split("\n\n")[0])
    p.add_argument("spec", metavar="SPEC", help=f"a built-in study ({', '.join(spec_mod.builtin_names())}) "
                                                "or a study .toml file")
    p.add_argument("command", nargs="?", default="run", choices=("run", "status"),
                   help="run the study (default) or print its status")
    p.add_argument("--scale", default=None, help="the study's scale, e.g. cpu or paper [default: the study's own]")
    p.add_argument("--dry-run", action="store_true", help="list the cells, what is done, and estimated device-hours")
    p.add_argument("--executor", default="local", choices=("local", "ray", "slurm"),
                   help="where tasks run [default: local]")
    p.add_argument("--jobs", type=number(int, "jobs", ge=1), default=None,
                   help="local: worker processes (default: one per GPU, else 1); ray: CPUs of the local cluster; "
                        "slurm: jobs queued at once (default 256)")
    p.add_argument("--address", default=None, help="ray: the cluster to join ('auto': this node's) [default: start one]")
    p.add_argument("--cpus-per-task", type=number(int, "cpus_per_task", ge=1), default=1,
                   help="ray, slurm: CPUs (and torch threads) per task [default: 1]")
    # issue 22: the Slurm executor (lth.study.executors.slurm)
    p.add_argument("--partition", default=None, help="slurm: the partition jobs go to [default: Slurm's default]")
    p.add_argument("--gpus-per-task", type=number(int, "gpus_per_task", ge=1), default=None,
                   help="slurm: GPUs per task (a run with gpus = G asks for G times this) [default: none, CPU jobs]")
    p.add_argument("--time-min", type=number(int, "time_min", ge=1), default=24 * 60,
                   help="slurm: each job's time limit in minutes; near it the job is requeued and resumes "
                        "[default: 1440]")
    p.add_argument("--runs-root", default="runs", help="where run directories live (shared by studies) [default: runs]")
    p.add_argument("--study-dir", default=None, help="state, logs, tables [default: studies/<name>-<scale>]")
    p.add_argument("--data-dir", default=None, help="the datasets' folder for every cell [default: the study's]")
    p.add_argument("--device", default="auto", help="local: cpu, cuda, cuda:N or auto [default: auto]")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar or per-task lines")
    p.add_argument("--assume-tflops", type=number(float, "assume_tflops", gt=0), default=100.0,
                   help="--dry-run on cuda without a measured figure: assumed sustained TFLOP/s [default: 100; > 0]")
    p.add_argument("--estimate-for", default=None, choices=("cpu", "cuda"),
                   help="--dry-run: the device kind to estimate for [default: cuda at --scale paper or with "
                        "CUDA here, else cpu]")
    return p


def load(args):
    spec = spec_mod.load(args.spec, args.scale)
    analysis = analysis_spec.parse(spec.analysis, spec.where)
    runtime = {"data_dir": args.data_dir} if args.data_dir else {}
    cells = cells_mod.expand(spec, runtime)
    plan = plan_mod.build(cells, Path(args.runs_root), analysis.stability, args.data_dir, spec.gpus)
    study_dir = Path(args.study_dir or Path("studies") / spec.folder_name)
    return spec, analysis, plan, study_dir


def check_existing(plan) -> None:
    """Refuse, before anything runs, a run directory that holds another config than its cell's."""
    from lth.config import differing_fields
    from lth.runs.store import RunStore
    for cell in plan.cells:
        store = RunStore(cell.run_dir(plan.runs_root))
        if store.is_run():
            saved = store.run_config().resolved().experiment_dict()
            mine = cell.cfg.experiment_dict()
            if saved != mine:
                fields = differing_fields(saved, mine)
                raise LthError(f"{store.root} holds a run with another config than cell {cell.label_text()} "
                               f"(differs in {', '.join(fields[:6])}); move it away or use another --runs-root")


def dry_run(args, spec, plan) -> None:
    from lth.study.estimate import Estimator
    import torch
    kind = args.estimate_for or ("cuda" if spec.scale == "paper" or torch.cuda.is_available() else "cpu")
    est = Estimator(plan.runs_root, kind, args.assume_tflops)
    hours, todo, total = {}, 0.0, 0.0
    for task in plan.tasks.values():
        seconds = est.seconds(plan, task)
        name = plan.cells_by_dir[task.run_dir].name
        total += seconds
        if not plan.is_done(task):
            todo += seconds
            hours[name] = hours.get(name, 0.0) + seconds / 3600
        else:
            hours.setdefault(name, 0.0)
    unique = len(plan.cells)
    points = unique + sum(len(c.also) for c in plan.cells)
    print(f"study {spec.name} at scale {spec.scale}: {points} cells, {unique} unique runs, under {plan.runs_root}")
    for line in report.cell_lines(plan, None, hours):
        print(line)
    print(f"tasks: {report.totals_line(report.totals(plan, None))}")
    print(f"estimated {kind} device-hours (an estimate, not a measurement): {todo / 3600:.2f} h to do, "
          f"{total / 3600:.2f} h for the whole study")
    print(f"throughput used (training images/s on {kind}):")
    for (model, dataset, size, batch, _), (rate, source) in est.rates.items():
        print(f"  {model} on {dataset} at {size or 'native'} px, batch {batch}: {rate:,.0f} img/s  [{source}]")
    for facts in {f.source for f in est.facts.values()}:
        print(f"  data: {facts}")


def run(args, spec, analysis, plan, study_dir) -> int:
    from lth.study import driver
    from lth.study.executors import EXECUTORS
    check_existing(plan)
    state = StudyState.load(study_dir)
    if state.driver_alive() and state.driver.get("pid") is not None:
        raise LthError(f"{study_dir} has a live driver (pid {state.driver['pid']} on {state.driver['host']}); "
                       f"wait for it or stop it")
    executor = EXECUTORS[args.executor](jobs=args.jobs, device=args.device, address=args.address,
                                        cpus_per_task=args.cpus_per_task, partition=args.partition,
                                        gpus_per_task=args.gpus_per_task, time_min=args.time_min,
                                        study_dir=str(study_dir))
    try:
        executor.check([t.payload for t in plan.tasks.values() if not plan.is_done(t)])  # issue 22: G fits
    except LthError:
        executor.close()
        raise
    study_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _terminated)  # a scheduler's stop (or kill) ends like Ctrl-C
    try:
        result = driver.drive(plan, executor, state, study_dir, progress=args.progress)
    except KeyboardInterrupt:
        print("interrupted: finished runs and copies are kept, unfinished ones continue from their last epoch; "
              "run the same command again to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        executor.close()
    problems = run_analyses(spec, analysis, plan, study_dir)
    print(f"study {spec.name} ({spec.scale}): {len(result.done)} tasks done now, {len(result.skipped)} were done "
          f"before, {len(result.failed)} failed, {len(result.blocked)} blocked; details: python -m lth.study "
          f"{args.spec}{' --scale ' + spec.scale if args.scale else ''} status")
    for tid, error in result.failed.items():
        print(f"failed: {tid}: {error}")
    return 1 if result.failed or result.blocked or problems else 0


def _terminated(signum, frame):
    raise KeyboardInterrupt


def run_analyses(spec, analysis, plan, study_dir) -> int:
    """Tables and figures from what is finished; returns the number of analyses that failed."""
    problems = 0
    if analysis.table:
        try:
            for path in analyses.write_tables(spec, plan.runs_root, study_dir):
                print(f"wrote {path}")
        except LthError as e:
            log.error("table %s: %s", analysis.table, e)
            problems += 1
    if analysis.stability:
        measured = [c.run_dir(plan.runs_root) for c in plan.cells
                    if any(t.kind == "interp" and t.run_dir == str(c.run_dir(plan.runs_root)) and plan.is_done(t)
                           for t in plan.tasks.values())]
        if measured:
            try:
                for path in analyses.draw_stability(measured, analysis.stability, study_dir / "figures"):
                    print(f"wrote {path}")
            except LthError as e:
                log.error("stability figures: %s", e)
                problems += 1
    return problems


def main(argv=None) -> int:
    args = parser().parse_intermixed_args(argv)  # `SPEC --scale cpu status` as well as `SPEC status --scale cpu`
    if args.jobs is not None and args.jobs < 1:
        raise LthError(f"--jobs must be at least 1, got {args.jobs}")
    if args.cpus_per_task < 1:
        raise LthError(f"--cpus-per-task must be at least 1, got {args.cpus_per_task}")
    spec, analysis, plan, study_dir = load(args)
    if args.command == "status":
        report.print_status(plan, StudyState.load(study_dir), spec, study_dir)
        from lth.study.executors.slurm import status_lines  # issue 22: Slurm's state of the tasks' jobs
        for line in status_lines(study_dir, [t for t, task in plan.tasks.items() if not plan.is_done(task)]):
            print(line)
        return 0
    if args.dry_run:
        dry_run(args, spec, plan)
        return 0
    return run(args, spec, analysis, plan, study_dir)


if __name__ == "__main__":
    sys.exit(cli_main(main))
