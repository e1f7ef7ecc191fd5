"""The table of results/investigations/normalisation/README.md: AUC, MMD and CD per model under each
normalisation, from the values.csv that `bench report RUN_DIR` writes (mean ± sd over seeds, and
the per-seed values).

    python scripts/investigations/normalisation_table.py hvg=results/norm-runs/hvg \\
        all-genes=results/norm-runs/all-genes
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict

import numpy as np

METRICS = {"auc": "AUC (→0.5)", "mmd": "MMD ↓", "cd": "CD ↓"}
ORDER = ["activa", "scgan", "cscgan", "nb", "real", "shuffled"]


def read(run_dir: str) -> dict[tuple[str, str], dict[int, float]]:
    out: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    with open(f"{run_dir}/values.csv") as fh:
        for row in csv.DictReader(fh):
            if row["experiment"] == "main" and row["metric"] in METRICS:
                out[(row["model"], row["metric"])][int(row["seed"])] = float(row["value"])
    return out


def cell(values: dict[int, float]) -> str:
    if not values:
        return "—"
    v = np.array([values[s] for s in sorted(values)])
    sd = f" ± {v.std(ddof=1):.3f}" if v.size > 1 else ""
    seeds = " / ".join(f"{x:.3f}" for x in v)
    return f"{v.mean():.3f}{sd} ({seeds})"


def main(args: list[str]) -> str:
    runs = {name: read(path) for name, path in (a.split("=", 1) for a in args)}
    models = [m for m in ORDER if any((m, "auc") in r for r in runs.values())]
    lines = []
    for metric, title in METRICS.items():
        head = "| model | " + " | ".join(f"{title}, {n}" for n in runs) + " |"
        lines += [head, "|---" * (len(runs) + 1) + "|"]
        for m in models:
            lines.append(f"| {m} | " + " | ".join(cell(r.get((m, metric), {})) for r in runs.values()) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
