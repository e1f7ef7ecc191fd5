"""``paper``: the ACTIVA authors' Seurat post-processing (paper section 4.3; their notebook
SindiLab/Tutorials ``SingleCell-R/ACTIVA_pbmc68K_model.Rmd`` lines 108-147), run for real in R in a
local Docker image (``seurat_image/``: Debian bookworm's r-cran-seurat 4.3.x, built by
``scripts/ci/seurat-image.sh`` from ``bash scripts/setup.sh --services``).

Per group of objects (the real test cells and the cells of one or every model, grouped ``joint`` or
``pairwise``): per object VST with 3,000 features, integration anchors on dims 1:30 with 3,000
anchor features, IntegrateData on dims 1:30, ScaleData and RunPCA on the integrated assay, 50 PCs.
Cells go in as one MatrixMarket file per object (genes x cells) on the linear library-size-20,000
scale, the values the paper's h5ad files held (the notebook calls no NormalizeData; ``normalize=
'LogNormalize'`` adds it); PCs come back as CSV with the Seurat version and the parameters used.

The container runs in the harness's sandbox through :func:`bench.api.docker.run_docker`
(no network, read-only root, a non-root user, every capability dropped, memory and pids limits,
always removed).
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse as sp

from bench.api.contract import LIBRARY_SIZE
from bench.api.errors import TaskFailed, UserError
from bench.protocols.base import GROUPINGS, Cells, Embedded, cells_scale, check_inputs, groups, matrix

IMAGE_NAME = "scgenbench/seurat-paper"
DEFAULT_BASE = "scgenbench/seurat-base:bookworm"
CONTEXT = Path(__file__).resolve().parent / "seurat_image"
BUILD_FILES = ("Dockerfile", "paper.R")
REAL = "real-test"
NORMALIZE = ("none", "LogNormalize")
# the notebook's values (Rmd lines 108-147) and Seurat's defaults it relies on
PARAMS = {
    "nfeatures": 3000,
    "anchor_features": 3000,
    "dims": 30,
    "npcs": 50,
    "k_filter": 200,
    "k_weight": 100,
}


def base_image() -> str:
    return os.environ.get("BENCH_SEURAT_BASE_IMAGE") or DEFAULT_BASE


def _client():
    from bench.api.sandbox import docker_client

    client = docker_client()
    if client is None:
        raise UserError(
            "protocol 'paper' needs a Docker engine (it runs Seurat in R in a container)",
            "start Docker and run `bash scripts/setup.sh --services`, or use protocol 'harmony'",
        )
    return client


def image_tag(client=None) -> str:
    """``scgenbench/seurat-paper:<hash of the build files and the base image's id>``."""
    import docker

    from bench.api.docker import context_hash

    client = client or _client()
    try:
        base_id = client.images.get(base_image()).id
    except docker.errors.ImageNotFound:
        raise UserError(
            f"protocol 'paper': base image {base_image()} is missing",
            "build it with `bash scripts/setup.sh --services` (scripts/ci/seurat-image.sh)",
        ) from None
    return f"{IMAGE_NAME}:{context_hash(CONTEXT, BUILD_FILES, base_id)}"


def build_image(client=None, progress: bool = True) -> str:
    """Build the protocol image on :func:`base_image` unless its tag exists; return the tag."""
    import docker

    client = client or _client()
    tag = image_tag(client)
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    if progress:
        print(f"building {tag} on {base_image()}", flush=True)
    try:
        client.images.build(
            path=str(CONTEXT),
            tag=tag,
            buildargs={"BASE_IMAGE": client.images.get(base_image()).id},
            labels={"org.scgenbench.base_image": base_image()},
            rm=True,
            forcerm=True,
        )
    except docker.errors.BuildError as exc:
        tail = "\n".join(str(c.get("stream") or c.get("error") or "").rstrip() for c in exc.build_log)
        raise TaskFailed(f"building {tag} failed: {exc.msg}", log_tail=tail[-4000:]) from None
    return tag


def library_size_cells(cells: Cells, scale: str | None = None) -> sp.csr_matrix:
    """Cells on the linear library-size-20,000 scale (float64 CSR), whatever their output scale."""
    X = sp.csr_matrix(matrix(cells), dtype=np.float64, copy=True)
    if (scale or cells_scale(cells)) == "log1p":
        np.expm1(X.data, out=X.data)
    totals = np.asarray(X.sum(axis=1)).ravel()
    factor = np.divide(LIBRARY_SIZE, totals, out=np.zeros_like(totals), where=totals > 0)
    return sp.csr_matrix(sp.diags(factor) @ X)


