"""The HTML report's small parts: escaping, anchors, embedded PNG figures, notes and scroll boxes."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

DPI = 90


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in str(text)).strip("-").lower() or "x"


def png_data_uri(fig) -> str:
    """PNG of a matplotlib figure as a ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def img(fig, alt: str, caption: str) -> str:
    return (
        f'<figure><img alt="{esc(alt)}" src="{png_data_uri(fig)}"><figcaption>{caption}</figcaption></figure>'
    )


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def box(table: str) -> str:
    """A table in its own horizontal scroll box (never past the page edge)."""
    return f'<div class="scroll">{table}</div>' if table else ""


def kv_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return box(f'<table class="prov"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
