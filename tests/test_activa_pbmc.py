"""ACTIVA on the bundled pbmc3k with the `quick` profile's schedule at 120 epochs (slow integration tests).

Gates: ACTINN's accuracy on the real test split >= 0.8, and >= 90 % of conditionally generated
cells classified as their requested type by an INDEPENDENT classifier (logistic regression on real
log-normalised training cells; ACTINN's own filter agrees with itself by construction), over a
request for every cell type.
"""

from __future__ import annotations

import pytest

from bench.api.generator import validate_output
from bench.evaluation import lognorm
from bench.generators.activa import ActivaGenerator
from tests.conftest import fit_generator


def pbmc3k_prepared(n_top_genes: int | None = 2000, cache_dir=None):
    """pbmc3k through the scGAN pipeline (filter genes < 3 cells, cells < 10 genes, normalise to
    20,000, stratified seeded 10 % test split, HVGs on train then re-normalised)."""
    import tempfile

    from bench.datasets import prepare

    cache_dir = cache_dir or tempfile.mkdtemp(prefix="activa-pbmc3k-")
    prep = prepare("pbmc3k", split_seed=0, n_top_genes=n_top_genes, cache_dir=cache_dir)
    return prep.train, prep.test


# The quick profile's schedule at its former length (120 epochs; the profile now runs 30, a smoke
# test in time): conditional generation is checked at a budget where ACTIVA tells the T-cell types
# apart. At the profile's 30 epochs CD8 T cells agree with the independent classifier for only 0.12
# of them (seed 0; overall 0.899), a finding about the budget (docs/tuning.md#the-quick-profile)
LONGER = {"classifier_epochs": 20, "num_cf": 5, "num_vae": 90, "epochs": 120}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    train, test = pbmc3k_prepared(cache_dir=tmp_path_factory.mktemp("data"))
    gen = ActivaGenerator(**{**ActivaGenerator.params_for_profile("quick"), **LONGER})
    res = fit_generator(gen, train, seed=0, device="cpu")
    return gen, res, train, test


@pytest.mark.slow
def test_actinn_accuracy_on_real_test_split(trained):
    gen, res, _, test = trained
    truth = test.obs["cell_type"].astype(str).to_numpy()
    acc = float((gen.classify(test.X) == truth).mean())
    print(f"\nACTINN test accuracy {acc:.3f}; fit {res.train_seconds:.1f} s, {res.epochs} epochs")
    assert acc >= 0.8


@pytest.mark.slow
def test_conditional_cells_match_independent_classifier(trained):
    from sklearn.linear_model import LogisticRegression

    gen, _, train, test = trained
    y_train = train.obs["cell_type"].astype(str).to_numpy()
    clf = LogisticRegression(max_iter=3000, C=0.1).fit(lognorm(train.X), y_train)
    # the independent classifier itself must be good on real cells, or the gate means nothing
    real_acc = clf.score(lognorm(test.X), test.obs["cell_type"].astype(str).to_numpy())
    assert real_acc >= 0.85
    # every type, shaped like the real test split (at least 10 cells of each, so the rare ones count)
    truth = test.obs["cell_type"].astype(str)
    request = {lab: max(10, int((truth == lab).sum())) for lab in gen.labels}
    out = gen.generate(request, seed=1)  # TaskFailed here if a type cannot be made
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
    agree = float((pred == want).mean())
    per_type = {k: round(float((pred[want == k] == k).mean()), 2) for k in request}
    print(f"\nindependent LR on real test {real_acc:.3f}; agreement {agree:.3f}; per type {per_type}")
    assert agree >= 0.9
    # each lineage with >= 100 training cells on its own; Dendritic (32) and Megakaryocytes (12) are
    # reported above but not gated per type (measured 0.46-0.64 and 0.87-1.0 over seeds 0-2)
    n_train = train.obs["cell_type"].astype(str).value_counts()
    for lab, frac in per_type.items():
        if n_train[lab] >= 100:
            assert frac >= 0.8, (lab, frac)
