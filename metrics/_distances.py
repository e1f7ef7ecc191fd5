"""Blocked Euclidean distances between cell sets (torch, CPU or CUDA), shared by the metrics that
work on nearest neighbours or on sums of distances (energy distance, PRDC, memorisation).

Distances are computed in ``block`` x ``n`` tiles in float64 (at most ``MAX_TILE`` entries each,
never the full matrix when it does not fit a tile), from both sides centred on the first set's mean: the |a|^2 + |b|^2 - 2 a.b
expansion then keeps exact copies at distance ~1e-7 of the data's scale, not ~1e-3 as in float32.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

BLOCK = 2048
MAX_TILE = 2**24  # distances per tile (128 MB in float64): 275 rows against 61,000 training cells


def as_tensors(*arrays, device: str = "cpu") -> list[torch.Tensor]:
    """float64 tensors on ``device``, all centred on the mean of the first array (distances are
    unchanged, the dot-product expansion loses less precision)."""
    mats = [np.asarray(a, dtype=np.float64) for a in arrays]
    centre = mats[0].mean(0, keepdims=True) if len(mats[0]) else 0.0
    return [torch.as_tensor(m - centre, dtype=torch.float64, device=torch.device(device)) for m in mats]


def distance_tiles(
    A: torch.Tensor, B: torch.Tensor, block: int = BLOCK
) -> Iterator[tuple[int, torch.Tensor]]:
    """(row offset, Euclidean distances of ``A[i:i+block]`` to every row of ``B``) per tile; when
    ``A is B`` each row's distance to itself is exactly 0 (not the expansion's rounding error)."""
    sqB = (B * B).sum(1)
    block = max(1, min(block, MAX_TILE // max(B.shape[0], 1)))  # a tile holds at most MAX_TILE distances
    for i in range(0, A.shape[0], block):
        a = A[i : i + block]
        d2 = torch.addmm(sqB[None, :], a, B.T, alpha=-2.0).add_((a * a).sum(1)[:, None]).clamp_min_(0.0)
        if A is B:
            rows = torch.arange(a.shape[0], device=A.device)
            d2[rows, rows + i] = 0.0
        yield i, d2.sqrt_()


def distance_sum(A: torch.Tensor, B: torch.Tensor, block: int = BLOCK) -> float:
    """sum_{i,j} |a_i - b_j| over all pairs (the zero diagonal included when ``A is B``)."""
    total = 0.0
    for _, d in distance_tiles(A, B, block):
        total += float(d.sum(1).sum())
    return total


def nearest_distances(Q: torch.Tensor, R: torch.Tensor, block: int = BLOCK) -> np.ndarray:
    """Distance from each row of ``Q`` to its nearest row of ``R``."""
    out = torch.empty(Q.shape[0], dtype=Q.dtype, device=Q.device)
    for i, d in distance_tiles(Q, R, block):
        out[i : i + d.shape[0]] = d.min(1).values
    return out.cpu().numpy()


def kth_neighbour_distances(X: torch.Tensor, k: int, block: int = BLOCK) -> np.ndarray:
    """Distance from each row of ``X`` to its ``k``-th nearest *other* row of ``X`` (the row itself,
    at distance 0, is not counted; duplicates of it are)."""
    n = X.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be between 1 and n - 1 = {n - 1}, got {k}")
    out = torch.empty(n, dtype=X.dtype, device=X.device)
    for i, d in distance_tiles(X, X, block):
        rows = torch.arange(d.shape[0], device=X.device)
        d[rows, rows + i] = float("inf")  # exclude each row itself
        out[i : i + d.shape[0]] = torch.kthvalue(d, k, dim=1).values
    return out.cpu().numpy()


__all__ = ["as_tensors", "distance_sum", "distance_tiles", "kth_neighbour_distances", "nearest_distances"]
