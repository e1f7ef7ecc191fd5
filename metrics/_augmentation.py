"""Rare-cell augmentation experiment (ACTIVA paper, section 5.5, Fig. 7; Marouf et al. 2020)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from sklearn.metrics import f1_score

from bench.api import Planned, TaskFailed, UserError
from bench.metrics._auc import make_forest

if TYPE_CHECKING:
    import anndata as ad

PAPER_FRACTIONS = (0.1, 0.05, 0.01, 0.005)
# the quick profile's (the README's main job): the two ends of the paper's range (ACTIVA paper section 5.5, Fig. 7), so a smoke test
# refits a conditional model twice instead of four times (the refits were half of the main job's
# time; docs/tuning.md#the-quick-profile); the smallest, which picks the rare class, is the paper's
QUICK_FRACTIONS = (0.1, 0.005)
# the default rare class keeps at least this many real training cells at the smallest fraction
MIN_RARE_CELLS = 5


def fraction_tag(fraction: float) -> str:
    """How a fraction appears in value names: 0.1 -> '0.1', 0.005 -> '0.005'."""
    return f"{float(fraction):g}"


def kept_rare_cells(n_rare: int, fraction: float) -> int:
    """Real rare training cells kept when ``n_rare`` are downsampled to ``fraction`` (:func:`downsample_rare`)."""
    return max(1, int(round(fraction * n_rare)))


def choose_rare_class(
    train_counts: dict[str, int],
    test_counts: dict[str, int],
    fractions: tuple[float, ...] = PAPER_FRACTIONS,
    *,
    min_cells: int = MIN_RARE_CELLS,
) -> tuple[str, tuple[float, ...], str]:
    """The default rare class of the augmentation experiment, and the fractions it runs at.

    Rule: the smallest class (by training cells, ties by name) with at least one test cell that
    keeps at least ``min_cells`` real training cells at the smallest fraction, so that every arm is
    trained on real cells of the class and F1 is not 0 by construction (at 1 % of pbmc3k's B cells,
    3 cells, every arm scored 0.000). With the paper's fractions that needs 1,000 training cells
    (0.5 % of 1,000 = 5); on pbmc3k only CD4 T qualifies. If no class qualifies: the largest class,
    with the fractions that keep fewer than ``min_cells`` of it dropped (the largest fraction always
    stays). Returns (class, fractions, the reason in words).
    """
    fractions = tuple(sorted({float(f) for f in fractions}, reverse=True))
    candidates = sorted((n, name) for name, n in train_counts.items() if test_counts.get(name, 0) > 0)
    if not candidates or not fractions:
        raise UserError("no class has both training and test cells", "check the dataset's labels and split")
    smallest = fractions[-1]
    for n, name in candidates:
        if kept_rare_cells(n, smallest) >= min_cells:
            why = (
                f"the smallest class keeping >= {min_cells} real training cells at {smallest:g} "
                f"({kept_rare_cells(n, smallest)} of {n})"
            )
            return name, fractions, why
    n, name = candidates[-1]
    kept = tuple(f for f in fractions if kept_rare_cells(n, f) >= min_cells) or fractions[:1]
    dropped = [f"{f:g}" for f in fractions if f not in kept]
    why = (
        f"no class keeps >= {min_cells} training cells at {smallest:g}: the largest class ({n} cells), "
        f"fraction(s) {', '.join(dropped)} dropped"
    )
    return name, kept, why


def plan_augmentation(
    labels: dict[str, dict[str, int]],
    options: dict,
    *,
    rare: str | None,
    chosen_by: str,
    clustered: bool = False,
) -> Planned:
    """The experiment's plan-time hook (``Metric.plan``): its rare class, the rule that chose it and
    its fractions (largest first). ``rare``: the user's or the dataset's choice, kept as given
    (``chosen_by`` says whose; with a note for a fraction that keeps fewer than MIN_RARE_CELLS real
    cells); None: the rule of :func:`choose_rare_class`. ``labels``: training and test label counts;
    ``clustered``: the labels are clusters the dataset stage computed."""
    fractions = tuple(sorted({float(f) for f in options["fractions"]}, reverse=True))
    notes: list[str] = []
    why = chosen_by
    if rare is None:
        rare, fractions, why = choose_rare_class(labels["train"], labels["test"], fractions)
        if clustered:
            why += "; a Leiden cluster, see the labels line"
    else:
        n = int(labels["train"].get(rare, 0))
        few = [
            f"{f:g} keeps {kept_rare_cells(n, f)}"
            for f in fractions
            if kept_rare_cells(n, f) < MIN_RARE_CELLS
        ]
        if few:
            notes.append(
                f"augmentation: rare class '{rare}' has {n} training cells; fraction {', '.join(few)} "
                f"(< {MIN_RARE_CELLS}: F1 near 0 by construction)"
            )
    return Planned(
        options={**options, "fractions": fractions},
        label=rare,
        header=f"augmentation: rare class '{rare}' ({why})",
        notes=tuple(notes),
    )


def downsample_rare(labels, rare: str, fraction: float, *, seed: int) -> np.ndarray:
    """Indices (sorted) of the cells kept when the ``rare`` class is downsampled to ``fraction``.

    Every cell of the other classes is kept; ``max(1, round(fraction * n_rare))`` rare cells are
    drawn without replacement with ``numpy.random.default_rng(seed)``.
    """
    labels = np.asarray(labels).astype(str)
    if not 0 < fraction <= 1:
        raise UserError(f"augmentation fraction {fraction} is not in (0, 1]", "use fractions like 0.1, 0.01")
    rare_idx = np.flatnonzero(labels == str(rare))
    if len(rare_idx) == 0:
        raise UserError(f"rare class {rare!r} has no training cells", "pick a class present in the data")
    n_keep = kept_rare_cells(len(rare_idx), fraction)
    rng = np.random.default_rng(seed)
    keep = rng.choice(rare_idx, size=n_keep, replace=False)
    return np.sort(np.r_[np.flatnonzero(labels != str(rare)), keep])


def _vstack(blocks):
    if any(sp.issparse(b) for b in blocks):
        return sp.vstack([sp.csr_matrix(b) for b in blocks], format="csr", dtype=np.float32)
    return np.vstack([np.asarray(b, dtype=np.float32) for b in blocks])


def rare_f1(
    X_train, is_rare_train, X_test, is_rare_test, *, seed: int, n_trees: int = 1000, n_jobs=None
) -> float:
    """F1 of the rare class on the test cells for a rare-vs-rest random forest.

    The forest is the one of section 5.2 (:func:`bench.metrics._auc.make_forest`) plus
    ``class_weight='balanced'`` to account for the class imbalance, as Marouf et al. did.
    """
    clf = make_forest(n_trees, seed, n_jobs, class_weight="balanced")
    clf.fit(X_train, np.asarray(is_rare_train, dtype=int))
    pred = clf.predict(X_test)
    return float(f1_score(np.asarray(is_rare_test, dtype=int), pred, pos_label=1, zero_division=0.0))


@dataclass
class AugmentationResult:
    """``values``: one per fraction and arm (names in :func:`augmentation`); ``params``: each value's
    parameters as data: ``{"fraction": f, "cell_type": rare}`` plus ``"condition"`` (the arm:
    ``real``, ``oversampled``, ``augmented``, ``gain``) for the F1 values."""

    values: dict[str, float]
    info: dict[str, object] = field(default_factory=dict)
    params: dict[str, dict[str, object]] = field(default_factory=dict)


def value_params(fraction: float, rare: str, condition: str | None = None) -> dict[str, object]:
    """The parameters stored with a value of the experiment (:class:`AugmentationResult`)."""
    out: dict[str, object] = {"fraction": float(fraction), "cell_type": str(rare)}
    if condition is not None:
        out["condition"] = condition
    return out


def augmentation(
    train_X,
    train_labels,
    test_X,
    test_labels,
    rare: str,
    generate: Callable[[np.ndarray, float], object],
    *,
    seed: int,
    fractions: tuple[float, ...] = PAPER_FRACTIONS,
    n_trees: int = 1000,
    n_jobs: int | None = None,
    n_oversample: int | None = None,
    shared: Callable[[tuple, Callable[[], float]], float] | None = None,
) -> AugmentationResult:
    """Does augmenting a downsampled rare class with generated cells improve its classification?

    Protocol (ACTIVA paper section 5.5 / Fig. 7, after Marouf et al. 2020, Fig. 5): for every
    ``fraction``, keep all training cells of the other classes and a seeded random ``fraction`` of
    the ``rare`` class (at least one cell, :func:`downsample_rare`). ``generate(kept_indices,
    fraction)`` fits a generator on those cells and returns generated *rare* cells as features
    (same space as ``train_X``). Then train the balanced rare-vs-rest forest of :func:`rare_f1` on

    (a) ``real``: the downsampled real cells;
    (b) ``oversampled``: (a) plus as many rare cells as (c) adds, drawn with replacement from the
        kept real rare cells (seeded) -- the naive baseline augmentation must beat;
    (c) ``augmented``: (a) plus the generated cells, labelled rare;

    and report the F1 of the rare class on the held-out real test cells. (a) and (b) do not depend
    on the generator: ``shared(key, compute)`` (the adapter passes the run's shared work) returns a
    stored F1 for the key or computes and stores it, so every model of a run reuses them. Values
    per fraction f:
    ``f1_real@f``, ``f1_oversampled@f``, ``f1_augmented@f``, ``f1_gain@f`` (= augmented - real)
    and ``n_rare_train@f`` (real rare cells kept).
    """
    train_labels = np.asarray(train_labels).astype(str)
    is_rare_test = np.asarray(test_labels).astype(str) == str(rare)
    if not is_rare_test.any():
        raise UserError(f"rare class {rare!r} has no test cells", "pick a class present in the test split")
    values: dict[str, float] = {}
    sizes: dict[str, int] = {}
    failures: dict[str, str] = {}

    def once(key: tuple, compute: Callable[[], float]) -> float:
        full = ("arm", str(rare), int(seed), int(n_trees), *key)
        return float(shared(full, compute)) if shared is not None else compute()

    def f1_with(X_kept, y_kept, extra_rare):
        """Rare-class F1 of the forest on the downsampled real cells plus extra cells labelled rare."""
        y = np.r_[y_kept, np.ones(extra_rare.shape[0], dtype=bool)]
        return rare_f1(
            _vstack([X_kept, extra_rare]), y, test_X, is_rare_test, seed=seed, n_trees=n_trees, n_jobs=n_jobs
        )

    for k, fraction in enumerate(fractions):
        tag = fraction_tag(fraction)
        kept = downsample_rare(train_labels, rare, fraction, seed=seed + k)
        X_kept = train_X[kept]
        y_kept = train_labels[kept] == str(rare)
        n_rare = int(y_kept.sum())
        f_real = once(
            ("real", tag, k),
            partial(rare_f1, X_kept, y_kept, test_X, is_rare_test, seed=seed, n_trees=n_trees, n_jobs=n_jobs),
        )
        values[f"f1_real@{tag}"] = f_real
        values[f"n_rare_train@{tag}"] = float(n_rare)
        try:
            fake = generate(kept, fraction)
            if int(fake.shape[0]) == 0:
                raise TaskFailed(f"augmentation@{tag}: the generator returned no rare cells")
        except TaskFailed as exc:
            # a generator that cannot make the rare class from so few cells is a result, not a
            # crash: the fraction reports n/a for the generated arm and says why
            failures[tag] = str(exc)
            fake = None
        n_fake = int(fake.shape[0]) if fake is not None else int(n_oversample or 0)
        if n_fake == 0:  # nothing to oversample to: only the real-only arm is defined
            for arm in ("oversampled", "augmented", "gain"):
                values[f"f1_{arm}@{tag}"] = float("nan")
            continue
        rng = np.random.default_rng(seed + 1000 + k)
        over = rng.choice(np.flatnonzero(y_kept), size=n_fake, replace=True)
        values[f"f1_oversampled@{tag}"] = once(
            ("oversampled", tag, k, n_fake), partial(f1_with, X_kept, y_kept, X_kept[over])
        )
        if fake is None:  # the generator failed at this fraction: its arms are n/a
            values[f"f1_augmented@{tag}"] = values[f"f1_gain@{tag}"] = float("nan")
            continue
        f_aug = f1_with(X_kept, y_kept, fake)
        values[f"f1_augmented@{tag}"] = f_aug
        values[f"f1_gain@{tag}"] = f_aug - f_real
        sizes[tag] = n_fake
    info = {"n_generated": sizes, "rare_class": str(rare)}
    if failures:
        info["generation_failed"] = failures
    params = {}
    for fraction in fractions:
        tag = fraction_tag(fraction)
        params[f"n_rare_train@{tag}"] = value_params(fraction, rare)
        for arm in ("real", "oversampled", "augmented", "gain"):
            params[f"f1_{arm}@{tag}"] = value_params(fraction, rare, arm)
    return AugmentationResult(
        values=values, info=info, params={k: p for k, p in params.items() if k in values}
    )


def rare_class_of(ctx, fractions: tuple[float, ...] = PAPER_FRACTIONS) -> tuple[str, str]:
    """The rare class: ``ctx.rare_class`` (the runner sets it) or, when unset, :func:`choose_rare_class`.
    Returns (class, how it was chosen)."""
    if ctx.rare_class is not None:
        return str(ctx.rare_class), "dataset/run spec"
    counts = {}
    for which in ("train", "test"):
        names, n = np.unique(ctx.labels(which), return_counts=True)
        counts[which] = {str(k): int(v) for k, v in zip(names, n, strict=True)}
    rare, _, why = choose_rare_class(counts["train"], counts["test"], fractions)
    return rare, why


def run_augmentation(
    ctx,
    fit_generate,
    *,
    seed: int,
    fractions=PAPER_FRACTIONS,
    n_generated: int = 1500,
    n_trees: int = 1000,
    space: str = "genes",
    n_jobs: int | None = None,
):
    """Metric adapter: the experiment on an :class:`~bench.evaluation.EvalContext`."""
    from bench.api import MetricOutput
    from bench.metrics._utils import check_space

    check_space(space)
    fractions = tuple(float(f) for f in fractions)
    rare, how = rare_class_of(ctx, fractions)
    train_X = ctx.train_log if space == "genes" else ctx.train_pcs
    test_X = ctx.test_log if space == "genes" else ctx.test_pcs
    filter_share: dict[float, float] = {}

    def generate(kept: np.ndarray, fraction: float):
        subset: ad.AnnData = ctx.train[kept].copy()
        out = fit_generate(subset, {rare: int(n_generated)}, seed)
        fill = (out.uns.get("scgenbench") or {}).get("conditional_fill", {}).get(rare)
        if fill:  # the model's own filter (ACTIVA's classifier) and its fallbacks
            filter_share[fraction] = fill["filter"] / max(sum(fill.values()), 1)
        if ctx.label_key in out.obs:
            is_rare = out.obs[ctx.label_key].astype(str).to_numpy() == rare
            out = out[is_rare]
        X_log, pcs = ctx.transform_generated(out)
        return X_log if space == "genes" else pcs

    res = augmentation(
        train_X,
        ctx.labels("train"),
        test_X,
        ctx.labels("test"),
        rare,
        generate,
        seed=seed,
        fractions=fractions,
        n_trees=int(n_trees),
        n_jobs=n_jobs,
        n_oversample=int(n_generated),
        shared=lambda key, compute: ctx.shared_for("augmentation")((key[0], space, *key[1:]), compute),
    )
    values, params = dict(res.values), dict(res.params)
    for fraction, share in filter_share.items():  # informational: the share of cells that passed the filter
        values[f"filter_share@{fraction_tag(fraction)}"] = share
        params[f"filter_share@{fraction_tag(fraction)}"] = value_params(fraction, rare)
    info = {**res.info, "rare_class_source": how, "space": space, "n_trees": int(n_trees)}
    info["fractions"] = list(fractions)
    return MetricOutput(values=values, info=info, params=params)
