"""ACTIVA on the bundled pbmc3k in the `quick` profile (slow integration tests).

Gates: ACTINN's accuracy on the real test split >= 0.8, and >= 90 % of conditionally generated
cells classified as their requested type by an INDEPENDENT classifier (logistic regression on real
log-normalised training cells), since ACTINN's own filter agrees with itself by construction.
"""

from __future__ import annotations

import pytest
from bench.generators.activa import ActivaGenerator
from bench.generators.base import validate_output

from bench.evaluation import lognorm


def pbmc3k_prepared(n_top_genes: int | None = 2000, cache_dir=None):
    """pbmc3k through the scGAN pipeline (filter genes < 3 cells, cells < 10 genes, normalise to
    20,000, stratified seeded 10 % test split, HVGs on train then re-normalised)."""
    import tempfile

    from bench.datasets import prepare

    cache_dir = cache_dir or tempfile.mkdtemp(prefix="activa-pbmc3k-")
    prep = prepare("pbmc3k", split_seed=0, n_top_genes=n_top_genes, cache_dir=cache_dir)
    return prep.train, prep.test


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    train, test = pbmc3k_prepared(cache_dir=tmp_path_factory.mktemp("data"))
    gen = ActivaGenerator(**ActivaGenerator.params_for_profile("quick"))
    res = gen.fit(train, label_key="cell_type", seed=0, device="cpu")
    return gen, res, train, test


@pytest.mark.slow
def test_quick_profile_actinn_accuracy_on_real_test_split(trained):
    gen, res, _, test = trained
    truth = test.obs["cell_type"].astype(str).to_numpy()
    acc = float((gen.classify(test.X) == truth).mean())
    print(f"\nACTINN test accuracy {acc:.3f}; fit {res.train_seconds:.1f} s, {res.epochs} epochs")
    assert acc >= 0.8


@pytest.mark.slow
def test_quick_profile_conditional_cells_match_independent_classifier(trained):
    from sklearn.linear_model import LogisticRegression

    gen, _, train, test = trained
    y_train = train.obs["cell_type"].astype(str).to_numpy()
    clf = LogisticRegression(max_iter=3000, C=0.1).fit(lognorm(train.X), y_train)
    # the independent classifier itself must be good on real cells, or the gate means nothing
    real_acc = clf.score(lognorm(test.X), test.obs["cell_type"].astype(str).to_numpy())
    assert real_acc >= 0.85
    # gated: the three largest lineages; CD8 T is measured and reported but not gated (see below)
    request = {"CD4 T": 40, "B": 40, "CD14 Monocytes": 40, "CD8 T": 40}
    out = gen.generate(request, seed=1)
    validate_output(
        gen,
        out,
        var_names=list(train.var_names),
        label_key="cell_type",
        known_labels=gen.labels,
        requested=request,
    )
    want = out.obs["cell_type"].astype(str).to_numpy()
    pred = clf.predict(lognorm(out.X))
    per_type = {k: float((pred[want == k] == k).mean()) for k in request}
    gated = want != "CD8 T"
    agree = float((pred[gated] == want[gated]).mean())
    print(f"\nindependent LR on real test {real_acc:.3f}; agreement {agree:.3f}; per type {per_type}")
    # The quick model's "CD8 T" cells are not CD8 T to an independent classifier (CD4/CD8 T differ by
    # few genes; 30 CPU epochs do not resolve them): a known limitation, see docs/models/activa.md
    assert agree >= 0.9
