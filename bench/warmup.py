"""Fill numba's on-disk cache at setup (``python -m bench.warmup``, run by scripts/setup.sh).

pynndescent (imported by UMAP), UMAP and scanpy compile their numba functions on first use and keep
those marked ``cache=True`` next to their source (``__pycache__/*.nbi``, ``*.nbc``). On a fresh
install the first ``bench run`` paid that: about 40 s of a 2-core machine in its first task (the
README's main job: ACTIVA's first task 117 s from an empty numba cache, 75 s with it filled;
docs/tuning.md#the-quick-profile). This runs, on a few hundred random cells, the code paths
that compile them: the embedding metric's UMAP, the sparse mean and variance of the dataset
preparation's gene selection, and the Wilcoxon ranking of the DE genes. It computes nothing kept.
Numba functions without ``cache=True`` (UMAP's layout optimiser) are compiled again in every run.
"""

from __future__ import annotations

import time
import warnings


def warm() -> float:
    """Compile and cache the numba code a run uses; returns the seconds it took."""
    import anndata as ad
    import numpy as np
    import scanpy as sc
    import scipy.sparse as sp
    import umap

    start = time.perf_counter()
    rng = np.random.default_rng(0)
    counts = sp.csr_matrix(rng.poisson(1.0, size=(300, 200)).astype(np.float32))
    adata = ad.AnnData(counts)
    adata.obs["group"] = np.repeat(["a", "b", "c"], 100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.highly_variable_genes(adata, n_top_genes=50, flavor="seurat_v3")
        sc.pp.normalize_total(adata, target_sum=1e4)
        sc.pp.log1p(adata)
        sc.pp.highly_variable_genes(adata, n_top_genes=50)
        sc.tl.rank_genes_groups(adata, "group", method="wilcoxon")
        # as the embedding metric calls it (float32 PCs, fit on one side, the other placed on it)
        pcs = rng.normal(size=(300, 50)).astype(np.float32)
        reducer = umap.UMAP(n_components=2, n_neighbors=15, min_dist=0.5, random_state=0, n_jobs=1)
        reducer.fit_transform(pcs)
        reducer.transform(pcs[:100] + 0.1)
    return time.perf_counter() - start


def main() -> None:
    seconds = warm()
    print(f"numba's cache filled for the metrics and the dataset preparation ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
