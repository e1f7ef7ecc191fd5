"""scDesign2-style simulator: per-type NB marginals joined by a Gaussian copula; see docs/models/copula.md."""

from bench.generators.copula.plugin import GaussianCopula

__all__ = ["GaussianCopula"]
