"""Ticket stability: train two copies of each round's ticket with different SGD noise, then
evaluate the networks on the line between them.

    python -m analysis.stability runs/digits-lenet300_100-ocp-62661386
    python -m analysis.stability runs/*-ocp-* runs/*-agp-* --rounds 1 5 14 --alphas 30
    python -m analysis.stability RUN --controls reinit random     # controls at the last round
    python -m analysis.stability RUN --steps 200 --no-figures     # cheaper copies, no figures

For each selected round r, the ticket W_rewind * m_r is trained twice with its mask fixed and
the run's own recipe and budget (or --epochs/--steps); the copies differ only in data order and
augmentation (analysis.settings: copy a's seeds come from --seed, copy b's from --seed + 1).
Their interpolation is evaluated at alpha = 0.5 and on an --alphas grid (analysis.interpolate).
Results go beside the run, under stability/round_RR/KIND/ (layout: analysis.settings; the
record: analysis.measure); then Fig. 3 and Table 4 are drawn into --out (analysis.figures).

Under torchrun (`torchrun --nproc_per_node 2 -m analysis.stability RUN`, or lth's launcher:
`python -m analysis.stability --nproc-per-node 2 RUN`) the copies train
data-parallel and the interpolation's evaluation is split over the ranks; rank 0 alone writes
(analysis.ranks; docs/distributed.md).

Running the same command again reuses every finished copy and interpolation, and continues an
unfinished copy from its last epoch. Other settings add results beside earlier ones. Two
processes on the same run share the work: each round/kind folder is locked while it is filled;
a process first does the folders nobody holds, then waits for the others and reuses their results.
"""
import argparse
import logging
import sys
from typing import Dict, List, Optional

from analysis import cli, ranks
from analysis.copies import Workspace, check_copy_budget, copy_config, make_workspace
from analysis.measure import measure
from analysis.settings import CopySettings, ProbeSettings, find_result
from analysis.tickets import CONTROLS
from lth.data import datasets, sources
from lth.lottery import assemble
from lth.config import RunConfig
from lth.errors import EXIT_INTERRUPTED, LthError, OneLineParser
from lth.knobs import number
from lth.runs.store import RunStore
from lth.training import distributed, launch
from lth.training.device import set_threads

log = logging.getLogger("analysis.stability")

KEPT = "finished copies and the last epoch checkpoint are kept"   # what a rerun after a killed rank finds