def write_inputs(folder: Path, blocks: Mapping[str, sp.spmatrix], genes: list[str], params: Mapping) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "genes.txt").write_text("".join(f"{g}\n" for g in genes))
    with open(folder / "objects.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "file", "n_cells"])
        for i, (name, X) in enumerate(blocks.items()):
            file = f"object{i}.mtx"
            scipy.io.mmwrite(folder / file, sp.csc_matrix(X).T.tocoo(), precision=7)
            w.writerow([name, file, X.shape[0]])
    with open(folder / "params.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["key", "value"])
        for k, v in params.items():
            w.writerow([k, v])


def read_outputs(folder: Path, blocks: Mapping[str, sp.spmatrix]) -> tuple[dict[str, np.ndarray], dict]:
    import pandas as pd

    pcs = pd.read_csv(folder / "pcs.csv")
    cols = [c for c in pcs.columns if c.startswith("PC_")]
    out = {}
    for name, X in blocks.items():
        part = pcs[pcs["object"] == name].sort_values("cell")
        if not np.array_equal(part["cell"].to_numpy(), np.arange(X.shape[0])):
            raise TaskFailed(f"paper protocol: the PCs of {name!r} do not cover its {X.shape[0]} cells")
        out[name] = part[cols].to_numpy(dtype=np.float32)
    record = dict(
        pd.read_csv(folder / "record.csv", dtype=str, keep_default_na=False).itertuples(index=False)
    )
    return out, record


def run_seurat(
    blocks: Mapping[str, sp.spmatrix],
    genes: list[str],
    *,
    seed: int,
    normalize: str = "none",
    params: Mapping | None = None,
    image: str | None = None,
    mem_gb: float = 8,
    cpus: float = 2,
    timeout_s: float | None = 3600,
    work_dir: str | Path | None = None,
    client=None,
) -> tuple[dict[str, np.ndarray], dict]:
    """Run the notebook's steps in the image on ``blocks`` (object name -> cells x genes, linear scale):
    (object name -> its cells' 50 PCs, the record). ``k_filter`` and ``k_weight`` are Seurat's
    defaults (200, 100) lowered to the smallest object's cell count where objects are smaller (Seurat
    refuses otherwise); the record says which were used."""
    from bench.api.docker import run_docker
    from bench.api.sandbox import Sandbox, resolve_limits

    if normalize not in NORMALIZE:
        raise ValueError(f"unknown normalize {normalize!r}; use one of {NORMALIZE}")
    client = client or _client()
    image = image or build_image(client, progress=False)
    smallest = min(X.shape[0] for X in blocks.values())
    p = {**PARAMS, **(params or {})}
    p["k_filter"] = min(int(p["k_filter"]), smallest)
    p["k_weight"] = min(int(p["k_weight"]), smallest - 1)
    p.update(seed=int(seed), normalize=normalize)
    own = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="scgenbench-paper-")) if own else Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        write_inputs(work / "input", blocks, genes, p)
        limits = resolve_limits({"cpus": cpus, "mem_gb": mem_gb, "gpus": 0})
        t0 = time.monotonic()
        run_docker(
            image,
            "paper.R",
            work,
            timeout_s=timeout_s,
            limits=limits,
            sandbox=Sandbox(),
            inputs=("input",),
            client=client,
            what="paper protocol",
            argv=["Rscript", "/opt/scgenbench/paper.R", "/work"],
        )
        pcs, record = read_outputs(work / "output", blocks)
        record["seconds"] = round(time.monotonic() - t0, 1)
        record["image"] = image
        return pcs, record
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


class Paper:
    """The ``paper`` protocol, grouped ``joint`` (the real test cells with every model at once, as the
    authors did) or ``pairwise`` (with one model at a time). ``run_options`` go to
    :func:`run_seurat` (``mem_gb``, ``cpus``, ``timeout_s``, ``image``, ``params``, ``client``;
    ``work_dir``: keep each integration's files in ``work_dir/group<i>``)."""

    name = "paper"
    groupings = GROUPINGS

    def __init__(self, grouping: str | None = None, normalize: str = "none", **run_options) -> None:
        self.grouping = grouping or "joint"
        if self.grouping not in GROUPINGS:
            raise ValueError(f"unknown grouping {self.grouping!r}; use one of {GROUPINGS}")
        if normalize not in NORMALIZE:
            raise ValueError(f"unknown normalize {normalize!r}; use one of {NORMALIZE}")
        self.normalize = normalize
        self.run_options = run_options

    @property
    def key(self) -> str:
        return f"{self.name}:{self.grouping}"

    def check(self) -> None:
        """A Docker engine and the Seurat base image (UserError naming the fix); the protocol image
        itself is built on it on first use."""
        image_tag()

    def apply(
        self, real_train: Cells, real_test: Cells, generated: Mapping[str, Cells], seed: int
    ) -> Embedded:
        """Real test cells and each model's cells on the integrated PCs; ``real_train`` is unused (the
        authors fit nothing on training cells)."""
        check_inputs(real_test, generated)
        if REAL in generated:
            raise ValueError(f"a model may not be called {REAL!r}")
        genes = (
            list(map(str, real_test.var_names))
            if hasattr(real_test, "var_names")
            else [f"gene{i}" for i in range(matrix(real_test).shape[1])]
        )
        real = library_size_cells(real_test, "library-size-20000")
        linear = {m: library_size_cells(c) for m, c in generated.items()}
        pairs, runs = {}, []
        options = dict(self.run_options)
        work_dir = options.pop("work_dir", None)
        for i, group in enumerate(groups(list(generated), self.grouping)):
            blocks = {REAL: real, **{m: linear[m] for m in group}}
            folder = None if work_dir is None else Path(work_dir) / f"group{i}"
            pcs, record = run_seurat(
                blocks, genes, seed=seed, normalize=self.normalize, work_dir=folder, **options
            )
            for m in group:
                pairs[m] = (pcs[REAL], pcs[m])
            runs.append({"models": group, **record})
        first = runs[0]
        record = {
            "protocol": self.key,
            "grouping": self.grouping,
            "normalize": self.normalize,
            "seurat": first["Seurat"],
            "seurat_object": first["SeuratObject"],
            "r": first["R"],
            "n_integration_features": int(first["n_integration_features"]),
            "n_pcs": int(first["n_pcs"]),
            "runs": runs,
        }
        return Embedded(self.key, pairs, record)
