"""The index of run directories.

    python -m lth.runs [list] [ROOT]     # one row per run under ROOT (default: runs)

Each row describes the run's last finished round: its sparsity, the test accuracy at its end
(`final acc`) and the best test accuracy over the evaluations made at that sparsity
(`best@final`: earlier epochs of the round, at lower sparsity, do not count). Rounds saved by
lth versions before issue 10 lack the latter and show nan.
"""
import sys
from pathlib import Path

from lth.errors import LthError, OneLineParser, cli_main
from lth.runs.store import RunStore


def rows(root: Path):
    for path in sorted(Path(root).iterdir()):
        store = RunStore(path)
        if not path.is_dir() or not store.is_run():
            continue
        try:
            cfg = store.config()["config"]
            done = store.finished_rounds()
            summaries = [store.load_summary(r) for r in done]
        except LthError as e:
            yield {"name": path.name, "error": str(e)}
            continue
        yield {"name": path.name, "dataset": cfg["data"]["dataset"], "model": cfg["model"]["model"],
               "schedule": cfg["prune"]["schedule"], "rounds": f"{len(done)}/{cfg['prune']['rounds']}",
               "sparsity": summaries[-1]["sparsity"] if summaries else 0.0,
               "final_acc": summaries[-1]["test_acc"] if summaries else float("nan"),
               "best_at_final": summaries[-1].get("best_acc_at_final_sparsity", float("nan")) if summaries
               else float("nan")}


def parser() -> OneLineParser:
    p = OneLineParser(prog="python -m lth.runs", description="List lth run directories.")
    p.add_argument("command", nargs="?", default="list", choices=["list"])
    p.add_argument("root", nargs="?", default="runs", help="folder holding run directories")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if not Path(args.root).is_dir():
        raise LthError(f"{args.root} is not a directory")
    table = list(rows(Path(args.root)))
    if not table:
        print(f"no runs under {args.root}")
        return 0
    width = max(len(r["name"]) for r in table)
    print(f"{'run':<{width}}  {'schedule':<9} {'rounds':>7} {'sparsity':>8} {'final acc':>9} {'best@final':>10}")
    for r in table:
        if "error" in r:
            print(f"{r['name']:<{width}}  unreadable: {r['error']}")
        else:
            print(f"{r['name']:<{width}}  {r['schedule']:<9} {r['rounds']:>7} {r['sparsity']:>8.4f} "
                  f"{r['final_acc']:>9.4f} {r['best_at_final']:>10.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
