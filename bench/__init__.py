"""scgenbench: a benchmarking harness for generative models of single-cell RNA-seq data."""

__version__ = "0.1.0"
