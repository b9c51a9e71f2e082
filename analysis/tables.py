"""Table 4 of the paper: test accuracy (%) of the re-trained ticket at the last round, per
schedule, mean +- sample standard deviation over runs; the controls as extra columns when
measured. Rendered as Markdown, LaTeX (booktabs) and CSV from `analysis.results.last_round`.
The best ticket accuracy is set in bold, as in the paper.
"""
import csv
import io
from typing import List

from analysis.results import KIND_LABELS
from analysis.tickets import KINDS


def _kinds(table: List[dict]) -> List[str]:
    return [kind for kind in KINDS if any(kind in row["cells"] for row in table)]


def _rounds(row: dict) -> str:
    return "/".join(str(r) for r in row["rounds"])


def _cell(cell, bold: bool, latex: bool) -> str:
    if cell is None:
        return "--" if latex else "–"
    text = f"{100 * cell['mean']:.2f}"
    if cell["n"] > 1:
        text += f" $\\pm$ {100 * cell['std']:.2f}" if latex else f" ± {100 * cell['std']:.2f}"
    if bold:
        text = f"\\textbf{{{text}}}" if latex else f"**{text}**"
    return text


def _is_best(row: dict, table: List[dict]) -> bool:
    """The row with the best ticket accuracy, when there is more than one row to compare."""
    means = [other["cells"]["ticket"]["mean"] for other in table if "ticket" in other["cells"]]
    return len(means) > 1 and "ticket" in row["cells"] and row["cells"]["ticket"]["mean"] == max(means)


def _body(table: List[dict], latex: bool) -> List[List[str]]:
    kinds = _kinds(table)
    header = ["Schedule", "Round", "Sparsity (%)"] + [f"{KIND_LABELS[k]} acc. (%)" for k in kinds] + ["Runs"]
    rows = [header]
    for row in table:
        cells = [_cell(row["cells"].get(k), k == "ticket" and _is_best(row, table), latex) for k in kinds]
        rows.append([row["group"], _rounds(row), f"{100 * row['sparsity']:.1f}"] + cells + [str(row["runs"])])
    return rows


def markdown(table: List[dict]) -> str:
    header, *rows = _body(table, latex=False)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def latex(table: List[dict]) -> str:
    header, *rows = _body(table, latex=True)
    lines = [r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(h.replace("%", r"\%") for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def csv_text(table: List[dict]) -> str:
    """One row per group; per kind: mean, std, min, max (accuracy, %), n."""
    kinds = _kinds(table)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["schedule", "rounds", "sparsity_pct", "runs"] +
                    [f"{k}_acc_{stat}" for k in kinds for stat in ("mean_pct", "std_pct", "min_pct", "max_pct", "n")])
    for row in table:
        values = []
        for k in kinds:
            cell = row["cells"].get(k)
            values += ([f"{100 * cell[s]:.4f}" for s in ("mean", "std", "min", "max")] + [cell["n"]]
                       if cell else [""] * 5)
        writer.writerow([row["group"], _rounds(row), f"{100 * row['sparsity']:.4f}", row["runs"]] + values)
    return out.getvalue()
