"""The headline's HTML: the heatmap of control-scaled scores (a table in its own scroll box), its
note, legend and the three sentences (:mod:`bench.report.headline` builds what it shows)."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

from bench.report.headline import COST, Headline, _f, _is_control
from bench.report.summary import fmt

_LOW, _MID, _HIGH = (244, 165, 130), (247, 247, 247), (120, 198, 121)


def colour(s: float) -> str:
    """Cell background of a scaled score: salmon at 0 (shuffled), white at 0.5, green at 1 (real);
    clipped to [0, 1]; grey when undefined."""
    if s is None or not np.isfinite(s):
        return "#eeeeee"
    s = min(max(float(s), 0.0), 1.0)
    a, b, t = (_LOW, _MID, s / 0.5) if s < 0.5 else (_MID, _HIGH, (s - 0.5) / 0.5)
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b, strict=True))


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def to_html(h: Headline, *, heading: str = "h3") -> str:
    """The heatmap (a table in its own scroll box), the note and the three sentences."""
    if not h.models:
        return f'<p class="note">{_e(h.dataset)}: no values to show.</p>'
    groups: list[tuple[str, int]] = []
    for c in h.columns:
        if groups and groups[-1][0] == c.group:
            groups[-1] = (c.group, groups[-1][1] + 1)
        else:
            groups.append((c.group, 1))
    top = '<th rowspan="2">model</th><th rowspan="2">mean scaled</th>' + "".join(
        f'<th colspan="{n}" class="group">{_e(g)}</th>' for g, n in groups
    )
    second = "".join(f"<th>{_e(c.label)}</th>" for c in h.columns)
    body = []
    for m in h.models:
        mean = h.means.get(m)
        mean_text = fmt(*mean) if mean else "n/a"
        cls = ' class="control"' if _is_control(m) else ""
        label = f"{m} (control)" if _is_control(m) else m
        tds = [
            f'<td class="idx">{_e(label)}</td>',
            f'<td class="num" style="background:{colour(mean[0] if mean else math.nan)}">{_e(mean_text)}</td>',
        ]
        for c in h.columns:
            s = h.scaled[(m, c)]
            if c.group == COST:
                tds.append(f'<td class="num cost">{_e(h.raw[(m, c)])}</td>')
            else:
                title = f"scaled {s:.2f}" if np.isfinite(s) else "no scaled score"
                mean_text, _, spread = h.raw[(m, c)].partition(" ± ")
                small = (f"± {spread} · " if spread else "") + _f(s)
                tds.append(
                    f'<td class="num" style="background:{colour(s)}" title="{_e(title)}">{_e(mean_text)}'
                    f'<span class="scaled">{_e(small)}</span></td>'
                )
        body.append(f"<tr{cls}>{''.join(tds)}</tr>")
    table = (
        f'<div class="scroll"><table class="heatmap"><thead><tr>{top}</tr><tr>{second}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )
    legend = (
        '<p class="caption">Each cell: the raw value\'s mean over seeds, under it its sd and its control-scaled score; '
        "colour: the scaled score, real control = 1 (green), shuffled control = 0 (salmon), clipped to [0, 1]; "
        "grey: undefined (the controls do not separate on this value). Rows: best mean scaled score first "
        "(the mean over the values every model has, clipped to [0, 1]), controls last. Cost values are raw "
        "hardware measurements, never scaled.</p>"
    )
    sents = "".join(f"<li>{_e(s)}</li>" for s in h.sentences)
    return f'<p class="headline-note">{_e(h.note)}</p>{table}{legend}<ul class="sentences">{sents}</ul>'


__all__ = ["colour", "to_html"]
