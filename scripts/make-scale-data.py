#!/usr/bin/env python
"""Write a deterministic N-cell scale fixture (pbmc3k's genes and cell types, counts from the `nb`
model fitted to pbmc3k): test data for cost, not for biology (bench.datasets.scale).

    python scripts/make-scale-data.py 100000 scale-100k.h5ad            # 2,000 genes (default)
    python scripts/make-scale-data.py 1000000 scale-1M.h5ad --genes all  # all 16,634 genes
    bench run --models nb --dataset scale-100k.h5ad --label-key cell_type --experiments main
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.api.errors import UserError
from bench.datasets.scale import DEFAULT_GENES, write_scale_data


def _genes(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of genes or 'all'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"the number of genes must be positive, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n_cells", type=int, help="number of cells, e.g. 100000")
    parser.add_argument("out", help="output .h5ad")
    parser.add_argument(
        "--genes",
        type=_genes,
        default=DEFAULT_GENES,
        help=f"pbmc3k's HVGs to keep (default {DEFAULT_GENES}) or 'all'",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        print(f"\r{done:,}/{total:,} cells ({time.perf_counter() - t0:.0f} s)", end="", file=sys.stderr)

    try:
        out = write_scale_data(args.n_cells, args.out, genes=args.genes, seed=args.seed, progress=progress)
    except UserError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    print(f"\nwrote {out} ({args.n_cells:,} cells) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
