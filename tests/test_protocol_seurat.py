"""The ``paper`` protocol for real: Seurat 4.3 in R in its local image (scripts/ci/seurat-image.sh),
run sandboxed on a pbmc3k subset. Skips without a Docker engine or without the image's base; FAILS
instead when BENCH_REQUIRE_DOCKER=1 (CI builds the base with `bash scripts/setup.sh --services`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from bench.api.errors import UserError
from bench.generators.baselines import permute_columns
from bench.protocols import get_protocol
from bench.protocols import seurat as S

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PBMC = Path(__file__).resolve().parents[1] / "datasets" / "data" / "pbmc3k.h5ad"


def _unavailable(why: str):
    if os.environ.get("BENCH_REQUIRE_DOCKER") == "1":
        pytest.fail(f"the paper protocol's image is required (BENCH_REQUIRE_DOCKER=1): {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def image():
    from bench.generators.container import docker_client

    client = docker_client()
    if client is None:
        _unavailable("no Docker engine answers")
    try:
        return S.build_image(client, progress=False)
    except UserError as exc:
        _unavailable(str(exc))


def cells(X, genes, scale="counts") -> ad.AnnData:
    a = ad.AnnData(X=sp.csr_matrix(X, dtype=np.float32))
    a.var_names = genes
    a.uns["scgenbench"] = {"output_scale": scale}
    return a


@pytest.fixture(scope="module")
def pbmc():
    """450 pbmc3k cells x their 500 most expressed genes: 150 real test cells (library size 20,000),
    and three 'models': a copy of the test cells, 150 other real cells, 150 cells with every gene
    permuted across cells (the shuffled control)."""
    a = ad.read_h5ad(PBMC)[:450]
    X = a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X)
    top = np.sort(np.argsort(-X.sum(0), kind="stable")[:500])
    X, genes = X[:, top].astype(np.float32), list(a.var_names[top].astype(str))
    test = cells(S.library_size_cells(cells(X[:150], genes)).toarray(), genes, "library-size-20000")
    generated = {
        "copy": cells(X[:150], genes),
        "other": cells(X[150:300], genes),
        "shuffled": cells(permute_columns(X[300:450], np.random.default_rng(0)).toarray(), genes),
    }
    return test, generated


@pytest.fixture(scope="module")
def joint(image, pbmc, tmp_path_factory):
    test, generated = pbmc
    work = tmp_path_factory.mktemp("paper-joint")
    return work, get_protocol("paper:joint", image=image, work_dir=work).apply(test, test, generated, seed=0)


def test_joint_gives_50_pcs_per_cell_and_records_seurat(joint, pbmc):
    _, e = joint
    test, generated = pbmc
    assert e.protocol == "paper:joint"
    for model, c in generated.items():
        real, gen = e.pairs[model]
        assert real.shape == (test.n_obs, 50) and gen.shape == (c.n_obs, 50)
        assert np.isfinite(real).all() and np.isfinite(gen).all()
    assert e.real("copy") is e.real("other") is e.real("shuffled")  # one integration of everything
    assert e.record["seurat"].startswith("4.3.")
    assert e.record["n_pcs"] == 50 and e.record["grouping"] == "joint"
    assert e.record["normalize"] == "none"
    assert e.record["n_integration_features"] == 500  # 3,000 asked, 500 genes here
    (run,) = e.record["runs"]
    assert run["models"] == ["copy", "other", "shuffled"]
    assert run["nfeatures"] == "3000" and run["anchor_features"] == "3000" and run["dims"] == "30"
    assert run["k_weight"] == "100" and run["k_filter"] == "150"  # 200 lowered to the smallest object


def test_joint_places_a_copy_of_the_real_cells_on_them(joint):
    """Known answer: each cell of the copy lands nearest its own original among the real cells, far
    closer to it than real cells are to each other. (Not on it: integration moves the copy's cells
    too, anchors pair a cell with up to five neighbours; and it pulls every object's centroid
    together, the shuffled cells' included, so centroids are no known answer here.)"""
    from scipy.spatial.distance import cdist

    _, e = joint
    d = cdist(e.generated("copy"), e.real("copy"))
    assert np.array_equal(d.argmin(axis=1), np.arange(d.shape[0]))
    others = d[~np.eye(d.shape[0], dtype=bool)]
    assert np.median(np.diag(d)) < 0.4 * np.median(others)


def test_the_container_ran_in_the_sandbox(joint):
    work, _ = joint
    log = (work / "group0" / "container.log").read_text()
    command = log.splitlines()[0]
    for flag in ("--network none", "--cap-drop ALL", "--read-only", "--security-opt no-new-privileges"):
        assert flag in command
    assert "--user 0:0" not in command and "--pids-limit" in command and "--memory 8g" in command
    assert "/input:/work/input:ro" in command
    assert "paper protocol: Seurat 4.3" in log


def test_pairwise_integrates_one_model_at_a_time(image, pbmc, joint):
    test, generated = pbmc
    two = {m: generated[m] for m in ("other", "shuffled")}
    pair = get_protocol("paper:pairwise", image=image).apply(test, test, two, seed=0)
    assert pair.protocol == "paper:pairwise"
    assert [r["models"] for r in pair.record["runs"]] == [["other"], ["shuffled"]]
    for model, c in two.items():
        assert pair.real(model).shape == (test.n_obs, 50)
        assert pair.generated(model).shape == (c.n_obs, 50)
    assert not np.allclose(pair.real("other"), pair.real("shuffled"))  # the real cells, per pair
    # a model's pairwise cells do not depend on the other models; a joint run with it alone is the same
    alone = get_protocol("paper:joint", image=image).apply(test, test, {"other": generated["other"]}, seed=0)
    np.testing.assert_allclose(alone.generated("other"), pair.generated("other"), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(alone.real("other"), pair.real("other"), rtol=1e-5, atol=1e-4)
    # while joint integration moves it when other models join
    _, e = joint
    assert not np.allclose(e.generated("other"), pair.generated("other"), atol=1e-2)


def test_bench_run_scores_the_paper_protocol_for_models_and_controls(image, tmp_path, capsys):
    """`bench run --protocol paper` on pbmc3k's real cells, nb and both controls: every model and
    control gets AUC and MMD under paper:joint and paper:pairwise, each value records its protocol and
    the Seurat version; the joint grouping ran Seurat once for the three, the pairwise once each."""
    from bench.cli import main
    from bench.store import Store

    run = tmp_path / "run"
    args = ["run", "--models", "nb", "--dataset", "pbmc3k", "--metrics", "auc,mmd", "--experiments", "main",
            "--protocol", "paper", "--out", str(run)]  # fmt: skip
    assert main([*args, "--config", str(_fast_forest(tmp_path))]) == 0
    assert "by evaluation protocol" in capsys.readouterr().out
    with Store(run) as store:
        values = store.values()
        tasks = store.tasks()
        infos = {k: store.task_info(k) for k in tasks.key}
    for protocol in ("paper:joint", "paper:pairwise"):
        sub = values[values.experiment == f"main@{protocol}"]
        assert set(sub.model) == {"nb", "real", "shuffled"} and {"auc", "mmd"} <= set(sub.metric)
        assert all(p["protocol"] == protocol for p in sub.params)
    records = [i["protocol"] for i in infos.values() if "protocol" in i]
    assert {r["seurat"].split(".")[0] for r in records} == {"4"}
    joint = [r for r in records if r["grouping"] == "joint"]
    assert len(joint) == 3 and all(len(r["runs"]) == 1 and len(r["runs"][0]["models"]) == 3 for r in joint)
    assert len({json.dumps(r, sort_keys=True) for r in joint}) == 1  # one integration, shared
    pairwise = [r for r in records if r["grouping"] == "pairwise"]
    assert sorted(r["runs"][0]["models"][0] for r in pairwise) == ["nb", "real", "shuffled"]


def _fast_forest(tmp_path) -> Path:
    path = tmp_path / "fast.toml"
    path.write_text("[metrics.auc]\nn_trees = 100\n")
    return path
