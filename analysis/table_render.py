"""Render a results table (Tables 1-3 of the paper, from a study) as Markdown, LaTeX and CSV.

A `Grid` is rows x columns of `Entry`s: the measured value (mean, std, n over seeds), the
paper's value beside it when there is one, and a bold mark chosen by the table's rule (best
accuracy in the row or the table; the smallest budget). Accuracies are stored as fractions
and printed in %, with two decimals, as the paper prints them.
"""
import csv
import io
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

MISSING = "–"


# How datasets and models are named in tables and figures.
DISPLAY_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "caltech101": "Caltech-101", "mnist": "MNIST",
         "digits": "digits", "resnet18": "ResNet-18", "vgg16": "VGG-16"}


def mean_std(values: List[float]):
    """(mean, sample standard deviation; 0 for one value) of a table entry's seeds."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def ordered(values, order=None) -> list:
    """The distinct values in first-seen order, or in `order` where they appear in it."""
    unique = list(dict.fromkeys(values))
    if order:
        return sorted(unique, key=lambda v: order.index(v) if v in order else len(order))
    return unique


@dataclass
class Entry:
    mean: Optional[float] = None      # measured (fraction, or a budget multiple)
    std: float = 0.0
    n: int = 0
    expected: int = 0                 # seeds the study has for this entry (n < expected: incomplete)
    text: Optional[str] = None        # overrides the number (e.g. "> 4×")
    paper_mean: Optional[float] = None
    paper_std: Optional[float] = None
    paper_note: str = ""
    bold: bool = False


@dataclass
class Grid:
    title: str
    row_header: List[str]             # names of the row-key columns
    columns: List[str]                # labels of the value columns
    rows: List[tuple] = field(default_factory=list)         # row-key tuples (display text)
    entries: List[List[Entry]] = field(default_factory=list)
    unit: str = "acc"                 # acc (fractions shown in %) or multiple (shown as 2.5×)
    notes: List[str] = field(default_factory=list)


def number(value: float, unit: str) -> str:
    return f"{100 * value:.2f}" if unit == "acc" else f"{value:g}×"


def measured_text(e: Entry, unit: str, latex: bool) -> str:
    if e.text is not None:
        text = e.text.replace("×", r"$\times$") if latex else e.text
    elif e.mean is None:
        return "--" if latex else MISSING
    else:
        text = number(e.mean, unit)
        if unit == "acc" and e.n > 1:
            text += f" $\\pm$ {100 * e.std:.2f}" if latex else f" ± {100 * e.std:.2f}"
        if latex:
            text = text.replace("×", r"$\times$")
    if e.n and e.expected and e.n < e.expected:
        text += f" (n={e.n})"
    if e.bold:
        text = f"\\textbf{{{text}}}" if latex else f"**{text}**"
    return text


def paper_text(e: Entry, unit: str) -> str:
    if e.paper_mean is None:
        return "lost" if "lost" in e.paper_note else ""
    text = number(e.paper_mean / (100 if unit == "acc" else 1), unit)
    if e.paper_std is not None and unit == "acc":
        text += f" ± {e.paper_std:.2f}"
    return text


def cell_text(e: Entry, unit: str, latex: bool) -> str:
    text = measured_text(e, unit, latex)
    paper = paper_text(e, unit)
    if paper:
        paper = paper.replace("±", r"$\pm$").replace("×", r"$\times$") if latex else paper
        text += f" {{\\scriptsize [{paper}]}}" if latex else f" [{paper}]"
    return text


def markdown(grid: Grid) -> str:
    header = grid.row_header + grid.columns
    lines = [f"**{grid.title}**", "", "| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] * len(grid.row_header) + ["---:"] * len(grid.columns)) + "|"]
    for key, entries in zip(grid.rows, grid.entries):
        lines.append("| " + " | ".join(list(key) + [cell_text(e, grid.unit, False) for e in entries]) + " |")
    lines += [""] + [f"{note}" for note in grid.notes]
    return "\n".join(lines) + "\n"


def _tex_escape(text: str) -> str:
    return text.replace("%", r"\%").replace("_", r"\_").replace("±", r"$\pm$").replace("×", r"$\times$")


def latex(grid: Grid) -> str:
    header = grid.row_header + grid.columns
    lines = [r"\begin{tabular}{" + "l" * len(grid.row_header) + "r" * len(grid.columns) + "}", r"\toprule",
             " & ".join(_tex_escape(h) for h in header) + r" \\", r"\midrule"]
    for key, entries in zip(grid.rows, grid.entries):
        lines.append(" & ".join([_tex_escape(k) for k in key] + [cell_text(e, grid.unit, True) for e in entries])
                     + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [f"% {note}" for note in grid.notes]
    return "\n".join(lines) + "\n"


def csv_text(grid: Grid) -> str:
    """One line per entry: row keys, column, measured (in % for accuracies), n, the paper's value."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    scale = 100 if grid.unit == "acc" else 1
    suffix = "_pct" if grid.unit == "acc" else "_multiple"
    writer.writerow([h.lower().replace(" ", "_") for h in grid.row_header] +
                    ["column", f"mean{suffix}", f"std{suffix}", "n", "text", "best", f"paper_mean{suffix}",
                     f"paper_std{suffix}", "paper_note"])
    for key, entries in zip(grid.rows, grid.entries):
        for column, e in zip(grid.columns, entries):
            writer.writerow(list(key) + [column, "" if e.mean is None else f"{scale * e.mean:.4f}",
                                         "" if e.mean is None else f"{scale * e.std:.4f}", e.n, e.text or "",
                                         int(e.bold), "" if e.paper_mean is None else f"{e.paper_mean:g}",
                                         "" if e.paper_std is None else f"{e.paper_std:g}", e.paper_note])
    return out.getvalue()
