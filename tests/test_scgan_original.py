"""The adapter for the original scGAN image: parameters.json, command lines, input/output formats."""

from __future__ import annotations

import json
import os

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from bench.api.generator import bind_training_data
from bench.generators.scgan import original as O
from bench.generators.scgan.original import ScGANOriginal
from tests.conftest import fit_generator


def train_data():
    rng = np.random.default_rng(0)
    X = rng.gamma(0.5, 1.0, (30, 6)).astype(np.float32)
    X = X / X.sum(1, keepdims=True) * 20_000
    a = ad.AnnData(X=X)
    a.var_names = [f"gene{i}" for i in range(6)]
    a.obs_names = [f"c{i}" for i in range(30)]
    a.obs["cell_type"] = ["T"] * 5 + ["B"] * 15 + ["NK"] * 10
    return a


def test_cluster_ids_by_decreasing_size():
    assert O.cluster_ids(["T"] * 5 + ["B"] * 15 + ["NK"] * 10) == {"B": "0", "NK": "1", "T": "2"}
    assert O.cluster_ids(["x2", "x10", "x2", "x10"]) == {"x2": "0", "x10": "1"}  # ties: natural order


def test_parameters_json_structure(tmp_path):
    gen = ScGANOriginal(max_steps=500)
    gen._work_dir = tmp_path
    bind_training_data(gen, train_data(), "cell_type")
    gen.prepare_fit(train_data(), label_key="cell_type", seed=7)
    p = json.loads((tmp_path / "parameters.json").read_text())
    assert p["exp_param"] == {"experiments_dir": "/work/experiments", "GPU": [0]}
    exp = p["experiments"]["scgenbench"]
    assert exp["input_ds"]["raw_input"] == "/work/train_original.h5ad"
    assert exp["input_ds"]["clustering"] == {"res": None}
    assert exp["input_ds"]["filtering"] == {"min_cells": 0, "min_genes": 0}
    assert exp["input_ds"]["scale"] == "normalize_per_cell_LS_20000"
    assert exp["input_ds"]["split"] == {
        "balanced_split": True,
        "split_seed": 7,
        "test_cells": 0,
        "valid_cells": 128,
    }
    t = exp["training"]
    assert (
        t["max_steps"] == 500
        and t["batch_size"] == 128
        and t["critic_iters"] == 5
        and t["checkpoint"] is None
    )
    assert t["learning_rate"] == {"decay": True, "alpha_0": 1e-4, "alpha_final": 1e-5}
    assert t["optimizer"] == {"algorithm": "AMSGrad", "beta1": 0.5, "beta2": 0.9}
    m = exp["model"]
    assert m["type"] == "cscGAN" and m["gen_cond_type"] == "batchnorm" and m["output_LSN"] == 20000
    assert (
        m["gen_layers"] == [256, 512, 1024] and m["critic_layers"] == [1024, 512, 256] and m["lambd"] == 10.0
    )
    assert json.loads((tmp_path / "label_map.json").read_text()) == {"B": "0", "NK": "1", "T": "2"}


def test_legacy_input_file_layout(tmp_path):
    gen = ScGANOriginal()
    gen._work_dir = tmp_path
    train = train_data()
    bind_training_data(gen, train, "cell_type")
    gen.prepare_fit(train, label_key="cell_type", seed=0)
    with h5py.File(tmp_path / O.INPUT_NAME) as f:
        assert f["X"].shape == (30, 6) and f["obs"].dtype.names == ("index", "cluster")
        assert [c.decode() for c in f["uns/cluster_categories"][:]] == ["0", "1", "2"]
        codes = f["obs"]["cluster"][:]
        assert f["var"]["index"][0].decode() == "gene0"
    # codes follow the decreasing-size ids: B -> 0, NK -> 1, T -> 2
    assert codes.tolist() == [2] * 5 + [0] * 15 + [1] * 10
    np.testing.assert_allclose(h5py.File(tmp_path / O.INPUT_NAME)["X"][:], train.X, rtol=1e-6)


def test_command_lines_and_counts():
    assert O.train_command() == [
        "python",
        "main.py",
        "--param",
        "/work/parameters.json",
        "--process",
        "--train",
    ]
    gen = ScGANOriginal()
    gen.id_map = {"B": "0", "NK": "1", "T": "2"}
    gen.class_sizes = {"B": 15, "NK": 10, "T": 5}
    assert gen.cells_no({"T": 4, "B": 1}, 0) == [1, 0, 4]
    assert gen.cells_no(12, 0) == [6, 4, 2]
    assert O.generate_command([1, 0, 4]) == [
        "python", "main.py", "--param", "/work/parameters.json", "--generate", "--cells_no", "1", "0", "4",
        "--model_path", "/work/experiments/scgenbench", "--save_path", "/work/generated_original.h5ad",
    ]  # fmt: skip


def test_read_original_output_format(tmp_path):
    # the original writes AnnData(CSR X), obs_names fake, fake-1, ..., obs 'cluster' (ids), no var names
    X = sp.csr_matrix(np.array([[20000, 0, 0], [0, 10000, 10000], [5000, 5000, 10000]], np.float32))
    a = ad.AnnData(X=X)
    a.obs_names = ["fake", "fake-1", "fake-2"]
    a.obs["cluster"] = pd.Categorical(["0", "2", "2"])
    a.write_h5ad(tmp_path / "gen.h5ad")
    out = O.read_original_output(
        tmp_path / "gen.h5ad", ["g1", "g2", "g3"], {"0": "B", "1": "NK", "2": "T"}, "cell_type"
    )
    assert list(out.var_names) == ["g1", "g2", "g3"] and list(out.obs_names) == ["gen-0", "gen-1", "gen-2"]
    assert out.obs["cell_type"].tolist() == ["B", "T", "T"] and "cluster" not in out.obs
    np.testing.assert_array_equal(out.X.toarray(), X.toarray())
    from bench.api.errors import TaskFailed

    with pytest.raises(TaskFailed, match="genes"):
        O.read_original_output(tmp_path / "gen.h5ad", ["g1"], {"0": "B"}, "cell_type")


@pytest.mark.docker
def test_original_image_end_to_end(tmp_path):
    from bench.generators.container import docker_client

    client = docker_client()
    if client is None:
        if os.environ.get("BENCH_REQUIRE_DOCKER") == "1":
            pytest.fail("a Docker engine is required (BENCH_REQUIRE_DOCKER=1) but none answers")
        pytest.skip("no Docker engine answers")
    if O.ORIGINAL_IMAGE is None:
        pytest.skip("no digest of the original image is recorded (ORIGINAL_DIGEST; docs/models/scgan.md)")
    try:
        client.images.get(O.ORIGINAL_IMAGE)
    except Exception:
        pytest.skip(f"{O.ORIGINAL_IMAGE} is not available locally (docker pull it; needs a GPU)")
    gen = ScGANOriginal(max_steps=20, save_freq=10, validation_freq=10)
    train = train_data()
    fit_generator(gen, train, device="cuda", work_dir=tmp_path)
    out = gen.generate({"B": 3, "T": 2}, seed=0)
    assert out.obs["cell_type"].value_counts().to_dict() == {"B": 3, "NK": 0, "T": 2}
