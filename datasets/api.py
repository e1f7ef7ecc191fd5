"""Public API of the dataset stage: prepare, info, add, list_datasets, cache_dir."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import anndata as ad

from bench import registry
from bench.api import UserError
from bench.datasets import cache, preprocess, readers
from bench.datasets.prepared import PreparedData
from bench.datasets.recipes import DatasetRecipe


def cache_dir() -> Path:
    """The dataset cache directory (``$BENCH_DATA``, else the user cache dir ``scgenbench``)."""
    return cache.cache_dir()


def _recipes() -> dict[str, Any]:
    return registry.available("datasets")


def _get_recipe(name: str) -> DatasetRecipe:
    recipe = registry.get_dataset(name)
    if not isinstance(recipe, DatasetRecipe):
        raise UserError(
            f"dataset plugin '{name}' is a {type(recipe).__name__}, not a DatasetRecipe",
            "a bench.datasets entry point must name a bench.datasets.DatasetRecipe instance",
        )
    return recipe


def list_datasets() -> list[dict[str, str]]:
    """Registered datasets: name and one-line description (a broken plugin: why it is broken)."""
    out = [{"name": name, "description": obj.description} for name, obj in _recipes().items()]
    out += [
        {"name": name, "description": f"broken plugin: {b.reason}"}
        for name, b in registry.broken("datasets").items()
    ]
    return sorted(out, key=lambda d: d["name"])


def info(name: str, *, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Everything known about a registered dataset, for ``bench datasets info NAME``."""
    recipe = _get_recipe(name)
    root = Path(cache_dir) if cache_dir else cache.cache_dir()
    path = recipe.local_path(root)
    entry = cache.load_registry(root).get(name) if recipe.kind != "bundled" else None
    return {
        "name": recipe.name,
        "description": recipe.description,
        "kind": recipe.kind,
        "source_url": recipe.url,
        "licence": recipe.licence,
        "citation": recipe.citation,
        "path": str(path),
        "present": path.exists(),
        "size_bytes": path.stat().st_size if path.exists() else None,
        "sha256": recipe.sha256 if recipe.kind == "bundled" else (entry or {}).get("sha256"),
        "sha256_source": "pinned"
        if recipe.kind == "bundled"
        else ((entry or {}).get("source") or "not recorded yet"),
        "label_key": recipe.label_key,
        "split_key": recipe.split_key,
        "default_rare_class": recipe.default_rare_class,
        "rare_class_reason": recipe.rare_class_reason,
        "already_normalised": recipe.normalised,
        "n_cells": recipe.n_cells,
        "n_genes": recipe.n_genes,
    }


