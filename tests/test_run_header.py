"""The run says what it decided for the user: where the labels came from (a clustering, with the obs
columns that look like cell types and the flag to use one) and the augmentation's rare class with the
rule that chose it."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.config import build_spec
from bench.datasets.readers import label_candidates
from bench.planning import plan


def test_label_candidates_are_label_like_columns_with_few_values():
    obs = pd.DataFrame(
        {
            "cell_type": ["a", "b", "a", "c"],
            "n_counts": [1.0, 2.0, 3.0, 4.0],
            "barcode_type": ["x", "x", "x", "x"],  # one value: not a labelling
            "louvain": ["0", "1", "1", "0"],
            "donor": ["d1", "d2", "d1", "d2"],  # not a label-like name
            "split": ["train", "test", "train", "train"],
        }
    )
    assert label_candidates(obs) == {"cell_type": 3, "louvain": 2}


@pytest.fixture(scope="module")
def labelled_file(tmp_path_factory):
    from pathlib import Path

    import anndata as ad

    import bench.datasets

    adata = ad.read_h5ad(Path(bench.datasets.__file__).parent / "data" / "pbmc3k.h5ad")
    path = tmp_path_factory.mktemp("data") / "pbmc_labelled.h5ad"
    adata.write_h5ad(path)
    return path


def test_a_labelled_file_run_without_label_key_says_it_was_clustered_and_how_to_use_the_labels(
    labelled_file, monkeypatch, tmp_path
):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "cache"))
    the_plan = plan(build_spec(None, models=["nb"], datasets=[str(labelled_file)], metrics=["augmentation"]))
    text = "\n".join(the_plan.header)
    assert "no --label-key, so the cells were clustered" in text and "Leiden clusters" in text
    assert "'cell_type' (8 values); use one with --label-key cell_type" in text
    assert "augmentation: rare class '" in text and "a Leiden cluster, see the labels line" in text


def test_the_recipe_labels_and_rare_class_rule_are_named(monkeypatch):
    the_plan = plan(build_spec(None, models=["nb"], metrics=["augmentation"]))
    assert the_plan.header[0].startswith("pbmc3k: ") and " test cells x 2,000 genes" in the_plan.header[0]
    assert the_plan.header[1] == "  labels: obs['cell_type'] (the dataset recipe's), 8 types"
    assert the_plan.header[2].startswith(
        "  augmentation: rare class 'CD4 T' (the smallest class keeping >= 5"
    )
