"""The negative binomial noise model of CFGen's decoder (stage 1): its log-likelihood and sampler.

CFGen parameterises the NB by its mean ``mu`` and inverse dispersion ``theta`` as scvi-tools does
(``scvi.distributions.NegativeBinomial(mu=..., theta=...)`` in the released
``cfgen/models/base/encoder_model.py:_step`` and ``cfgen/models/fm/fm.py:sample``). Torch only.
"""

from __future__ import annotations

import numpy as np
import torch

EPS = 1e-8  # scvi-tools' log_nb_positive eps


def nb_log_prob(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Elementwise log NB(x | mean mu, inverse dispersion theta), as scvi-tools'
    ``log_nb_positive`` computes it (``scvi/distributions/_negative_binomial.py``)::

        theta (log theta - log(theta + mu)) + x (log mu - log(theta + mu))
            + lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)

    with ``eps`` inside the logarithms. Equals ``scipy.stats.nbinom.logpmf(x, n=theta,
    p=theta / (theta + mu))`` (tests/test_cfgen.py)."""
    log_theta_mu = torch.log(theta + mu + eps)
    return (
        theta * (torch.log(theta + eps) - log_theta_mu)
        + x * (torch.log(mu + eps) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )


def sample_nb(mu: np.ndarray, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Counts drawn as scvi-tools' ``NegativeBinomial.sample`` draws them: a gamma rate with shape
    ``theta`` and mean ``mu`` (rate ``theta / mu``), then a Poisson of that rate (clamped at 1e8
    as scvi-tools clamps it). float32 counts; ``mu = 0`` gives 0."""
    mu = np.asarray(mu, dtype=np.float64)
    shape = np.broadcast_to(np.asarray(theta, dtype=np.float64), mu.shape)
    rate = rng.gamma(shape, np.divide(mu, shape, out=np.zeros_like(mu), where=shape > 0))
    return rng.poisson(np.minimum(rate, 1e8)).astype(np.float32)
