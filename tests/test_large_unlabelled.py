"""An unlabelled dataset above scanpy's exact-neighbour limit (8,192 cells) is clustered like scGAN.

From 8,192 cells on, scanpy's neighbours switch from exact brute force to pynndescent, whose
``csr_array`` scanpy 1.11 could not read (``'csr_array' object has no attribute 'getnnz'``); and
scanpy's connectivities import umap, which imported TensorFlow. The data: pbmc3k cells resampled
with Poisson noise to 9,000 cells, labels removed. The run happens in a fresh interpreter, so
``sys.modules`` shows exactly what clustering imported (~1-2 min: pynndescent's numba JIT).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score

PBMC3K = Path(__file__).resolve().parents[1] / "datasets" / "data" / "pbmc3k.h5ad"
N_CELLS = 9_000  # above scanpy's exact-neighbour limit (bench.api.compat.SCANPY_EXACT_KNN_MAX_CELLS)

SCRIPT = """
import json, sys
import bench.datasets as ds
p = ds.prepare(sys.argv[1])
labels = {**dict(zip(map(str, p.train.obs_names), map(str, p.train.obs[p.label_key]))),
          **dict(zip(map(str, p.test.obs_names), map(str, p.test.obs[p.label_key])))}
heavy = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
print(json.dumps({"label_key": p.label_key, "clustering": p.info["clustering"], "labels": labels,
                  "imported": heavy}))
"""


def resampled_pbmc3k(n_cells: int, seed: int = 0) -> tuple[ad.AnnData, np.ndarray]:
    """``n_cells`` pbmc3k cells drawn with replacement, each scaled by U(0.7, 1.3) and
    Poisson-resampled; returned without labels, with the source cell types alongside."""
    src = ad.read_h5ad(PBMC3K)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, src.n_obs, n_cells)
    X = sp.csr_matrix(src.X, dtype=np.float64)[idx]
    X = sp.diags(rng.uniform(0.7, 1.3, n_cells)) @ X
    X = sp.csr_matrix(X)
    X.data = rng.poisson(X.data).astype(np.float32)
    X.eliminate_zeros()
    out = ad.AnnData(X=X, obs=pd.DataFrame(index=[f"cell{i}" for i in range(n_cells)]), var=src.var.copy())
    return out, src.obs["cell_type"].astype(str).to_numpy()[idx]


@pytest.mark.slow
def test_unlabelled_dataset_above_exact_knn_limit_clusters_without_tensorflow(tmp_path):
    adata, truth = resampled_pbmc3k(N_CELLS)
    path = tmp_path / "pbmc9k_unlabelled.h5ad"
    adata.write_h5ad(path)
    env = {**os.environ, "BENCH_DATA": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], capture_output=True, text=True,
                          env=env, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["imported"] == []  # clustering pulled in neither TensorFlow nor Keras
    assert out["label_key"] == "cluster" and out["clustering"]["method"] == "leiden"
    names = list(adata.obs_names)
    got = np.array([out["labels"].get(n, "dropped") for n in names])
    assert (got != "dropped").mean() > 0.99
    kept = got != "dropped"
    # the clusters are the PBMC populations: a coarse Leiden (resolution 0.15) merges T-cell
    # subtypes and the two monocyte types, yet agrees with the annotated types far above chance
    ari = adjusted_rand_score(truth[kept], got[kept])
    print(f"ARI {ari:.3f}, clusters {len(set(got[kept]))}")
    assert ari > 0.4
    sizes = pd.Series(got[kept]).value_counts()
    assert list(sizes.index[:3]) == ["0", "1", "2"]  # renumbered by decreasing size


SMALL_SCRIPT = """
import sys
import numpy as np, anndata as ad, scipy.sparse as sp
from bench.datasets.preprocess import cluster_scgan
rng = np.random.default_rng(0)
mu = np.full((150, 60), 2.0)
for k in range(3):
    mu[k * 50 : (k + 1) * 50, k * 20 : (k + 1) * 20] = 12.0
a = ad.AnnData(sp.csr_matrix(rng.poisson(mu).astype(np.float32)))
labels = cluster_scgan(a, seed=0)
assert len(set(labels)) == 3, labels
print(sorted(m for m in ("umap", "tensorflow", "keras") if m in sys.modules))
"""


@pytest.mark.slow
def test_small_dataset_clustering_does_not_import_tensorflow():
    """Below the limit (exact neighbours) umap still computes the connectivities: no TensorFlow."""
    proc = subprocess.run([sys.executable, "-c", SMALL_SCRIPT], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "['umap']"
