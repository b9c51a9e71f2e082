"""Table 4 of the paper: test accuracy (%) at the last round, per schedule, mean +- sample
standard deviation over runs, rendered as Markdown, LaTeX (booktabs) and CSV from
`analysis.results.last_round`. Two accuracies, side by side, because the paper's wording fits
both:

  End of IMP round   the IMP run's own network at the end of that round (its round summary)
  Ticket re-trained  the ticket W_rewind * m_r trained again, the mean of its two copies
                     (analysis.stability): the paper's "accuracy of the ticket"

and the controls' re-trained accuracies as extra columns when measured. The best re-trained
ticket is set in bold, as in the paper. The paper's One-Shot row "corresponds to the original
IMP experiment": compare it with both our "One-Shot (40 %)" (pruning at 40 % of each round) and
"IMP (end of round)" rows.

`python -m analysis.tables STUDY...` writes Tables 1, 2 and 3 from studies (an alias of `lth tables`, lth.study.tables).
"""
import csv
import io
from typing import List

from analysis.results import KIND_LABELS
from analysis.tickets import KINDS

CAPTION = ("Table 4. Test accuracy (%) at each schedule's last measured round, mean ± std over runs. "
           "End of IMP round: the IMP run's network at the end of that round. Re-trained: the ticket "
           "(or control) trained again from its rewind weights, mean of two copies. "
           "One-Shot (40 %) prunes at 40 % of each round; IMP (end of round) at its end.")


def _columns(table: List[dict]) -> List[str]:
    """'round' (end of the IMP round), then the kinds measured."""
    return [key for key in ("round",) + KINDS if any(key in row["cells"] for row in table)]


def _label(key: str) -> str:
    return "End of IMP round acc. (%)" if key == "round" else f"{KIND_LABELS[key]} re-trained acc. (%)"


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
    columns = _columns(table)
    header = ["Schedule", "Round", "Sparsity (%)"] + [_label(k) for k in columns] + ["Runs"]
    rows = [header]
    for row in table:
        cells = [_cell(row["cells"].get(k), k == "ticket" and _is_best(row, table), latex) for k in columns]
        rows.append([row["group"], _rounds(row), f"{100 * row['sparsity']:.1f}"] + cells + [str(row["runs"])])
    return rows


def markdown(table: List[dict]) -> str:
    header, *rows = _body(table, latex=False)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return CAPTION + "\n\n" + "\n".join(lines) + "\n"


def latex(table: List[dict]) -> str:
    header, *rows = _body(table, latex=True)
    caption = CAPTION.split(". ", 1)[1].replace("%", r"\%").replace("±", r"$\pm$")
    lines = [r"\begin{table}", r"\centering", r"\caption{" + caption + "}", r"\label{tab:tickets}",
             r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(h.replace("%", r"\%") for h in header) + r" \\", r"\midrule"]
    # the group labels hold a % sign: One-Shot (40 %)
    lines += [" & ".join([row[0].replace("%", r"\%"), *row[1:]]) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def csv_text(table: List[dict]) -> str:
    """One row per group; per column (round: end of the IMP round; each kind: re-trained): mean,
    std, min, max (accuracy, %), n."""
    kinds = _columns(table)
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


if __name__ == "__main__":
    # `python -m analysis.tables STUDY...`: an alias of `lth tables`. Tables 1-3 belong to the
    # study layer (lth.study.tables), which sits above analysis, so the alias runs that module
    # as a script instead of importing it.
    import runpy
    runpy.run_module("lth.study.tables", run_name="__main__", alter_sys=True)
