"""scVI (scvi-tools) as a conditional generator; see docs/models/scvi.md. scvi-tools is imported
only when a model is fitted or loaded (the optional extra ``scgenbench[scvi]``)."""

from bench.generators.scvi.plugin import ScviGenerator

__all__ = ["ScviGenerator"]
