"""Maximum mean discrepancy on principal components (ACTIVA paper, section 5.3, Table 2)."""

from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from bench.metrics._utils import check_same_genes, equal_size, subsample

ESTIMATORS = ("unbiased", "biased")


@dataclass
class MmdResult:
    """``mmd``: the estimate of squared MMD (unbiased unless asked otherwise); ``scales``: the kernel bandwidths used;
    ``median_nn``: the median nearest-neighbour distance they derive from; ``n_real``/``n_fake``."""

    mmd: float
    scales: tuple[float, ...]
    median_nn: float
    n_real: int
    n_fake: int


def median_nn_distance(X, *, seed: int, k: int = 25, max_cells: int = 2000) -> float:
    """Median Euclidean distance of cells to their ``k - 1`` nearest neighbours (self excluded).

    As in the scGAN-lineage MMD (Shaham et al. 2017, used by Marouf et al. 2020; GRouNdGAN's
    re-implementation: k = 25 including self): computed on at most ``max_cells`` cells of ``X``
    (seeded subsample; the neighbours are searched among that subsample).
    """
    X = np.asarray(X, dtype=np.float64)
    X = subsample(X, max_cells, np.random.default_rng(seed))
    k = min(k, X.shape[0])
    if k < 2:
        raise ValueError("need at least two cells to estimate the kernel bandwidth")
    sq = (X * X).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * X @ X.T, 0.0)
    np.fill_diagonal(d2, np.inf)
    nn = np.sqrt(np.partition(d2, k - 2, axis=1)[:, : k - 1])
    return float(np.median(nn))


def _power_chain(coefs: list[float]) -> list[int] | None:
    """When every coefficient is the smallest one times 2^k (k >= 0), the k's; else None.

    Then exp(-c 2^k d) = exp(-c d)^(2^k): one exp per pair and repeated squaring instead of one
    exp per scale (the default scales med/2, med, 2 med give coefficients c, 4c, 16c)."""
    c0 = min(coefs)
    ks = []
    for c in sorted(coefs):
        k = round(math.log2(c / c0))
        if k < 0 or not math.isclose(c0 * 2.0**k, c, rel_tol=1e-9):
            return None
        ks.append(k)
    return ks


def _tile_kernel(d2: torch.Tensor, coefs: list[float], chain: list[int] | None) -> torch.Tensor:
    """sum_s exp(-coef_s * d2), computed in place in ``d2`` (which is consumed)."""
    if chain is None:
        acc = torch.zeros_like(d2)
        for c in coefs:
            acc.add_(torch.exp(d2 * (-c)))
        return acc
    e = d2.mul_(-min(coefs)).exp_()
    acc = e.clone()
    power = 0
    for k in chain[1:]:
        while power < k:
            e.square_()
            power += 1
        acc.add_(e)
    return acc


def _kernel_sum(A: torch.Tensor, B: torch.Tensor, coefs: list[float], same: bool, block: int) -> float:
    """Sum over all pairs (a, b), a != b when ``same``, of sum_s exp(-coef_s |a-b|^2), computed in
    ``block`` x ``block`` tiles (row sums in the tile dtype, then float64 accumulation); for
    ``same`` only the tiles on and above the diagonal are computed and off-diagonal tiles count
    twice. Memory: a few tiles, never the full n x n matrix."""
    chain = _power_chain(coefs)
    total = torch.zeros((), dtype=torch.float64, device=A.device)  # read once: no wait per tile
    nA, nB = A.shape[0], B.shape[0]
    sqA = (A * A).sum(1)
    sqB = (B * B).sum(1)
    for i in range(0, nA, block):
        a, sa = A[i : i + block], sqA[i : i + block]
        for j in range(i if same else 0, nB, block):
            b, sb = B[j : j + block], sqB[j : j + block]
            # |a|^2 + |b|^2 - 2 a.b
            d2 = torch.addmm(sb[None, :], a, b.T, alpha=-2.0).add_(sa[:, None]).clamp_min_(0.0)
            k = _tile_kernel(d2, coefs, chain)
            if same and i == j:
                k.fill_diagonal_(0.0)
            total.add_(k.sum(1).to(torch.float64).sum(), alpha=2.0 if (same and j != i) else 1.0)
    return float(total)


@contextmanager
def _full_fp32():
    """TF32 off for the kernel tiles (another stage of the run may have turned it on): the
    |a|^2 + |b|^2 - 2 a.b expansion needs fp32's mantissa."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def _fingerprint(X: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(X).tobytes()).hexdigest()


def mmd_speed_probe(real: np.ndarray, fake: np.ndarray, *, seed: int, device: str) -> float:
    """What the GPU check times (``Metric.speed_probe``): :func:`mmd` of two samples with the
    metric's defaults (float32 tiles) on ``device``."""
    return mmd(real, fake, seed=seed, device=device).mmd


def mmd_from_v1(value: str, options: dict) -> float:
    """What a value of a format-1 regression baseline is multiplied by to read as today's: format 1
    averaged the kernel over its scales, it is now summed, so an MMD times the number of scales
    (``options``: the metric options of the baseline's run; the default three scales)."""
    if value != "mmd":
        return 1.0
    return float(len(options.get("scales") or options.get("scale_factors") or (0.5, 1.0, 2.0)))


