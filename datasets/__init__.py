"""Datasets: recipes (bundled, download, local files), the scGAN preprocessing pipeline, splits.

Public API (used by the runner and the CLI)::

    prepare(dataset, *, label_key=None, split_seed=0, test_fraction=0.1, n_top_genes=None,
            cache_dir=None, progress=False, write_cache=True, check_orientation=True,
            normalisation='hvg') -> PreparedData
    describe_normalisation(info) -> str  (the run header's words for PreparedData.info)
    save_prepared(data)           (writes what prepare(..., write_cache=False) kept in memory)
    load_prepared(folder)         (a cached prepared folder, checked; what a task's child process reads)
    info(name) -> dict            add(name, path) -> dict
    list_datasets() -> list[dict] cache_dir() -> Path

See docs/datasets.md.
"""

from bench.datasets.api import (
    add,
    cache_dir,
    describe_normalisation,
    info,
    list_datasets,
    load_prepared,
    prepare,
    save_prepared,
)
from bench.datasets.prepared import PreparedData
from bench.datasets.readers import label_candidates
from bench.datasets.recipes import DatasetRecipe

__all__ = [
    "label_candidates",
    "PreparedData",
    "DatasetRecipe",
    "prepare",
    "info",
    "add",
    "list_datasets",
    "cache_dir",
    "load_prepared",
    "save_prepared",
    "describe_normalisation",
]
