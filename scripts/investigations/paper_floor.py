"""Why two sets of real cells are told apart after the paper protocol's Seurat integration.

    python scripts/investigations/paper_floor.py RUN_DIR/tasks/<key>/seurat/group0 [OBJECT]

Reads one kept integration (``bench.protocols.seurat``: ``input/`` and ``output/pcs.csv``) whose
objects are the real test cells and OBJECT (default ``real``, the positive control), and prints:
the total and per-PC variance of OBJECT's integrated PCs relative to the real test cells', the
largest standardised mean shift, and the cross-validated AUC of a 200-tree forest on the 50 PCs as
they are, after centring each object on its own mean, and after also scaling each object's PCs to
unit variance. If the AUC falls to ~0.5 once each side is standardised, the forest separates the
two by the scale of their coordinates, not by where the cells are.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import cross_val_score


def main(folder: str, other: str = "real") -> int:
    pcs = pd.read_csv(Path(folder) / "output" / "pcs.csv")
    a = pcs[pcs.object == "real-test"].filter(like="PC_").to_numpy()
    b = pcs[pcs.object == other].filter(like="PC_").to_numpy()
    va, vb = a.var(0), b.var(0)
    shift = (b.mean(0) - a.mean(0)) / np.sqrt((va + vb) / 2)
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]

    def auc(x) -> float:
        forest = RandomForestClassifier(200, random_state=0, n_jobs=1)
        return float(cross_val_score(forest, x, y, cv=5, scoring="roc_auc").mean())

    print(f"{other} vs real-test, {a.shape[1]} integrated PCs, {len(a)} + {len(b)} cells")
    print(f"total variance ratio: {vb.sum() / va.sum():.2f}")
    print("per-PC variance ratio, PCs 1-10:", " ".join(f"{r:.2f}" for r in vb[:10] / va[:10]))
    print(f"median per-PC variance ratio, PCs 11-50: {np.median(vb[10:] / va[10:]):.2f}")
    print(f"largest |standardised mean shift|: {np.abs(shift).max():.2f}")
    print(f"AUC, the PCs as they are: {auc(np.vstack([a, b])):.3f}")
    print(f"AUC, each object centred: {auc(np.vstack([a - a.mean(0), b - b.mean(0)])):.3f}")
    z = np.vstack([(a - a.mean(0)) / a.std(0), (b - b.mean(0)) / b.std(0)])
    print(f"AUC, each object centred and scaled per PC: {auc(z):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
