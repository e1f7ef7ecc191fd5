"""The paper's metrics and experiments (ACTIVA paper, section 5), as pure functions and as
:class:`~bench.api.metric.Metric` plugins for the runner.

Pure functions (arrays + seed in, numbers out; see each docstring for definition and sources):
:func:`auc`, :func:`mmd`, :func:`correlation_discrepancy`, :func:`mean_corr`,
:func:`augmentation`, :func:`timing` (reports the runner's measurements, see :mod:`bench.timing`).

Metric plugins (entry-point group ``bench.metrics``): ``MEAN_CORR``, ``AUC``, ``MMD``, ``CD``,
``AUGMENTATION``, ``TIMING``.

The metric suite beyond the paper (docs/metrics.md, "Beyond the paper"): :func:`energy_distance`,
:func:`sinkhorn_w2`, :func:`prdc`, :func:`per_type`, :func:`memorisation`, :func:`de_recovery`,
:func:`gene_stats`, with the plugins ``ENERGY``, ``SINKHORN``, ``PRDC``, ``PER_TYPE``,
``MEMORISATION``, ``DE_RECOVERY``, ``GENE_STATS``. Their adapters take an :class:`~bench.evaluation.EvalContext` and
the generated AnnData (in the generator's output scale, recorded in
``uns['scgenbench']['output_scale']``) and apply the evaluation contract: library-size 20,000 +
log1p for both sides, PCA(50) fit on the real training cells (the paper's metrics' adapters:
``_adapters.py``). Each Metric declares what the core reads (docs/architecture.md, "Metrics that
describe themselves"): its report figures, drawn by the package ``figures`` (outside the scoring hash), its
paper-shaped tables, flags, plan-time hook and speed probe.
"""

from __future__ import annotations

from bench.api import HARDWARE_VALUES, INTEGER_1, INTEGER_2, FigureSpec, Metric, MetricOutput, TableSpec
from bench.metrics._adapters import score_auc, score_cd, score_mean_corr, score_mmd, score_timing
from bench.metrics._auc import AucResult, auc, make_forest
from bench.metrics._augmentation import (
    MIN_RARE_CELLS,
    PAPER_FRACTIONS,
    QUICK_FRACTIONS,
    AugmentationResult,
    augmentation,
    choose_rare_class,
    downsample_rare,
    fraction_tag,
    kept_rare_cells,
    plan_augmentation,
    rare_f1,
    run_augmentation,
)
from bench.metrics._correlation import (
    DE_METHODS,
    CdResult,
    cd_from_corr,
    correlation_discrepancy,
    pearson_matrix,
    top_de_genes,
)
from bench.metrics._de_recovery import DE_RECOVERY, DeRecoveryResult, de_recovery, de_scores, top_genes
from bench.metrics._energy import ENERGY, EnergyResult, energy_distance
from bench.metrics._gene_stats import (
    GENE_STATS,
    GeneStatsResult,
    concordance,
    gene_stats,
    gene_variances,
    zero_fractions,
)
from bench.metrics._mean_corr import mean_corr
from bench.metrics._memorisation import MEMORISATION, MemorisationResult, memorisation
from bench.metrics._mmd import ESTIMATORS, MmdResult, median_nn_distance, mmd, mmd_from_v1, mmd_speed_probe
from bench.metrics._per_type import PER_TYPE, PER_TYPE_METRICS, PerTypeResult, per_type
from bench.metrics._prdc import PRDC, PrdcResult, prdc
from bench.metrics._sinkhorn import SINKHORN, SinkhornResult, median_distance, sinkhorn_w2
from bench.metrics._timing import timing
from bench.metrics._utils import EVERY_PROTOCOL, QUICK_MAX_CELLS, SPACES, equal_size
from bench.metrics.figures.paper import draw_augmentation, draw_corr, draw_roc, draw_timing

__all__ = [
    "AUC",
    "AUGMENTATION",
    "CD",
    "DE_RECOVERY",
    "ENERGY",
    "GENE_STATS",
    "MEAN_CORR",
    "MEMORISATION",
    "MIN_RARE_CELLS",
    "MMD",
    "PAPER_FRACTIONS",
    "QUICK_FRACTIONS",
    "PER_TYPE",
    "PER_TYPE_METRICS",
    "PRDC",
    "QUICK_MAX_CELLS",
    "SINKHORN",
    "TIMING",
    "AucResult",
    "AugmentationResult",
    "CdResult",
    "DeRecoveryResult",
    "EnergyResult",
    "GeneStatsResult",
    "MemorisationResult",
    "Metric",
    "MetricOutput",
    "MmdResult",
    "PerTypeResult",
    "PrdcResult",
    "SinkhornResult",
    "auc",
    "augmentation",
    "cd_from_corr",
    "choose_rare_class",
    "concordance",
    "correlation_discrepancy",
    "de_recovery",
    "de_scores",
    "downsample_rare",
    "energy_distance",
    "equal_size",
    "gene_stats",
    "gene_variances",
    "kept_rare_cells",
    "make_forest",
    "mean_corr",
    "median_distance",
    "median_nn_distance",
    "memorisation",
    "mmd",
    "pearson_matrix",
    "per_type",
    "prdc",
    "rare_f1",
    "sinkhorn_w2",
    "timing",
    "top_de_genes",
    "top_genes",
    "zero_fractions",
]


