"""The paper-vs-ours tables of docs/reproduction.md, from a run's summary.json.

    python scripts/reference_compare.py results/reference/pbmc3k-standard-v2/summary.json \
        [--protocols results/reference/pbmc3k-standard-protocols/summary.json]
    python scripts/reference_compare.py results/reference/pbmc3k-standard-v2/summary.json --readme

Prints markdown: for Fig. 3 (AUC), Table 2 (MMD with the training-set control), Fig. 5 (CD),
Table 1 (training time) and Fig. 7 (augmentation F1, where the run has it), the paper's values on
its two datasets next to ours (mean ± sd over the run's seeds), and whether the paper's ordering
holds. The paper's numbers are typed in from ../shared/reference/activa-paper.md (section 5).
With ``--protocols``, a run of the same models in several evaluation protocols: Fig. 3 and Table 2
get a column per protocol other than genes (its values' ``params.protocol``), and the ordering is
judged in each. With ``--readme``, the README's two reference tables instead: the main experiment's
headline values and mean scaled score per model (best first, controls last), and the augmentation
experiment's rare-type F1 per fraction.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.protocols import protocol_keys
from bench.report import cell_text
from bench.report.summary import CONTROLS

# the paper's values: (Brain Small, 68K PBMC)
PAPER = {
    "auc": {"activa": ("0.62 ± 0.02", "0.68 ± 0.01"), "scgan": ("0.74 ± 0.01", "0.73 ± 0.01")},
    "mmd": {
        "real": ("0.0619", "0.0539"),
        "activa": ("0.7715", "0.7952"),
        "scgan": ("0.9686", "0.9047"),
    },
    "cd": {"activa": ("4.6852", "1.5816"), "scgan": ("5.5937", "2.2037")},
    "train_seconds": {
        "activa": ("8,075 ± 136", "26,026 ± 128"),
        "scgan": ("142,238 ± 705", "164,839 ± 504"),
        "cscgan": ("145,856 ± 336", "176,014 ± 193"),
    },
    # 68K PBMC cluster 2: F1 without -> with augmentation
    "f1": {"activa": {"0.01": "0.683 → 0.940", "0.005": "0.474 → 0.926"}, "cscgan": {"0.005": "→ 0.877"}},
}
# the paper-shaped tables: (title, metric, the paper's ordering, does ACTIVA's value beat scGAN's)
PAPER_TABLES = (
    (
        "Fig. 3: real-vs-synthetic RF AUC (0.5 is ideal)",
        "auc",
        "ACTIVA nearer 0.5 than scGAN",
        lambda a, s: abs(a - 0.5) < abs(s - 0.5),
    ),
    ("Table 2: MMD to the test set (50 PCs)", "mmd", "ACTIVA lower than scGAN", lambda a, s: a < s),
    (
        "Fig. 5: correlation discrepancy of the top-5 DE genes per type",
        "cd",
        "ACTIVA lower than scGAN",
        lambda a, s: a < s,
    ),
    ("Table 1: training seconds", "train_seconds", "ACTIVA faster than scGAN", lambda a, s: a < s),
)
MODELS = ("activa", "scgan", "cscgan", "scvi", "cfgen", "scdiffusion", "copula", "nb", "real", "shuffled")


def cells(summary: list[dict], metric: str, experiment: str = "main") -> dict[str, dict]:
    return {r["model"]: r for r in summary if r["metric"] == metric and r["experiment"] == experiment}


def fmt(row: dict | None) -> str:
    """The run tables' cell (``bench.report.cell_text``: ``(n/N)`` for missing seeds, ``failed``)."""
    return "n/a" if row is None else cell_text(row)


def holds(flag: bool | None) -> str:
    return "n/a" if flag is None else ("yes" if flag else "**no**")


def protocol_cells(summary: list[dict], metric: str) -> dict[str, dict[str, dict]]:
    """{protocol: {model: row}} of the main experiment's ``metric`` in every protocol but genes."""
    out: dict[str, dict[str, dict]] = {}
    for r in summary:
        protocol = (r.get("params") or {}).get("protocol")
        if r["metric"] == metric and protocol and protocol != "genes":
            out.setdefault(protocol, {})[r["model"]] = r
    order = protocol_keys()
    return dict(sorted(out.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))


