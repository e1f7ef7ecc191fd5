"""The scaling curve: time and peak memory of each stage of a quick main task against the number of cells.

Stages (each timed with :func:`bench.timing.measure`: wall seconds and peak RSS above the stage's
start, children included), on a scale fixture (:mod:`bench.datasets.scale`) of N cells:

* ``prepare``: reading the file and the scGAN pipeline (filters, normalisation, split, HVGs),
  written to a fresh dataset cache, as ``bench run`` does the first time;
* ``eval setup``: the model-independent evaluation work (log-normalised cells, the PCA fit and
  projections, the DE genes);
* ``nb fit`` and ``nb generate`` (as many cells as the test split);
* every sample metric of the quick profile, with its quick options, on the ``nb`` cells;
* ``activa epoch``: one introspective epoch of ACTIVA (quick settings) on the training cells.

Each N runs in its own process (``python -m bench.scalecurve FILE``), so one size's memory does not
carry into the next. :func:`exponent` fits ``log(cost) = a + b log(N)`` over the sizes: ``b`` is the
empirical exponent (1: linear). Used by ``scripts/scaling-curve.py``; results in
``results/scaling/`` and docs/performance.md.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ACTIVA_EPOCH = {"classifier_epochs": 0, "num_cf": 1, "num_vae": 1, "epochs": 1, "budget": None}
LABEL_KEY = "cell_type"
N_TOP_GENES = 2000


def exponent(n: list[float], cost: list[float]) -> float:
    """Least-squares slope of log(cost) on log(n): the empirical scaling exponent (needs 2 sizes)."""
    n_arr, c_arr = np.asarray(n, dtype=float), np.asarray(cost, dtype=float)
    ok = (n_arr > 0) & (c_arr > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(n_arr[ok]), np.log(c_arr[ok]), 1)[0])


def measure_stages(
    path: str | Path, *, seed: int = 0, activa: bool = True, metrics: list[str] | None = None
) -> dict:
    """Time and peak memory of every stage on the fixture at ``path`` (module docstring)."""
    import torch

    from bench import datasets
    from bench.evaluation import EvalContext
    from bench.pipeline import Pipeline, score
    from bench.registry import available, get_generator, get_metric
    from bench.timing import measure

    stages: list[dict[str, Any]] = []

    def stage(name: str, fn):
        m = measure(fn)
        stages.append({"stage": name, "seconds": m.seconds, "peak_rss_mb": m.peak_rss_mb})
        print(f"  {name}: {m.seconds:.1f} s, +{m.peak_rss_mb:.0f} MB", file=sys.stderr, flush=True)
        return m.result

    with tempfile.TemporaryDirectory(prefix="scalecurve-") as tmp:
        data = stage(
            "prepare",
            lambda: datasets.prepare(str(path), label_key=LABEL_KEY, n_top_genes=N_TOP_GENES, cache_dir=tmp),
        )
        ctx = EvalContext(
            dataset=data.name, train=data.train, test=data.test, label_key=data.label_key, seed=seed
        )

        def setup():
            ctx.train_log, ctx.test_log, ctx.test_pcs, ctx.train_pcs  # noqa: B018 (lazy properties)
            ctx.de_genes()

        stage("eval setup", setup)
        work = Path(tmp) / "work"
        nb_cls = get_generator("nb")
        nb = Pipeline(nb_cls, nb_cls.params_for_profile("quick"), data.train, data.label_key, work_dir=work)
        fitted = stage("nb fit", lambda: nb.fit_model(data.train, seed))
        n = int(data.test.n_obs)
        generated = stage("nb generate", lambda: nb.generate_cells(fitted, n, seed=seed + 1))
        names = metrics if metrics is not None else sorted(available("metrics"))
        for name in names:
            metric = get_metric(name)
            if metric.kind != "sample":
                continue
            options = metric.options_for("quick")
            cells = generated
            stage(
                f"metric {name}", lambda m=metric, o=options, c=cells: score(m, ctx, c, seed=seed, options=o)
            )
        if activa:
            cls = get_generator("activa")
            act = Pipeline(
                cls, cls.params_for_profile("quick", ACTIVA_EPOCH), data.train, data.label_key, work_dir=work
            )
            stage("activa epoch", lambda: act.fit_model(data.train, seed))
        info = {
            "n_cells_file": int(data.info["n_cells_raw"]),
            "n_train": int(data.train.n_obs),
            "n_test": int(data.test.n_obs),
            "n_genes": int(data.train.n_vars),
            "torch_threads": torch.get_num_threads(),
        }
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KB; the process's whole life
    return {"file": str(path), **info, "process_peak_rss_mb": peak, "stages": stages, "finished": time.time()}


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.scalecurve FIXTURE [--warmup SMALL_FIXTURE] [--no-activa]``: one JSON line.

    ``--warmup``: run every stage once on a small fixture first and discard it, so that imports,
    numba compilation and first-call caches are not charged to the measured size."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.scalecurve")
    p.add_argument("fixture")
    p.add_argument("--warmup")
    p.add_argument("--no-activa", action="store_true")
    args = p.parse_args(argv)
    if args.warmup:
        print("warm-up:", file=sys.stderr)
        measure_stages(args.warmup, activa=not args.no_activa)
    print(json.dumps(measure_stages(args.fixture, activa=not args.no_activa)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
