"""The controls under each evaluation protocol: a leakage check (issue 27).

On pbmc3k (2,000 HVGs, the quick/standard preparation), per seed: the ``real`` control (training
cells from the control reserve, fit and generated as the runner does) and the ``shuffled`` control
(every gene permuted across training cells) each generate as many cells as the test split holds;
then every protocol of bench.protocols embeds the real test cells and the controls' cells, and the
project's AUC (bench.metrics.auc, the paper's forest: Gini, sqrt features, 5-fold CV) scores each
control against the real test cells. ``pca-real`` fits on the training cells outside the control
reserve (as the evaluation does); ``paper`` and ``harmony`` integrate with "real vs generated" as
the batch, ``joint`` (both controls at once) and ``pairwise`` (one at a time). An AUC of 0.5 is the
ideal; the ``real`` control should score ~0.5 under a fair protocol, and ``shuffled`` far from it.

    python scripts/investigations/protocol_controls.py [--seeds 0,1,2] [--trees 1000]
    python scripts/investigations/protocol_controls.py --protocols paper:joint,paper:pairwise \
        --normalize LogNormalize --out results/investigations/protocols-controls/paper-lognormalize.json

Writes results/investigations/protocols-controls/controls.json (or --out: per seed, protocol and
control: the AUC, its fold sd, the protocol's record) and prints the table of means. ``--normalize``
is the ``paper`` protocol's option (the notebook calls no NormalizeData: ``none``, the default).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import datasets
from bench.evaluation import control_reserve
from bench.metrics import auc
from bench.pipeline import Pipeline
from bench.protocols import get_protocol
from bench.registry import get_generator

CONTROLS = ("real", "shuffled")
PROTOCOLS = ("genes", "pca-real", "paper:joint", "paper:pairwise", "harmony:joint", "harmony:pairwise")
OUT = "results/investigations/protocols-controls/controls.json"


def total_variance(X) -> float:
    """Sum over features of the per-feature variance (ddof 0) of cells x features, dense or sparse."""
    if hasattr(X, "toarray"):
        mean = np.asarray(X.mean(axis=0)).ravel()
        return float((np.asarray(X.multiply(X).mean(axis=0)).ravel() - mean**2).sum())
    return float(np.asarray(X, dtype=np.float64).var(axis=0).sum())


def control_cells(name: str, p, reserve: np.ndarray, seed: int):
    """The control's cells as the runner makes them (bench.tasks, experiment main): the `real`
    control fit on the control reserve, every other model on all training cells; fit with ``seed``,
    generate the test split's number of cells (unconditional) with ``seed + 1``."""
    cls = get_generator(name)
    train = p.train[reserve] if cls.uses_control_reserve else p.train
    with tempfile.TemporaryDirectory() as work:
        pipe = Pipeline(name, cls.params_for_profile("quick"), p.train, p.label_key, work_dir=work)
        return pipe.fit_generate(train, int(p.test.n_obs), seed)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--trees", type=int, default=1000)
    ap.add_argument("--protocols", default=",".join(PROTOCOLS))
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--normalize", default="none", help="the paper protocol's normalize option")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    seeds = [int(s) for s in args.seeds.split(",")]
    protocols = args.protocols.split(",")
    p = datasets.prepare("pbmc3k", n_top_genes=2000)
    labels = lambda a: a.obs[p.label_key].astype(str).to_numpy()  # noqa: E731
    rows = []
    for seed in seeds:
        reserve = control_reserve(labels(p.train), labels(p.test), seed)
        fit_cells = p.train[~reserve]
        generated = {c: control_cells(c, p, reserve, seed) for c in CONTROLS}
        for spec in protocols:
            t0 = time.monotonic()
            options = {"normalize": args.normalize} if spec.startswith("paper") else {}
            embedded = get_protocol(spec, **options).apply(fit_cells, p.test, generated, seed)
            t_protocol = time.monotonic() - t0
            record = {k: v for k, v in embedded.record.items() if k != "runs"}
            for control in CONTROLS:
                real, gen = embedded.pairs[control]
                t1 = time.monotonic()
                res = auc(real, gen, seed=seed, n_trees=args.trees, n_jobs=args.n_jobs)
                rows.append(
                    {
                        "seed": seed,
                        "protocol": spec,
                        "control": control,
                        "auc": res.auc,
                        "auc_fold_sd": res.auc_sd,
                        "n_cells_per_side": res.n_cells,
                        "n_features": int(real.shape[1]),
                        # total variance over the features of each side: integration corrects one
                        # object onto the other and shrinks its spread (docs/metrics.md)
                        "total_variance_real_test": total_variance(real),
                        "total_variance_control": total_variance(gen),
                        "protocol_seconds": round(t_protocol, 1),
                        "auc_seconds": round(time.monotonic() - t1, 1),
                        "record": record,
                    }
                )
                print(f"seed {seed} {spec:17s} {control:9s} AUC {res.auc:.3f} ± {res.auc_sd:.3f}", flush=True)
    table = {}
    for spec in protocols:
        for control in CONTROLS:
            vals = [r["auc"] for r in rows if r["protocol"] == spec and r["control"] == control]
            table[f"{spec} | {control}"] = {
                "mean": float(np.mean(vals)),
                "sd_over_seeds": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
                "per_seed": vals,
            }
    out = {
        "dataset": "pbmc3k",
        "preparation": "datasets.prepare('pbmc3k', n_top_genes=2000)",
        "n_train": int(p.train.n_obs),
        "n_test": int(p.test.n_obs),
        "seeds": seeds,
        "n_trees": args.trees,
        "folds": 5,
        "commit": commit,
        "python": platform.python_version(),
        "paper_normalize": args.normalize,
        "means": table,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