def verdict(rows: dict[str, dict], better) -> str:
    a, s = rows.get("activa"), rows.get("scgan")
    flag = None if a is None or s is None else better(a["mean"], s["mean"])
    text = holds(flag)
    if flag is not None and abs(a["mean"] - s["mean"]) <= (a.get("sd") or 0) + (s.get("sd") or 0):
        text += " by the means, but the difference is within the seeds' sd (a tie)"
    return text


def table(
    title: str,
    metric: str,
    rows: dict[str, dict],
    order_note: str,
    better,
    extra: dict[str, dict] | None = None,
) -> list[str]:
    extra = extra or {}
    head = ["ours: pbmc3k standard" + (" (genes)" if extra else ""), *(f"ours: {p}" for p in extra)]
    lines = [
        f"### {title}",
        "",
        "| model | paper: Brain Small | paper: 68K PBMC | " + " | ".join(head) + " |",
        "|---|---|---|" + "---|" * len(head),
    ]
    for m in MODELS:
        if m not in rows and m not in PAPER.get(metric, {}) and not any(m in e for e in extra.values()):
            continue
        bs, pb = PAPER.get(metric, {}).get(m, ("", ""))
        ours = [fmt(rows.get(m)), *(fmt(e.get(m)) for e in extra.values())]
        lines.append(f"| {m} | {bs} | {pb} | " + " | ".join(ours) + " |")
    lines += ["", f"Paper's ordering ({order_note}) holds on pbmc3k: {verdict(rows, better)}" + (
        "" if not extra else " (genes); " + "; ".join(f"{p}: {verdict(e, better)}" for p, e in extra.items())
    ) + ".", ""]  # fmt: skip
    return lines


