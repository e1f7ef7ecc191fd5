"""The report of a run: summary statistics, tables, the files in the run dir and the HTML page.

Modules: :mod:`~bench.report.summary` (cells: mean, sd, n over seeds), :mod:`~bench.report.tables`
(the tables: :mod:`~bench.report.main_table`, the paper's tables the metrics declare,
:mod:`~bench.report.protocol_tables`), :mod:`~bench.report.render` (their console, Markdown and HTML
renderers), :mod:`~bench.report.files` (values.csv, summary.md, summary.json),
:mod:`~bench.report.view` (what figures read from the store; each metric draws its own figures,
``FigureSpec.draw``), :mod:`~bench.report.figures_training` (the report's own figures) and
:mod:`~bench.report.html` (the page). The names below are the package's public interface.
"""

from bench.report.files import write_files
from bench.report.main_table import main_table
from bench.report.render import print_tables
from bench.report.summary import cell_text, direction_of, fmt, summarise
from bench.report.tables import LEGEND, SCALED_TITLE, DatasetTables, Report, build

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