def parser() -> OneLineParser:
    p = OneLineParser(prog="python -m analysis.stability", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories made by python -m lth.run")
    p.add_argument("--rounds", nargs="+", default=["all"], metavar="ROUND",
                   help="rounds to measure: numbers, 'all' or 'last' (the last finished) [default: all]")
    p.add_argument("--controls", nargs="*", default=[], choices=CONTROLS,
                   help="also measure these controls: reinit (same mask, fresh init), random (random mask "
                        "of the same per-layer sparsity, rewind init) [default: none]")
    p.add_argument("--control-rounds", nargs="+", default=["last"], metavar="ROUND",
                   help="rounds at which the controls are measured [default: last]")
    cli.add_settings_arguments(p)
    p.add_argument("--eval-batch-size", type=number(int, "eval_batch_size", ge=1), default=cli.DEFAULTS.eval_batch_size,
                   help=f"test batch size of the interpolation [default: {cli.DEFAULTS.eval_batch_size}]")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto [default: auto]")
    p.add_argument("--threads", type=number(int, "threads", ge=0), default=1,
                   help="CPU threads of this process (torch.set_num_threads); 0: torch's default, one per core "
                        "[default: 1, as lth.run: README \"Performance\"]")
    p.add_argument("--data-dir", default=None, help="folder holding the datasets [default: the run's]")
    p.add_argument("--out", default="figures", help="folder for Fig. 3 and Table 4 [default: figures]")
    p.add_argument("--no-figures", action="store_true", help="measure only; draw nothing")
    # --nproc-per-node N (lth.training.launch.split takes it off first; listed here for --help)
    p.add_argument("--nproc-per-node", type=number(int, "nproc_per_node", ge=1), default=None, metavar="N",
                   help="measure with N data-parallel ranks on this node (torchrun's launcher; docs/distributed.md)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bars (on a terminal) or per-epoch log lines while copies train [default: on]")
    return p


def jobs_of(store: RunStore, args) -> List[tuple]:
    """(round, kind) pairs to measure in one run, in order."""
    jobs = [(r, "ticket") for r in cli.select_rounds(args.rounds, store, "--rounds")]
    if args.controls:
        jobs += [(r, kind) for r in cli.select_rounds(args.control_rounds, store, "--control-rounds")
                 for kind in args.controls]
    return jobs


def verify_inputs(store: RunStore, jobs: List[tuple], copies: CopySettings, probe: ProbeSettings, data_dir,
                  cache: dict, world: Optional[int] = None) -> None:
    """Read every file the jobs need (checksums verified) and, when something is left to
    measure, the dataset and the copies' budget: a corrupted file, a missing dataset or an
    impossible budget stops the analysis before anything is written."""
    cfg = copy_config(cli.run_config(store), copies)
    distributed.check_batch(cfg.train.batch_size, world)   # issue 22: the global batch splits over the ranks
    if cfg.train.compile and (distributed.launched() or (world or 1) > 1):
        raise LthError(f"{store.root} was trained with --compile, which torchrun does not support yet: "
                       f"run the analysis in one process")
    assemble.rewind_state(store, cfg)
    for r in sorted({r for r, _ in jobs}):
        store.load_mask(r)
        store.load_summary(r)
    if any(find_result(store, r, kind, copies, probe) is None for r, kind in jobs):
        check_copy_budget(cfg, run_data(cfg, data_dir, cache))


def run_data(cfg: RunConfig, data_dir, cache: Dict[tuple, datasets.Dataset]) -> datasets.Dataset:
    """The run's dataset, loaded once per (name, folder, split) in this process."""
    key = (cfg.data.dataset, data_dir or cfg.data.data_dir, cfg.data.split_seed, cfg.data.image_size)
    if key not in cache:   # lth.data.sources: built-in datasets, image folders, imagenet, factories (issue 21)
        cache[key] = sources.load_config(cfg, data_dir=key[1])
    return cache[key]


def measure_run(store: RunStore, jobs: List[tuple], copies: CopySettings, probe: ProbeSettings, device, data_dir,
                cache: dict, progress: bool) -> List[dict]:
    """Every job of one run: first those no other process holds, then the rest (waiting)."""
    cfg = copy_config(cli.run_config(store), copies)
    built: List[Workspace] = []

    def workspace() -> Workspace:  # built on first need: a fully measured run loads no data
        if not built:
            built.append(make_workspace(cfg, run_data(cfg, data_dir, cache), device))
        return built[0]

    results, deferred = {}, []
    for wait in (False, True):
        for r, kind in (jobs if not wait else deferred):
            with ranks.stability_lock(store, r, kind, wait=wait) as held:   # rank 0's lock (issue 22)
                if not held:
                    log.info("%s round %d %s: another process is on it; coming back later",
                             cli.run_name(store), r, kind)
                    deferred.append((r, kind))
                    continue
                results[(r, kind)] = measure(store, r, kind, copies, probe, workspace, progress)
    return [results[job] for job in jobs]


def print_table(results: List[dict]) -> None:
    """Copy accuracies (each copy's own, Table 4's numbers) beside the curve's endpoints (the same
    copies as the probe evaluated them), from which the instability and the barrier are measured."""
    width = max(len(res["run"]) for res in results)
    print(f"{'run':<{width}}  {'round':>5}  {'kind':<6}  {'sparsity':>8}  {'copy a':>7}  {'copy b':>7}  "
          f"{'bn':<11}  {'end a':>7}  {'end b':>7}  {'instab.':>7}  {'barrier':>7}")
    for res in results:
        copies, ends = res["copies"], res["endpoints"]
        print(f"{res['run']:<{width}}  {res['round']:>5}  {res['kind']:<6}  {100 * res['sparsity']:>7.2f}%  "
              f"{100 * copies['a']['test_acc']:>6.2f}%  {100 * copies['b']['test_acc']:>6.2f}%  "
              f"{res['bn_mode']:<11}  {100 * ends['a']['acc']:>6.2f}%  {100 * ends['b']['acc']:>6.2f}%  "
              f"{100 * res['instability_error']:>6.2f}%  {100 * res['error_barrier']:>6.2f}%")
    print("copy a/b: each copy's own test accuracy (Table 4); end a/b: the interpolation at alpha 1 and 0 "
          "in the bn mode shown (equal to the copies' own except with bn reset), which the instability "
          "error (alpha 0.5) and the barrier are measured with")


def plan(args, copies: CopySettings, probe: ProbeSettings, cache: dict, world: Optional[int] = None) -> tuple:
    """The runs and each run's jobs, every input read and checked: (stores, jobs per store).
    world: the number of ranks about to be launched (None: this process's)."""
    stores = cli.open_runs(args.runs)
    plans = []
    for store in stores:
        jobs = jobs_of(store, args)
        verify_inputs(store, jobs, copies, probe, args.data_dir, cache, world)
        plans.append(jobs)
    if not args.no_figures:
        cli.check_out_dir(args.out)
    return stores, plans


def main(argv=None) -> int:
    nproc, rest = launch.split(list(sys.argv[1:] if argv is None else argv))
    args = parser().parse_args(rest)
    set_threads(args.threads)
    copies, probe = cli.settings_from_args(args, args.eval_batch_size)
    if nproc is not None and not distributed.launched():   # issue 22: lth's launcher (lth.training.launch)
        plan(args, copies, probe, {}, world=nproc)   # bad input: one line here, before any rank starts
        return launch.launch(nproc, rest, "analysis.stability", KEPT)
    device = distributed.setup(args.device)  # issue 22: under torchrun, this rank's device and the process group
    try:
        return analyse(args, copies, probe, device)
    except RuntimeError as e:
        error = distributed.peer_lost_error(e, KEPT)
        if error is None:
            raise
        raise error from None


def analyse(args, copies: CopySettings, probe: ProbeSettings, device) -> int:
    """Measure every job, then print the table and draw (rank 0 under torchrun: analysis.ranks)."""
    distributed.check_same({**vars(args), "device type": device.type})   # before any rank can stop alone
    cache = {}
    # every rank checks the inputs (the same one-line error on each); rank 0's job list is everyone's
    stores, plans = distributed.agreed(lambda: plan(args, copies, probe, cache))
    plans = distributed.decided(lambda: plans)
    results = []
    try:
        for store, jobs in zip(stores, plans):
            results += measure_run(store, jobs, copies, probe, device, args.data_dir, cache, args.progress)
    except KeyboardInterrupt:
        print("interrupted: finished copies and the last epoch checkpoint of an unfinished one are kept; "
              "run the same command again to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not ranks.writes():
        return 0
    print_table(results)
    if not args.no_figures:
        from analysis import figures  # matplotlib and seaborn cost a second to import: only when drawing
        for path in figures.draw_measured(stores, copies, probe, args.out):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(distributed.cli_main_then_leave(main))  # torchrun: every rank leaves the process group
