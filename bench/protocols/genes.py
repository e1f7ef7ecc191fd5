"""``genes``: every gene, library size 20,000 then log1p on both sides (bench.evaluation's transform;
the harness's default before protocols were an axis). Nothing is fit."""

from __future__ import annotations

from collections.abc import Mapping

from bench.protocols.base import Cells, Embedded, check_inputs, generated_lognorm, real_lognorm


class Genes:
    name = "genes"
    groupings: tuple[str, ...] = ()

    def __init__(self, grouping: str | None = None) -> None:
        if grouping is not None:
            raise ValueError("protocol 'genes' has no grouping")

    @property
    def key(self) -> str:
        return self.name

    def check(self) -> None:
        """Nothing to check: the protocol needs nothing outside the harness."""

    def apply(
        self, real_train: Cells, real_test: Cells, generated: Mapping[str, Cells], seed: int
    ) -> Embedded:
        """Real test cells and each model's cells log-normalised (sparse CSR, all genes); ``real_train``
        and ``seed`` are unused (nothing is fit)."""
        check_inputs(real_test, generated)
        real = real_lognorm(real_test)
        pairs = {m: (real, generated_lognorm(c)) for m, c in generated.items()}
        return Embedded(self.key, pairs, {"protocol": self.key, "n_features": int(real.shape[1])})
