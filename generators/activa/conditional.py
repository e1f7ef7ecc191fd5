"""ACTIVA's conditional generation: a per-label request filled from prior draws that ACTINN labels.

A cell counts for its predicted label when ACTINN's probability reaches ``confidence``; cells keep
being decoded until every label is filled or ``max_draws`` cells were decoded. A label the filter
cannot fill is never given up silently: its remaining cells come from the released code's rule
(ACTINN's argmax is the label) among the draws, and then, if still short, from the draws with the
highest probability of that label (in this last resort one draw can serve two labels)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from bench.api import TaskFailed

RULES = ("argmax", "top_probability")


class BestCells:
    """The ``k`` cells with the highest score offered so far (kept on the CPU, bounded memory)."""

    def __init__(self, k: int):
        self.k = int(k)
        self.score = torch.empty(0)
        self.cells: torch.Tensor | None = None

    def offer(self, score: torch.Tensor, cells: torch.Tensor) -> None:
        if self.k <= 0 or score.numel() == 0:
            return
        score, cells = score.float().cpu(), cells.cpu()
        if self.cells is not None:
            score, cells = torch.cat([self.score, score]), torch.cat([self.cells, cells])
        order = torch.argsort(score, descending=True, stable=True)[: self.k]
        self.score, self.cells = score[order], cells[order]

    @property
    def size(self) -> int:
        return 0 if self.cells is None else int(self.cells.shape[0])

    def top(self, n: int) -> torch.Tensor:
        return self.cells[:n]


def fill_labels(
    decode: Callable[[int], torch.Tensor],
    predict: Callable[[torch.Tensor], torch.Tensor],
    per_label: dict[str, int],
    labels: list[str],
    *,
    chunk: int,
    max_draws: int,
    threshold: float,
) -> tuple[np.ndarray, list[str], dict[str, dict[str, int]], int]:
    """``per_label`` cells (label -> count; ``labels``: the training labels, ACTINN's classes) from
    ``decode(n)`` (n cells from the prior, in draw order) and ACTINN's ``predict`` (class
    probabilities). Returns the cells (label by label), their labels, how many cells of each label
    each rule supplied (``filter``, ``argmax``, ``top_probability``) and how many were decoded."""
    want = {lab: n for lab, n in per_label.items() if n > 0}
    index = {lab: i for i, lab in enumerate(labels)}
    kept: dict[str, list[torch.Tensor]] = {lab: [] for lab in want}
    have = dict.fromkeys(want, 0)
    # best draws that missed the filter, per label and rule: (probability of the label, cells)
    spare = {lab: {rule: BestCells(want[lab]) for rule in RULES} for lab in want}
    drawn = 0
    while drawn < max_draws and any(have[lab] < want[lab] for lab in want):
        n = min(chunk, max_draws - drawn)
        x = decode(n)
        drawn += n
        probs = predict(x).to(x.device)
        conf, pred = probs.max(dim=1)
        ok = conf >= threshold
        for lab in want:
            need = want[lab] - have[lab]
            if need <= 0:
                continue
            mine = pred == index[lab]
            rows = torch.nonzero(ok & mine).ravel()
            take = rows[:need]
            if take.numel():
                kept[lab].append(x[take].cpu())
                have[lab] += int(take.numel())
            if have[lab] < want[lab]:
                p = probs[:, index[lab]]
                below = torch.nonzero(mine & ~ok).ravel()
                spare[lab]["argmax"].offer(p[below], x[below])
                spare[lab]["top_probability"].offer(p[~mine], x[~mine])
    fill = {lab: {"filter": have[lab], "argmax": 0, "top_probability": 0} for lab in want}
    for lab in want:
        for rule in RULES:
            need = want[lab] - have[lab]
            if need > 0 and spare[lab][rule].size:
                cells = spare[lab][rule].top(need)
                kept[lab].append(cells)
                have[lab] += int(cells.shape[0])
                fill[lab][rule] = int(cells.shape[0])
        if have[lab] < want[lab]:
            raise TaskFailed(
                f"activa: {max_draws} decoded cells (max_draws) cannot fill {want[lab]} cells of {lab!r}"
            )
    X = torch.cat([t for lab in want for t in kept[lab]]).numpy()
    out_labels = [lab for lab in want for _ in range(want[lab])]
    return X, out_labels, fill, drawn
