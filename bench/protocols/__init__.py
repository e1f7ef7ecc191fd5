"""Evaluation protocols: how real test cells and generated cells are brought into one space before
any sample metric (docs/metrics.md, "Evaluation protocols"; DESIGN.md, evaluation contract).

A protocol is a pure transform ``apply(real_train, real_test, generated, seed) -> Embedded``
(:mod:`bench.protocols.base`), named by a key that every value it produces records:

* ``genes``: every gene, library size 20,000 then log1p (:mod:`.genes`);
* ``pca-real``: HVGs, scaling and a 50-PC PCA fit on real training cells only (:mod:`.pca_real`);
* ``paper:joint`` / ``paper:pairwise``: the authors' Seurat post-processing in R in a container
  (:mod:`.seurat`);
* ``harmony:joint`` / ``harmony:pairwise``: a Python stand-in for ``paper`` (harmonypy), for machines
  without Docker (:mod:`.harmony`); never reported as ``paper``.
"""

from __future__ import annotations

from bench.protocols.base import GROUPINGS, Embedded
from bench.protocols.genes import Genes
from bench.protocols.harmony import Harmony
from bench.protocols.pca_real import PcaReal, PcaRealFit, fit_pca_real
from bench.protocols.seurat import Paper

PROTOCOLS = {cls.name: cls for cls in (Genes, PcaReal, Paper, Harmony)}


def get_protocol(spec: str, **options):
    """The protocol named by ``spec``: ``name`` or ``name:grouping`` (``paper`` and ``harmony`` are
    grouped ``joint`` unless ``:pairwise`` is given). ``options`` go to its constructor."""
    name, _, grouping = spec.partition(":")
    cls = PROTOCOLS.get(name)
    if cls is None:
        raise ValueError(f"unknown protocol {spec!r}; use one of {sorted(PROTOCOLS)}")
    if grouping and grouping not in cls.groupings:
        raise ValueError(f"protocol {name!r} has no grouping {grouping!r}")
    return cls(grouping or None, **options)


def protocol_keys() -> list[str]:
    """Every protocol key (``genes``, ``pca-real``, ``paper:joint``, ...)."""
    return [f"{n}:{g}" if g else n for n, cls in PROTOCOLS.items() for g in (cls.groupings or ("",))]


__all__ = [
    "GROUPINGS",
    "PROTOCOLS",
    "Embedded",
    "Genes",
    "Harmony",
    "Paper",
    "PcaReal",
    "PcaRealFit",
    "fit_pca_real",
    "get_protocol",
    "protocol_keys",
]
