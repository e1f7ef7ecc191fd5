"""The report of a run: summary statistics, tables, the files in the run dir and the HTML page.

Modules: :mod:`~bench.report.summary` (cells: mean, sd, n over seeds), :mod:`~bench.report.tables`
(the tables and their console, Markdown and HTML renderers), :mod:`~bench.report.files`
(values.csv, summary.md, summary.json), :mod:`~bench.report.view` (what figures read from the
store), :mod:`~bench.report.figures` and :mod:`~bench.report.suite` (matplotlib figures) and
:mod:`~bench.report.html` (the page). The names below are the package's public interface.
"""

from bench.report.files import write_files
from bench.report.summary import cell_text, direction_of, fmt, summarise
from bench.report.tables import LEGEND, SCALED_TITLE, DatasetTables, Report, build, main_table, print_tables

__all__ = [
    "LEGEND",
    "DatasetTables",
    "Report",
    "SCALED_TITLE",
    "build",
    "cell_text",
    "direction_of",
    "fmt",
    "main_table",
    "print_tables",
    "summarise",
    "write_files",
]
