"""Datasets: recipes (bundled, download, local files), the scGAN preprocessing pipeline, splits."""

from bench.datasets.prepared import PreparedData

__all__ = ["PreparedData"]
