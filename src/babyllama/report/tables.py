"""One table, three renderings: markdown for report.md, CSV and LaTeX (booktabs) for a paper.

Cells are strings formatted once, so the three files always agree; ``tables/<stem>.csv`` and ``.tex`` are written
beside the report.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from ..io import write_text

TABLES_DIR = "tables"
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    numeric: set[int] = field(default_factory=set)  # right-aligned columns
    caption: str = ""

    def add(self, *cells) -> None:
        if len(cells) != len(self.header):
            raise ValueError(f"row of {len(cells)} cells for {len(self.header)} columns")
        self.rows.append(["" if c is None else str(c) for c in cells])

    def markdown(self) -> list[str]:
        align = ["---:" if i in self.numeric else "---" for i in range(len(self.header))]
        lines = ["| " + " | ".join(self.header) + " |", "|" + "|".join(align) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in self.rows]
        return lines

    def csv_text(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([_plain(h) for h in self.header])
        w.writerows([[_plain(c) for c in r] for r in self.rows])
        return buf.getvalue()

    def latex(self) -> str:
        spec = "".join("r" if i in self.numeric else "l" for i in range(len(self.header)))
        body = [" & ".join(latex_escape(_plain(c)) for c in r) + r" \\" for r in self.rows]
        out = [r"\begin{table}[t]", r"\centering", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
               " & ".join(latex_escape(_plain(h)) for h in self.header) + r" \\", r"\midrule", *body,
               r"\bottomrule", r"\end{tabular}"]
        if self.caption:
            out.append(rf"\caption{{{latex_escape(self.caption)}}}")
        return "\n".join(out + [r"\end{table}"]) + "\n"

    def export(self, run_dir: Path, stem: str) -> list[str]:
        """Write tables/<stem>.csv and tables/<stem>.tex; return their paths relative to the run directory."""
        paths = [f"{TABLES_DIR}/{stem}.csv", f"{TABLES_DIR}/{stem}.tex"]
        write_text(run_dir / paths[0], self.csv_text())
        write_text(run_dir / paths[1], self.latex())
        return paths


def _plain(cell: str) -> str:
    """A markdown cell as plain text: bold markers dropped."""
    return cell.replace("**", "")