# -- the plugins ----------------------------------------------------------------------------------
MEAN_CORR = Metric(
    name="mean_corr",
    measures="structure",
    func=score_mean_corr,
    directions={"mean_corr": "higher"},
    description="Pearson correlation of per-gene mean log-expression, real test vs generated",
    reference="standard sanity score (scGAN-lineage mean-profile comparison)",
    # the shuffled negative control keeps every gene's marginal: it is not built to fail this
    not_scaled=("mean_corr",),
    snapshot={},
)

AUC = Metric(
    name="auc",
    measures="realism",
    func=score_auc,
    # 0.5 is ideal (0.3 is as bad as 0.7); auc_sd, the spread over CV folds, is information
    directions={"auc": "target"},
    targets={"auc": 0.5},
    description="cross-validated AUC of a random forest separating real test from generated cells (0.5 ideal)",
    reference="ACTIVA paper section 5.2, Fig. 3; Marouf et al. 2020",
    options={"space": "genes", "n_trees": 1000, "folds": 5, "n_jobs": None, "max_cells": None},
    choices={"space": SPACES},
    bounds={"n_trees": INTEGER_1, "folds": INTEGER_2, "max_cells": INTEGER_2},
    # 5 x 1000 fully grown trees on all genes take ~40-60 s on 2 cores for pbmc3k; the quick
    # profile (CPU / CI) keeps the protocol with 200 trees (~8-16 s) and at most 10,000 cells a side
    # (binds above ~100k cells; validated at 68k cells: docs/performance.md)
    profiles={"quick": {"n_trees": 200, "max_cells": QUICK_MAX_CELLS}},
    not_scaled=("auc_sd",),
    headline={"auc": "AUC"},
    tables=(
        TableSpec(
            "Fig. 3 — real-vs-synthetic RF AUC (0.5 is ideal; ranked by |AUC − 0.5|)", ("auc",), order=10
        ),
    ),
    protocols=EVERY_PROTOCOL,
    # a snapshot's forest: 100 trees on the 50 PCs (~1 s), against the task's 1,000 on the genes
    snapshot={"space": "pca50", "n_trees": 100},
    figures=(
        FigureSpec(
            "roc",
            "Real-vs-synthetic classifier ROC (Fig. 3)",
            "Each fold's ROC curve (light) of the {folds}-fold cross-validated random forest ({n_trees} trees; "
            "features: {space}), the mean over folds and seeds (dark) with ± 1 sd band; the red dashed line is "
            "chance. The AUC in the title is the table's mean ± sd over seeds.",
            draw=draw_roc,
            part="paper",
            order=30,
            missing="no ROC curves stored (auc)",
            alt="ROC",
        ),
    ),
)

MMD = Metric(
    name="mmd",
    measures="realism",
    func=score_mmd,
    directions={"mmd": "lower"},
    description="unbiased MMD^2, Gaussian kernel summed over scales med/2, med, 2 med, on 50 PCs",
    reference="ACTIVA paper section 5.3, Table 2; Gretton et al. 2012; Marouf et al. 2020",
    options={
        "max_cells": None,
        "block_size": 4096,
        "scale_factors": (0.5, 1.0, 2.0),
        "dtype": "float32",
        "estimator": "unbiased",
    },
    choices={"estimator": ESTIMATORS, "dtype": ("float32", "float64")},
    bounds={"max_cells": INTEGER_2, "block_size": INTEGER_1, "scale_factors": "(0, inf)"},
    # quadratic in cells: the quick profile caps each side (binds above ~100k cells)
    profiles={"quick": {"max_cells": QUICK_MAX_CELLS}},
    headline={"mmd": "MMD"},
    tables=(TableSpec("Table 2 — MMD to the test set", ("mmd",), order=20),),
    protocols=EVERY_PROTOCOL,
    snapshot={},
    convergence="mmd",
    from_v1=mmd_from_v1,
    speed_probe=mmd_speed_probe,
)

CD = Metric(
    name="correlation_discrepancy",
    measures="structure",
    func=score_cd,
    directions={"cd": "lower"},
    description="max column 1-norm of G - R over top-5 DE genes per cluster (Pearson)",
    reference="ACTIVA paper section 5.3, Eq. (6), Fig. 5",
    # method: scanpy's DE test that picks the genes (recorded with the values in summary.json)
    options={"n_genes": 5, "method": "wilcoxon"},
    choices={"method": DE_METHODS},
    bounds={"n_genes": INTEGER_1},
    headline={"cd": "CD"},
    tables=(
        TableSpec(
            "Fig. 5 — correlation discrepancy of DE genes", ("cd",), suffix="({method} test)", order=30
        ),
    ),
    snapshot={},
    figures=(
        FigureSpec(
            "correlation",
            "Correlation of DE genes (Fig. 5)",
            "Pearson correlation of the top {n_genes} DE genes per cluster ({method} test on the real "
            "training cells): generated cells below the diagonal, real test cells above. Symmetric means "
            "the generator kept the gene-gene structure; CD is the task's correlation discrepancy (Eq. 6).",
            draw=draw_corr,
            part="paper",
            order=40,
            missing="no correlation matrices stored (correlation_discrepancy)",
            alt="correlation",
        ),
    ),
)


