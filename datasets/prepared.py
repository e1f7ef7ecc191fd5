"""The contract between the dataset stage and everything after it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anndata as ad


@dataclass
class PreparedData:
    """A preprocessed, split dataset.

    ``train`` / ``test``: AnnData whose X is library-size normalised to 20,000 (float32 CSR, not
    logged), ``layers['counts']`` the raw counts of the same cells and genes (or, for published
    preprocessed files without counts, X itself), ``obs[label_key]`` string labels (categorical)
    and ``obs['split']``. ``hash``: content hash of the prepared data (keys the task cache).
    ``info``: provenance (source, file sha256, preprocessing parameters, sizes).
    """

    name: str
    train: ad.AnnData
    test: ad.AnnData
    label_key: str
    hash: str
    default_rare_class: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
