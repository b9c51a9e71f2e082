"""Mask overlap figure: where a ticket settles, round by round (issue 23).

    python -m analysis.mask_overlap runs/digits-lenet300_100-ocp-*                 # one run
    python -m analysis.mask_overlap RUN_A RUN_B RUN_C --out figures                # + across runs

Left panel: the Jaccard index of the kept weights of round r's mask and round r-1's
(lth.pruning.overlap; round 0 = all kept), overall (thick) and per layer (thin), one colour per
run. IMP masks are nested, so this is |m_r| / |m_{r-1}|: it shows how each layer's share of the
pruning moves (global scope, --layer-rate). Right panel, with two or more runs of the same
model: the Jaccard index between the first run's mask and each other run's at the same round
(other schedules or seeds): whether they converge on the same ticket; the dashed line is what
two independent random masks of that sparsity would share (k / (2 - k), k the kept fraction).
Writes mask_overlap.png, .pdf and .csv into --out (atomically; nothing when an input is wrong).
Reads only the runs' mask.pt files (checksums verified), so runs made before issue 23 draw too.
"""
import logging
import sys
from pathlib import Path
from typing import Dict, List, Sequence

from analysis import cli
from analysis.figures import DOUBLE_PANEL, csv_bytes, new_figure, paper_style, render, write
from lth.errors import LthError, OneLineParser, cli_main
from lth.pruning.overlap import jaccard
from lth.runs.store import RunStore

log = logging.getLogger("analysis.mask_overlap")


def consecutive(store: RunStore) -> List[dict]:
    """Per finished round r (consecutive from 1): the overlap of m_r with m_{r-1}."""
    rows, previous = [], None
    for r in store.finished_rounds():
        if r != len(rows) + 1:
            break  # a gap: the rounds after it have no predecessor to compare with
        mask = store.load_mask(r)
        if previous is None:
            import torch
            previous = {name: torch.ones_like(kept) for name, kept in mask.items()}
        rows.append({"round": r, **jaccard(previous, mask)})
        previous = mask
    return rows


def across(stores: Sequence[RunStore]) -> Dict[str, List[dict]]:
    """Each later run's overlap with the first run's mask at every round both finished."""
    first = stores[0]
    out = {}
    for store in stores[1:]:
        shared = sorted(set(first.finished_rounds()) & set(store.finished_rounds()))
        try:
            out[store.root.name] = [{"round": r, **jaccard(first.load_mask(r), store.load_mask(r))} for r in shared]
        except LthError as e:
            raise LthError(f"{store.root} and {first.root} have different models or layers: {e}") from None
    return out


def chance_level(store: RunStore) -> Dict[int, float]:
    """Per round, the expected Jaccard of two independent random masks of this run's overall
    sparsity s (kept fraction k = 1 - s): E|A & B| / E|A | B| = k^2 / (2k - k^2) = k / (2 - k)."""
    out = {}
    for r in store.finished_rounds():
        mask = store.load_mask(r)
        kept = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
        out[r] = kept / (2 - kept)
    return out


def figure(stores: Sequence[RunStore], out: Path) -> Dict[Path, bytes]:
    runs = {store.root.name: consecutive(store) for store in stores}
    pairs = across(stores) if len(stores) > 1 else {}
    rows = [(name, "consecutive", row["round"], layer, value) for name, series in runs.items() for row in series
            for layer, value in [("total", row["jaccard"]), *row["layers"].items()]]
    rows += [(name, f"vs {stores[0].root.name}", row["round"], layer, value) for name, series in pairs.items()
             for row in series for layer, value in [("total", row["jaccard"]), *row["layers"].items()]]
    with paper_style():
        fig = new_figure(DOUBLE_PANEL if pairs else (3.5, 2.6))
        axes = fig.subplots(1, 2 if pairs else 1, squeeze=False)[0]
        colours = {name: f"C{i}" for i, name in enumerate(runs)}
        for name, series in runs.items():
            rounds = [row["round"] for row in series]
            for layer in series[0]["layers"]:
                axes[0].plot(rounds, [row["layers"][layer] for row in series], color=colours[name], lw=0.6, alpha=0.5)
            axes[0].plot(rounds, [row["jaccard"] for row in series], color=colours[name], lw=2, marker="o", ms=3,
                         label=name if len(runs) > 1 else "all layers")
        axes[0].set(xlabel="round r", ylabel="Jaccard(m_r, m_{r-1})", title="consecutive rounds (thin: layers)")
        axes[0].legend(fontsize=5)
        if pairs:
            for name, series in pairs.items():
                axes[1].plot([row["round"] for row in series], [row["jaccard"] for row in series],
                             color=colours[name], lw=2, marker="o", ms=3, label=name)
            # chance: two independent random masks keeping a fraction k each overlap by k / (2 - k)
            chance = chance_level(stores[0])
            axes[1].plot(list(chance), list(chance.values()), color="grey", ls="--", lw=1, label="random masks")
            axes[1].set(xlabel="round r", ylabel="Jaccard with the first run",
                        title=f"across runs (vs {stores[0].root.name})")
            axes[1].title.set_fontsize(6)
            axes[1].legend(fontsize=5)
        for ax in axes:
            ax.xaxis.get_major_locator().set_params(integer=True)
        files = render(fig, out / "mask_overlap")
    files[out / "mask_overlap.csv"] = csv_bytes(["run", "compared", "round", "layer", "jaccard"], rows)
    return files


def parser() -> OneLineParser:
    p = OneLineParser(prog="python -m analysis.mask_overlap", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories made by python -m lth.run")
    p.add_argument("--out", default="figures", help="output folder [default: figures]")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    out = cli.check_out_dir(args.out)
    stores = cli.open_runs(args.runs)
    for path in write(figure(stores, out)):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
