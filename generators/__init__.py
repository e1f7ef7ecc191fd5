"""Generators: the base interface, the container backend and one module per model."""

from bench.generators.base import FitResult, Generator, validate_output

__all__ = ["FitResult", "Generator", "validate_output"]
