"""Helpers for the dataset tests: tiny synthetic count matrices and files in every supported format."""

from __future__ import annotations

import gzip
import threading
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp


def make_counts(
    sizes=(60, 45, 30), n_genes: int = 150, seed: int = 0, label_key: str = "cell_type"
) -> ad.AnnData:
    """Raw integer counts with clearly separated groups (each label has its own 15 marker genes).

    Labels are 'A', 'B', 'C', ... with ``sizes`` cells each; a few genes are expressed in no or
    very few cells so that gene filtering has something to remove.
    """
    rng = np.random.default_rng(seed)
    labels = np.repeat([chr(ord("A") + i) for i in range(len(sizes))], sizes)
    n = labels.size
    base = rng.gamma(2.0, 0.5, size=n_genes)
    mu = np.tile(base, (n, 1))
    for i, lab in enumerate(np.unique(labels)):
        mu[labels == lab, 15 * i : 15 * (i + 1)] *= 12.0
    depth = rng.lognormal(0.0, 0.3, size=(n, 1))
    X = rng.poisson(mu * depth).astype(np.int64)
    X[:, -3:] = 0  # never expressed
    X[:, -4] = 0
    X[:2, -4] = 1  # expressed in 2 cells only (< 3: filtered)
    obs = pd.DataFrame({label_key: pd.Categorical(labels)}, index=[f"cell{i}" for i in range(n)])
    var = pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)])
    return ad.AnnData(sp.csr_matrix(X, dtype=np.float32), obs=obs, var=var)


def make_published(sizes=(80, 50, 30, 20), n_genes: int = 120, seed: int = 1) -> ad.AnnData:
    """A file with the ACTIVA preprocessed schema: X normalised to 20,000, obs 'cluster', obs 'split'."""
    a = make_counts(sizes, n_genes=n_genes, seed=seed, label_key="cluster")
    a = a[:, :-4].copy()  # already filtered
    a.obs["cluster"] = np.repeat([str(i) for i in range(len(sizes))], sizes)
    totals = np.asarray(a.X.sum(axis=1)).ravel()
    a.X = sp.csr_matrix(sp.diags(20000.0 / totals) @ a.X, dtype=np.float32)
    rng = np.random.default_rng(seed)
    split = np.array(["train"] * a.n_obs, dtype=object)
    held = rng.choice(a.n_obs, size=a.n_obs // 10, replace=False)
    split[held[: len(held) // 2]] = "valid"
    split[held[len(held) // 2 :]] = "test"
    a.obs["split"] = pd.Categorical(split)
    return a


def write_10x_h5(adata: ad.AnnData, path: Path) -> Path:
    """Write counts as a Cell Ranger v3 HDF5 file (genes x cells CSC under /matrix)."""
    X = sp.csr_matrix(adata.X, dtype=np.int32)  # cells x genes CSR == genes x cells CSC
    n_genes = adata.n_vars
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m.create_dataset("barcodes", data=np.array(adata.obs_names, dtype="S"))
        m.create_dataset("data", data=X.data)
        m.create_dataset("indices", data=X.indices.astype(np.int64))
        m.create_dataset("indptr", data=X.indptr.astype(np.int64))
        m.create_dataset("shape", data=np.array([n_genes, adata.n_obs], dtype=np.int32))
        feat = m.create_group("features")
        feat.create_dataset("id", data=np.array([f"ENSG{j:05d}" for j in range(n_genes)], dtype="S"))
        feat.create_dataset("name", data=np.array(adata.var_names, dtype="S"))
        feat.create_dataset("feature_type", data=np.array(["Gene Expression"] * n_genes, dtype="S"))
        feat.create_dataset("genome", data=np.array(["GRCh38"] * n_genes, dtype="S"))
    return path


def write_10x_mtx(adata: ad.AnnData, folder: Path) -> Path:
    """Write counts as a Cell Ranger v3 matrix directory (gzipped mtx + features + barcodes)."""
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "matrix.mtx.gz", "wb") as fh:
        scipy.io.mmwrite(fh, sp.coo_matrix(sp.csr_matrix(adata.X, dtype=np.int64).T), field="integer")
    with gzip.open(folder / "features.tsv.gz", "wt") as fh:
        for j, g in enumerate(adata.var_names):
            fh.write(f"ENSG{j:05d}\t{g}\tGene Expression\n")
    with gzip.open(folder / "barcodes.tsv.gz", "wt") as fh:
        fh.write("\n".join(adata.obs_names) + "\n")
    return folder


@contextmanager
def http_server(directory: Path):
    """Serve ``directory`` over HTTP on 127.0.0.1 in a thread; yields the base URL."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
