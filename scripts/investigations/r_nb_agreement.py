"""The cross-language check of issue 31: does the R example (examples/r-nb, a manifest plugin) score
like the Python `nb` baseline it re-implements? For every value of the main experiment that has a
direction (the metrics' declarations), over the seeds of one run dir: each model's mean and sd, the
difference, the larger of the two seed sds ("the seed spread") and Welch's t.

    python scripts/investigations/r_nb_agreement.py RUN_DIR [--a nb] [--b r-nb] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd


def directional_values() -> dict[str, str]:
    """value name -> direction, from the installed metrics' declarations."""
    from bench.registry import available

    out: dict[str, str] = {}
    for metric in available("metrics").values():
        out.update(metric.directions)
    return out


def agreement(values: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    directions = directional_values()
    main = values[(values.experiment == "main") & values.metric.isin(directions)]
    if "params" in main:  # the genes protocol only (the main experiment's own)
        main = main[main.params.fillna("").str.contains('"genes"') | (main.params.fillna("") == "")]
    rows = []
    for metric, part in main.groupby("metric"):
        va = part[part.model == a].value.astype(float)
        vb = part[part.model == b].value.astype(float)
        if len(va) < 2 or len(vb) < 2:
            continue
        ma, mb, sa, sb = va.mean(), vb.mean(), va.std(ddof=1), vb.std(ddof=1)
        se = math.sqrt(sa**2 / len(va) + sb**2 / len(vb))
        spread = max(sa, sb)
        rows.append(
            {
                "value": metric,
                "direction": directions[metric],
                a: f"{ma:.4g} ± {sa:.2g}",
                b: f"{mb:.4g} ± {sb:.2g}",
                "difference": mb - ma,
                "seed spread (larger sd)": spread,
                "|diff| / spread": abs(mb - ma) / spread if spread > 0 else float("nan"),
                "Welch t": (mb - ma) / se if se > 0 else float("nan"),
                "within spread": "yes" if abs(mb - ma) <= spread else "no",
                "seeds": f"{len(va)}/{len(vb)}",
            }
        )
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    def cell(v) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--a", default="nb")
    p.add_argument("--b", default="r-nb")
    p.add_argument("--out", help="write the table as markdown here")
    args = p.parse_args()
    table = agreement(pd.read_csv(Path(args.run_dir) / "values.csv"), args.a, args.b)
    text = markdown(table)
    within = int((table["within spread"] == "yes").sum())
    summary = f"\n{within} of {len(table)} directional values differ by no more than the seed spread.\n"
    print(text + summary)
    if args.out:
        Path(args.out).write_text(text + "\n" + summary)


if __name__ == "__main__":
    main()
