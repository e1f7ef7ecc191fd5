"""The three renderers of the report's tables (console, Markdown, HTML), which share one row
iterator (:func:`rows`)."""

from __future__ import annotations

import html

import pandas as pd

from bench.report.tables import LEGEND, SCALED_TITLE, Report


def rows(df: pd.DataFrame):
    """(index tuple, [(column, text, is_best)]) per row of a table."""
    best = df.attrs.get("best", set())
    for idx, r in df.iterrows():
        key = idx if isinstance(idx, tuple) else (idx,)
        yield key, [(col, str(v), (idx, col) in best) for col, v in r.items()]


def console_texts(cells) -> list[str]:
    """A row's cells (:func:`rows`) as rich markup: the best model's in bold green, failed in red."""
    from rich.markup import escape

    return [
        f"[bold green]{escape(text)}[/]"
        if best
        else f"[red]{escape(text)}[/]"
        if text == "failed"
        else escape(text)
        for _, text, best in cells
    ]


def index_names(df: pd.DataFrame) -> list[str]:
    return list(df.index.names) if isinstance(df.index, pd.MultiIndex) else [df.index.name or "model"]


def print_tables(report: Report, console, *, paper: bool = True) -> None:
    from rich.markup import escape
    from rich.table import Table

    def show(df: pd.DataFrame, title: str) -> None:
        if df.empty:
            return
        t = Table(title=title, title_justify="left")
        for name in index_names(df):
            t.add_column(name or "", style="bold")
        for col in df.columns:
            t.add_column(str(col), justify="right")
        for idx, cells in rows(df):
            t.add_row(*map(str, idx), *console_texts(cells))
        console.print(t)
        for note in df.attrs.get("notes", []):
            console.print(f"  [red]failed[/red] {escape(note)}", highlight=False, soft_wrap=True)

    for dataset, tables in report.datasets.items():
        show(tables.main, f"{dataset}: {LEGEND}")
        if paper:
            for title, df in tables.paper.items():
                show(df, f"{dataset}: {title}")
        for group, df in tables.suite.items():
            show(df, f"{dataset}: {group}")
        for title, df in tables.protocols.items():
            show(df, f"{dataset}: {title}")
        show(tables.scaled, f"{dataset}: {SCALED_TITLE}")


def md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return ""
    head = [*(n or "" for n in index_names(df)), *map(str, df.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for idx, cells in rows(df):
        texts = [f"**{text}**" if best else text for _, text, best in cells]
        lines.append("| " + " | ".join([*map(str, idx), *texts]) + " |")
    notes = df.attrs.get("notes", [])
    if notes:
        lines += ["", *(f"- failed: {note}" for note in notes)]
    return "\n".join(lines)


def table_html(df: pd.DataFrame) -> str:
    """An HTML table with the index as leading columns (MultiIndex levels each a column); the best
    model's cells (``df.attrs['best']``) coloured, failed cells in red, and the failure notes
    (``df.attrs['notes']``) under the table."""
    if df.empty:
        return ""
    head = "".join(f"<th>{html.escape(str(n or ''), quote=True)}</th>" for n in index_names(df))
    head += "".join(f"<th>{html.escape(str(c), quote=True)}</th>" for c in df.columns)
    body = []
    for idx, cells in rows(df):
        tds = "".join(f'<td class="idx">{html.escape(str(i), quote=True)}</td>' for i in idx)
        for _, text, best in cells:
            cls = "num best" if best else "num failed" if text == "failed" else "num"
            tds += f'<td class="{cls}">{html.escape(str(text), quote=True)}</td>'
        body.append(f"<tr>{tds}</tr>")
    notes = "".join(
        f'<p class="note failed">failed: {html.escape(str(n), quote=True)}</p>'
        for n in df.attrs.get("notes", [])
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{notes}"
