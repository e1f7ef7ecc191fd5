"""Generators: the base interface, the container backend and one module per model."""

from bench.generators.base import FitContext, FitResult, Generator, validate_output

__all__ = ["FitContext", "FitResult", "Generator", "validate_output"]