def mmd(
    real,
    fake,
    *,
    seed: int,
    scales: tuple[float, ...] | None = None,
    scale_factors: tuple[float, ...] = (0.5, 1.0, 2.0),
    max_cells: int | None = None,
    block_size: int = 4096,
    device: str = "cpu",
    dtype: str = "float32",
    estimator: str = "unbiased",
    cache: dict | None = None,
) -> MmdResult:
    """Squared maximum mean discrepancy with a multi-scale Gaussian kernel (unbiased by default).

    Definition (Gretton et al. 2012, Lemma 6 and Eq. 5; ACTIVA paper section 5.3 / Table 2
    "following Marouf et al." on the first 50 principal components)::

        unbiased: MMD_u^2 = 1/(m(m-1)) sum_{i!=j} k(x_i, x_j) + 1/(n(n-1)) sum_{i!=j} k(y_i, y_j)
                            - 2/(m n) sum_{i,j} k(x_i, y_j)
        biased:   MMD_b^2 = 1/m^2 sum_{i,j} k(x_i, x_j) + 1/n^2 sum_{i,j} k(y_i, y_j)
                            - 2/(m n) sum_{i,j} k(x_i, y_j)
        k(a, b) = sum_{s in scales} exp(-|a - b|^2 / (2 s^2))

    with x the real cells and y the generated cells. The kernel *sums* its S bandwidths, the usual
    convention of the multi-scale MMD in the single-cell generator literature (the scGAN-lineage
    code; GRouNdGAN's also sums, with each term weighted by S); k(a, a) = S. The unbiased
    estimator excludes the diagonal terms, so its value is ~0 (and may be slightly negative) for
    two samples of one distribution; the biased one includes them and is > 0 even then.

    Bandwidths: unless ``scales`` is given, s in ``scale_factors`` x ``med`` = {med/2, med, 2 med}
    where ``med`` is :func:`median_nn_distance` of the *real* cells (median distance to their 24
    nearest neighbours, seeded subsample of at most 2000 cells). This follows the scGAN lineage
    (Shaham et al. 2017 code used by Marouf et al.; GRouNdGAN uses the same three multiples of the
    same median), and because it depends on the real cells only, every model scored against the
    same test set gets the same kernel. Differences from GRouNdGAN's code (docs/metrics.md):
    unbiased instead of biased estimate by default, 2 s^2 in the exponent (the standard Gaussian
    kernel) instead of s^2, scales summed with weight 1 instead of S, one median over a seeded
    subsample instead of 19 bootstrap medians.

    Parameters
    ----------
    real, fake
        Cells x features (dense), e.g. 50 PCs of the log-normalised cells.
    seed
        Seeds the equal-size / ``max_cells`` subsample and the bandwidth subsample.
    scales
        Explicit kernel bandwidths (skips the median heuristic).
    max_cells
        Cap on cells per side (``None``: all). As everywhere in the evaluation contract the larger
        side is subsampled (seeded, without replacement) to the size of the smaller one.
    block_size
        Tile size; memory is O(block_size^2), never O(n^2).
    device, dtype
        Torch device ('cpu', 'cuda'; the metric adapters pass the run's device) and float precision
        for the kernel tiles ("float32" or "float64", never TF32); tile sums are accumulated in
        float64 on the device and read once per kernel sum.
    estimator
        "unbiased" (default) or "biased" (diagonal terms included, as GRouNdGAN's code).
    cache
        Optional dict in which the real-real kernel sum is kept, keyed by a hash of the real cells,
        the scales and the precision: scoring several models against one test set computes it
        once (the adapter passes ``EvalContext.cache``).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown MMD estimator {estimator!r}; use one of {ESTIMATORS}")
    check_same_genes(real, fake)
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    real, fake = equal_size(real, fake, seed, max_cells)
    m, n = real.shape[0], fake.shape[0]
    if m < 2 or n < 2:
        raise ValueError("MMD needs at least two cells per side")
    med = float("nan")
    if scales is None:
        med = median_nn_distance(real, seed=seed)
        if not med > 0:
            raise ValueError("median nearest-neighbour distance of the real cells is 0; pass scales=")
        scales = tuple(float(f) * med for f in scale_factors)
    scales = tuple(float(s) for s in scales)
    tdtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    dev = torch.device(device)
    # centre both sides on the real mean: distances are unchanged, the |a|^2+|b|^2-2ab
    # expansion loses less precision
    centre = real.mean(0, keepdims=True)
    X = torch.as_tensor(real - centre, dtype=tdtype, device=dev)
    Y = torch.as_tensor(fake - centre, dtype=tdtype, device=dev)
    coefs = [1.0 / (2.0 * s * s) for s in scales]
    key = ("kxx", _fingerprint(real), scales, dtype)
    with torch.no_grad(), _full_fp32():
        kxx = cache.get(key) if cache is not None else None
        if kxx is None:
            kxx = _kernel_sum(X, X, coefs, True, block_size)
            if cache is not None:
                cache[key] = kxx
        kyy = _kernel_sum(Y, Y, coefs, True, block_size)
        kxy = _kernel_sum(X, Y, coefs, False, block_size)
    if estimator == "unbiased":
        value = kxx / (m * (m - 1)) + kyy / (n * (n - 1)) - 2.0 * kxy / (m * n)
    else:  # the diagonal adds k(a, a) = S per cell
        S = len(scales)
        value = (kxx + m * S) / (m * m) + (kyy + n * S) / (n * n) - 2.0 * kxy / (m * n)
    return MmdResult(mmd=float(value), scales=scales, median_nn=med, n_real=m, n_fake=n)


__all__ = ["ESTIMATORS", "MmdResult", "median_nn_distance", "mmd"]
