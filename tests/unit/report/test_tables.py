"""One table rendered three ways: the markdown, CSV and LaTeX agree cell for cell."""

import csv
import io

import pytest

from babyllama.report.tables import Table, latex_escape


def table():
    t = Table(["model", "acc %", "note"], numeric={1})
    t.add("student_s1", "53.1 [51.9, 54.3]", "a|b")
    t.add("**macro**", 50, None)
    return t


def test_markdown_aligns_numbers_right_and_escapes_pipes():
    lines = table().markdown()
    assert lines[:2] == ["| model | acc % | note |", "|---|---:|---|"]
    assert lines[2] == "| student_s1 | 53.1 [51.9, 54.3] | a\\|b |"
    assert lines[3] == "| **macro** | 50 |  |"


def test_csv_has_the_same_cells_without_markup():
    rows = list(csv.reader(io.StringIO(table().csv_text())))
    assert rows == [["model", "acc %", "note"], ["student_s1", "53.1 [51.9, 54.3]", "a|b"], ["macro", "50", ""]]


def test_latex_is_a_booktabs_table_with_escaped_cells():
    tex = table().latex()
    assert "\\begin{tabular}{lrl}" in tex and "\\toprule" in tex and "\\bottomrule" in tex
    assert "student\\_s1 & 53.1 [51.9, 54.3] & a|b \\\\" in tex
    assert "model & acc \\% & note \\\\" in tex
    assert latex_escape("50% of $x_1 & {y}") == "50\\% of \\$x\\_1 \\& \\{y\\}"


def test_export_writes_both_files(tmp_path):
    assert table().export(tmp_path, "models") == ["tables/models.csv", "tables/models.tex"]
    assert (tmp_path / "tables" / "models.csv").read_text().startswith("model,acc %,note\n")
    assert (tmp_path / "tables" / "models.tex").read_text().endswith("\\end{table}\n")


def test_a_row_of_the_wrong_width_is_refused():
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        table().add("a", "b")