def add(name: str, path: str | Path, *, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Register a local copy of a recipe's file (``bench datasets add NAME PATH``).

    The file is read and checked against the recipe's schema, copied into the cache dir (where a
    download would put it) and its size and sha256 are recorded; later uses verify them.
    """
    recipe = _get_recipe(name)
    return recipe.add(path, root=Path(cache_dir) if cache_dir else None)


class _Steps:
    """A rich progress bar over the preprocessing steps; silent when disabled or not a TTY."""

    def __init__(self, enabled: bool, title: str, total: int):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.enabled = enabled and sys.stderr.isatty()
        self.progress = Progress(
            TextColumn(f"[bold]{title}[/] {{task.description}}"),
            BarColumn(),
            TimeElapsedColumn(),
            disable=not self.enabled,
        )
        self.total = total
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        self.task = self.progress.add_task("reading", total=self.total)
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.progress.update(self.task, completed=self.total, description="done")
        return self.progress.__exit__(*exc)

    def __call__(self, description: str) -> None:
        self.progress.update(self.task, advance=1, description=description)


def _check_params(split_seed, test_fraction, n_top_genes) -> None:
    if not isinstance(split_seed, int) or isinstance(split_seed, bool):
        raise UserError(f"split seed must be an integer, got {split_seed!r}", "use e.g. 0")
    if not (isinstance(test_fraction, int | float) and 0 < test_fraction < 1):
        raise UserError(f"test fraction must be between 0 and 1, got {test_fraction!r}", "use e.g. 0.1")
    if n_top_genes is not None and (
        not isinstance(n_top_genes, int) or isinstance(n_top_genes, bool) or n_top_genes < 1
    ):
        raise UserError(
            f"n_top_genes must be a positive integer or None, got {n_top_genes!r}", "use e.g. 2000"
        )


CHECKSUMS = "sha256.json"  # written last: a prepared folder without it is incomplete
_PARTS = ("train.h5ad", "test.h5ad", "info.json")


def _load_cached(folder: Path) -> tuple[ad.AnnData, ad.AnnData, dict[str, Any]]:
    """Read a prepared folder after checking every file against its recorded sha256 (ValueError
    when one differs or the checksums are missing: the caller rebuilds it)."""
    sums = json.loads((folder / CHECKSUMS).read_text())
    for part in _PARTS:
        if cache.sha256_file(folder / part) != sums.get(part):
            raise ValueError(f"{folder / part}: sha256 differs from the one recorded when it was written")
    train = ad.read_h5ad(folder / "train.h5ad")
    test = ad.read_h5ad(folder / "test.h5ad")
    meta = json.loads((folder / "info.json").read_text())
    return train, test, meta


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_cached(folder: Path, train: ad.AnnData, test: ad.AnnData, meta: dict[str, Any]) -> None:
    """Write the prepared data to a temp folder (each file fsynced, their sha256 in sha256.json),
    then rename it into place (atomic) and fsync the parent."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists() and not (folder / CHECKSUMS).exists():  # incomplete or written before checksums
        shutil.rmtree(folder, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        train.write_h5ad(tmp / "train.h5ad", compression="lzf")
        test.write_h5ad(tmp / "test.h5ad", compression="lzf")
        (tmp / "info.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        for part in _PARTS:
            _fsync(tmp / part)
        (tmp / CHECKSUMS).write_text(json.dumps({p: cache.sha256_file(tmp / p) for p in _PARTS}, indent=1))
        _fsync(tmp / CHECKSUMS)
        cache.fsync_dir(tmp)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / CHECKSUMS).exists():  # not a concurrent writer: a real failure
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process wrote the same result first
        cache.fsync_dir(folder.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def prepare(
    dataset: str,
    *,
    label_key: str | None = None,
    split_seed: int = 0,
    test_fraction: float = 0.1,
    n_top_genes: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    write_cache: bool = True,
    check_orientation: bool = True,
    normalisation: str = preprocess.DEFAULT_NORMALISATION,
) -> PreparedData:
    """Load a dataset, run the scGAN preprocessing pipeline and split it (cached by content hash).

    ``dataset``: a registered name (``pbmc3k``, ``brain_small``, ``pbmc68k``, plugins) or a path to
    an .h5ad, a 10x .h5 or a 10x matrix directory. ``label_key``: obs column of cell labels; for a
    recipe it defaults to the recipe's, for a file without one the cells are clustered (Leiden)
    into obs['cluster']. See :mod:`bench.datasets.preprocess` for the steps.
    ``write_cache=False``: keep a newly prepared dataset in memory only; :func:`save_prepared`
    writes it later (the runner does so once the whole run has been validated).
    ``check_orientation=False`` (``--no-orientation-check``): accept a file whose names look like
    genes x cells (:func:`bench.datasets.readers.check_orientation`).
    ``normalisation`` (``--normalisation``): where the library size of 20,000 is computed when
    ``n_top_genes`` selects genes, ``'hvg'`` (over the selected genes, the default) or
    ``'all-genes'`` (over all genes, scanpy's convention and the paper's); part of the prepared
    data's content hash when it is not the default.
    """
    _check_params(split_seed, test_fraction, n_top_genes)
    normalisation = preprocess.check_normalisation(normalisation)
    root = Path(cache_dir).expanduser() if cache_dir else cache.cache_dir()
    recipe: DatasetRecipe | None = None
    if dataset in _recipes():
        recipe = _get_recipe(dataset)
        name = recipe.name
        path, digest = recipe.fetch(progress=progress, root=root)
        label_key = label_key or recipe.label_key
        split_key = recipe.split_key
        normalised = recipe.normalised
    else:
        path = Path(dataset).expanduser()
        if not path.exists():
            names = ", ".join(_recipes()) or "none"
            raise UserError(
                f"dataset '{dataset}' is neither a registered dataset nor an existing file",
                f"registered datasets: {names}; or give the path of an .h5ad, a 10x .h5 or a 10x matrix directory",
            )
        path = path.resolve()
        name = path.name.split(".")[0] if path.is_file() else path.name
        digest = cache.sha256_file(path)
        split_key = "split"
        normalised = False

    params = {
        "preprocess_version": preprocess.PREPROCESS_VERSION,
        "input_sha256": digest,
        "dataset": name,
        "label_key": label_key,
        "split_key": split_key,
        "split_seed": split_seed,
        "test_fraction": float(test_fraction),
        "n_top_genes": n_top_genes,
        "min_genes": preprocess.MIN_GENES,
        "min_cells": preprocess.MIN_CELLS,
        "target_sum": preprocess.TARGET_SUM,
        "hvg_flavor": preprocess.HVG_FLAVOR if n_top_genes is not None else None,
        "leiden_resolution": preprocess.LEIDEN_RESOLUTION if label_key is None else None,
        "normalised_input": normalised,
    }
    if normalisation != preprocess.DEFAULT_NORMALISATION:
        # only a non-default value enters the hash: the default's data, hash and task keys are
        # those of every run before the option existed
        params["normalisation"] = normalisation
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    folder = root / "prepared" / key

    t0 = time.perf_counter()
    if folder.exists():
        try:
            train, test, meta = _load_cached(folder)
        except Exception:  # a damaged, incomplete or unverifiable cache entry is rebuilt, never trusted
            shutil.rmtree(folder, ignore_errors=True)
        else:
            meta.setdefault("normalisation", normalisation)  # folders written before the option
            meta.update(cached=True, load_seconds=time.perf_counter() - t0)
            return _result(name, train, test, meta)

    with _Steps(progress, name, total=6) if progress else nullcontext(lambda _d: None) as step:
        if recipe is not None:
            adata = recipe.read(path)
            if label_key is not None and label_key != recipe.label_key:
                readers.check_label_key(adata, label_key, name)
        else:
            adata = readers.read_path(path)
            readers.make_names_unique(adata, source=str(path))
            readers.check_counts(adata, str(path))
            if check_orientation:
                readers.check_orientation(adata, str(path))
            if label_key is not None:
                readers.check_label_key(adata, label_key, str(path))
        train, test, pinfo = preprocess.run_pipeline(
            adata,
            label_key=label_key,
            split_key=split_key,
            test_fraction=test_fraction,
            split_seed=split_seed,
            n_top_genes=n_top_genes,
            normalised_input=normalised,
            normalisation=normalisation,
            step=step,
            source=name,
        )
    label_key = pinfo["label_key"]
    totals = {k: pinfo["labels_train"][k] + pinfo["labels_test"][k] for k in pinfo["labels_train"]}
    # a recipe's own choice (the paper's cluster 2); otherwise the runner applies the augmentation
    # rule (bench.metrics.choose_rare_class), which depends on the run's fractions
    rare = None
    if recipe is not None and label_key == recipe.label_key and recipe.default_rare_class in totals:
        rare = recipe.default_rare_class
    meta = {
        "dataset": name,
        "hash": key,
        "source": (recipe.url if recipe is not None else f"file {path}"),
        "kind": recipe.kind if recipe is not None else "file",
        "path": str(path),
        "sha256": digest,
        "licence": recipe.licence if recipe is not None else None,
        "citation": recipe.citation if recipe is not None else None,
        "params": params,
        "default_rare_class": rare,
        "cache_path": str(folder),
        **pinfo,
        "prepare_seconds": round(time.perf_counter() - t0, 3),
    }
    for part in (train, test):
        part.uns["scgenbench"] = {"dataset": name, "hash": key, "info_json": json.dumps(meta, sort_keys=True)}
    if write_cache:
        _write_cached(folder, train, test, meta)
    meta["cached"] = False
    return _result(name, train, test, meta)


def describe_normalisation(info: dict[str, Any]) -> str:
    """The prepared data's normalisation in words, for the run header (``info``: PreparedData.info)."""
    params = info.get("params") or {}
    how = params.get("normalisation", info.get("normalisation", preprocess.DEFAULT_NORMALISATION))
    if params.get("n_top_genes") is None:
        return "library size 20,000 over all genes"
    if how == "hvg":
        return f"normalisation hvg: library size 20,000 over the {info.get('n_genes', 0):,} selected genes"
    sums = info.get("row_sums") or {}
    spread = (
        f" (they sum to {sums['min']:,.0f}-{sums['max']:,.0f} per cell, median {sums['median']:,.0f})"
        if {"min", "median", "max"} <= set(sums)
        else ""
    )
    return (
        f"normalisation {how}: library size 20,000 over all {info.get('n_genes_filtered', 0):,} genes, "
        f"then {info.get('n_genes', 0):,} selected genes kept without re-normalising{spread}"
    )


def load_prepared(folder: str | Path) -> PreparedData:
    """The prepared data in cache folder ``folder`` (``PreparedData.info["cache_path"]``), its files
    checked against their recorded sha256 (ValueError when one differs or is missing). A task's child
    process (bench.executors.isolated) reads its data this way instead of preparing it again."""
    t0 = time.perf_counter()
    train, test, meta = _load_cached(Path(folder))
    meta.update(cached=True, load_seconds=time.perf_counter() - t0)
    return _result(meta["dataset"], train, test, meta)


def save_prepared(data: PreparedData) -> None:
    """Write a dataset that ``prepare(..., write_cache=False)`` returned into the cache (no-op if
    it is there already)."""
    folder = Path(data.info["cache_path"])
    if (folder / CHECKSUMS).exists():
        return
    meta = {k: v for k, v in data.info.items() if k not in ("cached", "load_seconds")}
    _write_cached(folder, data.train, data.test, meta)


def _result(name: str, train: ad.AnnData, test: ad.AnnData, meta: dict[str, Any]) -> PreparedData:
    return PreparedData(
        name=name,
        train=train,
        test=test,
        label_key=meta["label_key"],
        hash=meta["hash"],
        default_rare_class=meta["default_rare_class"],
        info=meta,
    )