def fig7(summary: list[dict]) -> list[str]:
    """Fig. 7: per model and fraction, the rare type's F1 with real cells only, oversampled, augmented,
    and the gain (augmented - real); the paper's ordering: a gain at 1 % and 0.5 % for ACTIVA."""
    aug = {(r["model"], r["metric"]): r for r in summary if r["experiment"] == "augmentation"}
    lines = ["### Fig. 7: rare-type F1 without and with augmentation", ""]
    if not any(m.startswith("f1_") for _, m in aug):
        return [*lines, "Not in this run (the main experiment only).", ""]
    fractions = sorted(
        {m.split("@", 1)[1] for _, m in aug if m.startswith("f1_real@")}, key=float, reverse=True
    )
    lines += [
        "| model | kept | paper (68K PBMC, cluster 2): real → augmented | ours: real | oversampled | "
        "augmented | gain |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in MODELS:
        if not any(model == m for model, _ in aug):
            continue
        for f in fractions:
            arms = [
                fmt(aug.get((m, f"f1_{arm}@{f}"))) for arm in ("real", "oversampled", "augmented", "gain")
            ]
            paper = PAPER["f1"].get(m, {}).get(f, "")
            lines.append(f"| {m} | {float(f):.1%} | {paper} | " + " | ".join(arms) + " |")
    verdict = []
    for f in ("0.01", "0.005"):
        gain = aug.get(("activa", f"f1_gain@{f}"))
        if gain is None or gain.get("mean") is None:
            verdict.append(f"{float(f):.1%}: n/a")
            continue
        sd = gain.get("sd") or 0.0
        word = "yes" if gain["mean"] > 0 else "**no**"
        if abs(gain["mean"]) <= sd:
            word += " by the mean, within the seeds' sd"
        real = aug.get(("activa", f"f1_real@{f}")) or {}
        aug_f1 = aug.get(("activa", f"f1_augmented@{f}")) or {}
        verdict.append(
            f"{float(f):.1%}: {word} (F1 {real.get('mean', float('nan')):.3f} → "
            f"{aug_f1.get('mean', float('nan')):.3f}, gain {gain['mean']:+.3f})"
        )
    lines += [
        "",
        f"Paper's ordering (ACTIVA's augmentation raises the rare type's F1) holds on pbmc3k: "
        f"{'; '.join(verdict)}.",
        "",
    ]
    return lines


# the README's main table: (value, header, format of mean and sd)
README_COLUMNS = (
    ("auc", "auc (→0.5)", "{:.3f}"),
    ("mmd", "mmd ↓", "{:.3f}"),
    ("cd", "cd ↓", "{:.2f}"),
    ("mean_corr", "mean_corr ↑", "{:.3f}"),
    ("energy", "energy ↓", "{:.3f}"),
    ("precision", "precision ↑", "{:.3f}"),
    ("coverage", "coverage ↑", "{:.3f}"),
    ("train_seconds", "train s", "{:,.0f}"),
)


def readme_cell(row: dict | None, form: str) -> str:
    if row is None or row.get("mean") is None:
        return "n/a" if row is None else cell_text(row)
    text = form.format(row["mean"])
    if row.get("sd") is not None:
        text += " ± " + form.format(row["sd"])
    if row.get("n") is not None and row.get("n_planned") and row["n"] < row["n_planned"]:
        text += f" ({row['n']}/{row['n_planned']})"
    return text


def readme_tables(doc: dict) -> list[str]:
    """The README's reference tables, from a run's summary.json."""
    summary = doc["summary"]
    main_rows = {m: cells(summary, m) for m, _, _ in README_COLUMNS}
    scaled = {r["model"]: r for r in doc.get("mean_scaled", [])}
    models = sorted(
        {r["model"] for r in summary if r["experiment"] == "main"},
        key=lambda m: (
            m in CONTROLS,
            CONTROLS.index(m) if m in CONTROLS else -scaled.get(m, {}).get("mean", -9),
        ),
    )
    lines = [
        "| model | " + " | ".join(h for _, h, _ in README_COLUMNS) + " | mean scaled score |",
        "|---|" + "---|" * (len(README_COLUMNS) + 1),
    ]
    for m in models:
        vals = [readme_cell(main_rows[v].get(m), f) for v, _, f in README_COLUMNS]
        sc = scaled.get(m)
        vals.append(readme_cell(sc and {**sc, "n_planned": None}, "{:.3f}") if sc else "n/a")
        lines.append(f"| {m} | " + " | ".join(vals) + " |")
    aug = {(r["model"], r["metric"]): r for r in summary if r["experiment"] == "augmentation"}
    fractions = sorted(
        {m.split("@", 1)[1] for _, m in aug if m.startswith("f1_real@")}, key=float, reverse=True
    )
    if fractions:
        lines += ["", "| rare type kept | " + " | ".join(f"{float(f) * 100:g} %" for f in fractions) + " |"]
        lines.append("|---|" + "---|" * len(fractions))
        arms = [("real cells only", "real", "f1_real"), ("+ oversampled real", "real", "f1_oversampled")]
        # a model run at fewer seeds than the run's most says so in its label (the store plans only
        # the tasks it was asked for, so its n_planned does not flag them)
        most = max((r.get("n") or 0) for r in aug.values())
        for m in MODELS:
            row = aug.get((m, f"f1_augmented@{fractions[0]}"))
            if m not in CONTROLS and row is not None:
                n = row.get("n") or 0
                arms.append((f"+ {m}" + (f" ({n} of {most} seeds)" if n < most else ""), m, "f1_augmented"))
        for label, m, arm in arms:
            lines.append(
                f"| {label} | "
                + " | ".join(readme_cell(aug.get((m, f"{arm}@{f}")), "{:.3f}") for f in fractions)
                + " |"
            )
    return lines


def main(path: str, protocols: str | None = None, readme: bool = False) -> int:
    doc = json.loads(Path(path).read_text())
    if readme:
        print("\n".join([*readme_tables(doc), "", f"Source: `{path}`."]))
        return 0
    summary = doc["summary"]
    by_protocol = json.loads(Path(protocols).read_text())["summary"] if protocols else []
    out: list[str] = []
    for title, metric, order_note, better in PAPER_TABLES:
        extra = protocol_cells(by_protocol, metric) if metric in ("auc", "mmd") else {}
        out += table(title, metric, cells(summary, metric), order_note, better, extra)
    out += fig7(summary)
    prov = doc.get("provenance", {})
    git = prov.get("git") or {}
    out += [
        f"Source: `{path}` (commit {git.get('commit', '?')[:12] if isinstance(git, dict) else git}, "
        f"{(prov.get('host') or {}).get('cpus', '?') if isinstance(prov.get('host'), dict) else prov.get('host')} CPUs)."
    ]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    extra = args[args.index("--protocols") + 1] if "--protocols" in args else None
    sys.exit(main(args[0], extra, readme="--readme" in args))
