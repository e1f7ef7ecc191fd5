"""Cost of the metric suite beyond the paper (issue 17) per model, pbmc3k in the quick profile.

Run: ``pytest tests/benchmarks/test_bench_suite.py --benchmark-enable -p no:cacheprovider -s``.
Data: ``bench.datasets.prepare("pbmc3k")`` with the quick profile's 2,000 HVGs (2,429 training /
271 test cells), the evaluation PCA warmed up (shared by every model of a run, not part of a model's
cost). Per model the suite scores the main cells (271 cells, unconditional) and the per-label cells
(the test set's counts per type), as a run does: energy, sinkhorn, prdc, memorisation, gene_stats,
per_type, de_recovery with their quick options. Measured: CPU seconds of the process (all threads,
``time.process_time``) and wall seconds, for the two controls (`real`: training cells, forests grow
to full depth, Sinkhorn needs the most iterations; `shuffled`: genes permuted) and the `nb` baseline.
Target: < 30 CPU-s per model.
"""

from __future__ import annotations

import time
import warnings

import pytest

from bench.api.generator import FitContext, bind_training_data, validate_output
from bench.evaluation import EvalContext
from bench.metrics import DE_RECOVERY, ENERGY, GENE_STATS, MEMORISATION, PER_TYPE, PRDC, SINKHORN

SUITE = (ENERGY, SINKHORN, PRDC, MEMORISATION, GENE_STATS, PER_TYPE, DE_RECOVERY)


@pytest.fixture(scope="module")
def data():
    from bench import datasets

    return datasets.prepare("pbmc3k", label_key=None, split_seed=0, test_fraction=0.1, n_top_genes=2000)


def generated_cells(data, model: str):
    from bench.generators.baselines import NegativeBinomial, RealControl, ShuffledControl

    gen = {"real": RealControl, "shuffled": ShuffledControl, "nb": NegativeBinomial}[model]()
    bind_training_data(gen, data.train, data.label_key)
    known = gen.labels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen.fit(data.train, FitContext(label_key=data.label_key, seed=0))
    per_label = {str(k): int(v) for k, v in data.test.obs[data.label_key].astype(str).value_counts().items()}
    out = []
    for request, seed in ((int(data.test.n_obs), 1), (per_label, 2)):
        cells = gen.generate(request, seed=seed)
        out.append(validate_output(gen, cells, var_names=gen.var_names, label_key=data.label_key,
                                   known_labels=known, requested=request))  # fmt: skip
    return out


@pytest.mark.parametrize("model", ["real", "shuffled", "nb"])
def test_bench_suite_per_model(benchmark, data, model):
    ctx = EvalContext("pbmc3k", data.train, data.test, data.label_key, profile="quick", seed=0)
    ctx.test_pcs, ctx.train_pcs, ctx.test_log  # noqa: B018 - shared by every model of a run
    main, per_label = generated_cells(data, model)
    seconds: dict[str, float] = {}

    def suite():
        ctx.cache.pop("_generated_transform", None)  # each model transforms its own cells
        for key in [k for k in ctx.shared if isinstance(k, tuple) and k[0] == "mmd_kxx"]:
            del ctx.shared[key]  # per-type MMD's real-real terms: computed once per dataset, count them
        cpu0 = time.process_time()
        for metric in SUITE:
            t = time.process_time()
            metric.func(ctx, per_label if metric.cells == "per-label" else main, seed=0,
                        **metric.options_for("quick"))  # fmt: skip
            seconds[metric.name] = time.process_time() - t
        return time.process_time() - cpu0

    cpu = benchmark.pedantic(suite, rounds=1, iterations=1)
    benchmark.extra_info.update(
        cpu_seconds=round(cpu, 2), **{f"cpu_{k}": round(v, 2) for k, v in seconds.items()}
    )
    print(f"\n{model}: suite {cpu:.1f} CPU-s; " + ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()))
    assert cpu < 30.0
