"""Real-vs-synthetic random-forest classifier AUC (ACTIVA paper, section 5.2, Fig. 3)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold

from bench.metrics._utils import check_same_genes, equal_size


@dataclass
class AucResult:
    """``auc``: mean of the fold AUCs; ``auc_sd``: their sample standard deviation (ddof 1, like
    every sd in the tables; NaN for a single fold);
    ``fold_aucs``; ``roc``: one (fpr, tpr) pair per fold; ``n_cells``: cells per side."""

    auc: float
    auc_sd: float
    fold_aucs: list[float]
    roc: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    n_cells: int = 0
    # per fold: (true labels, predicted probability of "generated") on the held-out fold
    predictions: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


def default_n_jobs() -> int:
    """All cores the process may use (the forest result does not depend on n_jobs)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def make_forest(
    n_trees: int, seed: int, n_jobs: int | None = None, class_weight: str | None = None
) -> RandomForestClassifier:
    """The paper's classifier (section 5.2, after Marouf et al. 2020): ``n_trees`` trees, Gini
    impurity, ``max_features='sqrt'``, no depth limit (trees grow until leaves are pure, or hold
    fewer than two samples), bootstrap on (scikit-learn defaults otherwise)."""
    return RandomForestClassifier(
        n_estimators=n_trees,
        criterion="gini",
        max_features="sqrt",
        max_depth=None,
        min_samples_split=2,
        class_weight=class_weight,
        random_state=seed,
        n_jobs=default_n_jobs() if n_jobs is None else n_jobs,
    )


def _stack(real, fake):
    if sp.issparse(real) or sp.issparse(fake):
        return sp.vstack([sp.csr_matrix(real), sp.csr_matrix(fake)], format="csr", dtype=np.float32)
    return np.vstack([np.asarray(real, dtype=np.float32), np.asarray(fake, dtype=np.float32)])


def auc(
    real,
    fake,
    *,
    seed: int,
    n_trees: int = 1000,
    folds: int = 5,
    n_jobs: int | None = None,
    max_cells: int | None = None,
) -> AucResult:
    """Cross-validated AUC of a random forest that tells real cells from generated cells.

    Definition (ACTIVA paper, section 5.2; Marouf et al. 2020, Fig. 1e): label real cells 0 and
    generated cells 1, with equal numbers of each (the larger side is subsampled without
    replacement, seeded; both sides are capped at ``max_cells`` when set). Run ``folds``-fold
    stratified cross-validation (shuffled, seeded); in each fold fit the forest of
    :func:`make_forest` (``n_trees`` trees, Gini, ``max_features='sqrt'``, grown until leaves are
    pure) on the training folds and compute the ROC AUC of ``predict_proba`` on the held-out fold.
    An AUC of 0.5 means the classifier cannot tell the sides apart (ideal); 1.0 means perfectly
    separable, and so does 0.0 (the forest then systematically calls each side the other): models
    are ranked by |AUC - 0.5|.

    Parameters
    ----------
    real, fake
        Cells x features (dense or sparse), the same features on both sides: log-normalised genes
        (the paper) or 50 principal components.
    seed
        Seeds the subsample, the fold split and the forest.
    n_trees, folds
        1000 and 5 as in the paper.
    n_jobs
        Worker processes for the forest (``None``: all available cores); the result does not
        depend on it.
    max_cells
        Cap on cells per side (``None``: all).

    Returns
    -------
    AucResult
        Mean and standard deviation (ddof 1) of the fold AUCs, the fold AUCs and per-fold ROC curves.
    """
    check_same_genes(real, fake)
    real, fake = equal_size(real, fake, seed, max_cells)
    n = real.shape[0]
    if n < folds:
        raise ValueError(f"need at least {folds} cells per side for {folds}-fold CV, got {n}")
    X = _stack(real, fake)
    y = np.r_[np.zeros(n, dtype=int), np.ones(n, dtype=int)]
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    aucs: list[float] = []
    rocs: list[tuple[np.ndarray, np.ndarray]] = []
    preds: list[tuple[np.ndarray, np.ndarray]] = []
    for k, (tr, te) in enumerate(cv.split(np.zeros(len(y)), y)):
        clf = make_forest(n_trees, seed + k, n_jobs)
        clf.fit(X[tr], y[tr])
        score = clf.predict_proba(X[te])[:, 1]
        aucs.append(float(roc_auc_score(y[te], score)))
        fpr, tpr, _ = roc_curve(y[te], score)
        rocs.append((fpr.astype(np.float32), tpr.astype(np.float32)))
        preds.append((y[te], score))
    return AucResult(
        auc=float(np.mean(aucs)),
        auc_sd=float(np.std(aucs, ddof=1)) if len(aucs) > 1 else float("nan"),
        fold_aucs=aucs,
        roc=rocs,
        n_cells=n,
        predictions=preds,
    )
