"""Generators: the base interface, the container backend and one module per model.

The names below load on first use, so importing a model's torch-only modules (e.g.
``bench.generators.activa.train``, used by the GPU check) does not import AnnData."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["FitContext", "FitResult", "Generator", "validate_output"]

if TYPE_CHECKING:
    from bench.generators.base import FitContext, FitResult, Generator, validate_output


def __getattr__(name: str) -> Any:
    if name in __all__:
        from bench.generators import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