def _augmentation_directions() -> dict[str, str]:
    out: dict[str, str] = {}
    for f in sorted(PAPER_FRACTIONS, reverse=True):
        tag = fraction_tag(f)
        out[f"f1_real@{tag}"] = "higher"
        out[f"f1_oversampled@{tag}"] = "higher"
        out[f"f1_augmented@{tag}"] = "higher"
        out[f"f1_gain@{tag}"] = "higher"
    return out


AUGMENTATION = Metric(
    name="augmentation",
    measures="rare-cell augmentation",
    func=run_augmentation,
    kind="experiment",
    directions=_augmentation_directions(),
    description="rare-class F1 of a balanced RF: downsampled real vs oversampled vs generator-augmented",
    reference="ACTIVA paper section 5.5, Fig. 7; Marouf et al. 2020",
    requires_conditional=True,
    options={
        "fractions": PAPER_FRACTIONS,
        "n_generated": 1500,
        "n_trees": 1000,
        "space": "genes",
        "n_jobs": None,
    },
    choices={"space": SPACES},
    bounds={"fractions": "(0, 1]", "n_generated": INTEGER_1, "n_trees": INTEGER_1},
    profiles={"quick": {"n_trees": 200, "fractions": QUICK_FRACTIONS}},
    experiment="augmentation",
    # --fractions sets the fractions; at plan time the rare class is chosen and the fractions kept
    flags={"fractions": "fractions"},
    plan=plan_augmentation,
    # f1_real / f1_oversampled do not depend on the generator; f1_gain scales exactly as f1_augmented
    not_scaled=("f1_real@", "f1_oversampled@", "f1_gain@"),
    headline={"f1_augmented@": "aug F1"},
    tables=(
        TableSpec(
            "Fig. 7 — rare-class F1 per training fraction (arms over the seeds they share)",
            arms=("real", "oversampled", "augmented"),
            order=50,
            # the console's compact shape: the arms that do not depend on the generator once
            short={"real": "real cells only", "oversampled": "+ oversampled real"},
        ),
    ),
    figures=(
        FigureSpec(
            "augmentation",
            "Rare-class F1 with augmentation (Fig. 7)",
            "Rare-class F1 of a balanced random forest ({n_trees} trees; features: {space}) trained on the "
            "downsampled real data, on it with the rare class oversampled, and with {n_generated} generated "
            "rare cells added; mean over seeds, bars show the range (as Fig. 7).",
            draw=draw_augmentation,
            part="paper",
            order=50,
            missing="no augmentation experiment in this run (conditional models only)",
            alt="augmentation",
        ),
    ),
)

TIMING = Metric(
    name="timing",
    measures="cost",
    func=score_timing,
    kind="fit",
    directions={
        "train_seconds": "lower",
        "fit_wall_seconds": "lower",
        "generate_seconds_per_100k": "lower",
        "generate_wall_seconds_per_100k": "lower",
        "peak_rss_mb": "lower",
        "peak_gpu_mb": "lower",
    },
    description="training time (the model's own and the fit's wall time), steps and cells seen, "
    "peak memory increase during fit, generation time per 100K cells",
    reference="ACTIVA paper section 5.1, Table 1",
    options={"n_cells": 100_000},
    bounds={"n_cells": INTEGER_1},
    # generate() is timed in chunks of 10,000 cells (bench.timing), so 10,000 cells is one chunk of the
    # paper's 100,000, scaled x10; the paper profile times all ten. At standard, ten chunks would cost
    # scDiffusion's 100-step sampler ~15 minutes of one CPU thread per seed (its denoiser: 0.88 s per
    # pass over 10,000 cells), three times its fit (issue 30)
    profiles={"quick": {"n_cells": 10_000}, "standard": {"n_cells": 10_000}},
    not_scaled=HARDWARE_VALUES,
    headline={"train_seconds": "train s"},
    tables=(
        TableSpec(
            "Table 1 — training and generation time",
            HARDWARE_VALUES,
            order=40,
            # the console's compact shape (the headline holds Fig. 3, Table 2 and Fig. 5 as columns)
            short={
                "train_seconds": "train s",
                "generate_seconds_per_100k": "gen s/100k",
                "peak_rss_mb": "peak MB",
                "peak_gpu_mb": "GPU MB",
            },
        ),
    ),
    figures=(
        FigureSpec(
            "timing",
            "Training and generation time (Table 1)",
            "Mean ± sd over seeds of the training wall time and the generation time, measured on "
            "{n_cells:,} cells and scaled to 100,000 cells (log axis when the models differ by more than 100x).",
            draw=draw_timing,
            part="paper",
            order=60,
            missing="no timing values in this run",
            alt="timing",
        ),
    ),
)
