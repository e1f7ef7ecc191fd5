"""A re-creation of the ORIGINAL ACTIVA introspective training loop, for the speed comparison.

Written from the facts in the shared reference (upstream-models.md sections 1.2-1.5), not copied:
what the released ``ACTIVA.py`` does per epoch, with its costs:

* ``torch.autograd.set_detect_anomaly(True)`` globally;
* a ``DataLoader`` (shuffle, batch 128) over a dataset whose items are densified rows of the
  expression matrix, collated per batch (``num_workers`` is 24 upstream; 0 here, the best choice on
  a 2-core machine);
* encoder / decoder called through ``torch.nn.parallel.data_parallel`` on multi-GPU (plain call
  on CPU, where data_parallel cannot run);
* ``cf_model.eval()`` every batch and ``f(x)`` computed with a graph into ACTINN's parameters;
* the second pass: re-encode ``rec.detach()`` and ``fake.detach()`` with the updated encoder,
  ``L_G.backward()`` without zeroing G's gradients, then ``optimizerG.step()``;
* ``fake = decoder(noise)`` with a graph although only its detached copy is used;
* default (foreach) Adam.

The networks are this package's (identical architecture), so the comparison measures the loop.
``generator`` (None = the global RNG, as upstream) only exists so a test can feed both loops the
same random draws and check they train identically.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn.parallel import data_parallel
from torch.utils.data import DataLoader, Dataset


class RowDataset(Dataset):
    """Items are (dense row, label); a sparse matrix is densified row by row, as upstream."""

    def __init__(self, X, y):
        self.X = X if sp.issparse(X) else np.asarray(X, dtype=np.float32)
        self.y = np.asarray(y, dtype=np.int64)

    def __len__(self) -> int:
        return self.X.shape[0]

    def __getitem__(self, i):
        row = self.X[i]
        row = row.toarray().ravel() if sp.issparse(row) else row
        return torch.tensor(row, dtype=torch.float32), int(self.y[i])


def make_loader(X, y, *, batch_size: int = 128, seed: int = 0, num_workers: int = 0) -> DataLoader:
    return DataLoader(
        RowDataset(X, y),
        batch_size=batch_size,
        shuffle=True,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )


def _kl(mu, logvar):
    return (-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)).mean()


class OriginalLoop:
    """State of the released loop: model halves, classifier, the two Adam optimisers."""

    def __init__(
        self, encoder: nn.Module, decoder: nn.Module, cf: nn.Module, *, lr: float = 2e-4, zdim: int = 128
    ):
        self.encoder, self.decoder, self.cf, self.zdim = encoder, decoder, cf, zdim
        self.opt_e = torch.optim.Adam(encoder.parameters(), lr=lr)
        self.opt_g = torch.optim.Adam(decoder.parameters(), lr=lr)
        self.mse_sum = nn.MSELoss(reduction="sum")

    # upstream wraps calls as IntroVAE does: data_parallel over the GPUs when the input is a CUDA
    # tensor and several GPUs are used, else a plain call (data_parallel cannot run on CPU)
    def _call(self, module, x):
        if x.is_cuda and torch.cuda.device_count() > 1:
            return data_parallel(module, x, list(range(torch.cuda.device_count())))
        return module(x)

    def encode(self, x):
        return self._call(self.encoder, x)

    def decode(self, z):
        return self._call(self.decoder, z)

    def step(self, x, *, m=110.0, weight_kl=1.0, weight_rec=0.05, weight_neg=0.5, generator=None):
        self.encoder.train()
        self.decoder.train()
        self.cf.eval()
        real_cls = self.cf(x)  # graph into ACTINN's parameters, as upstream
        noise = torch.randn((x.shape[0], self.zdim), generator=generator)
        fake = self.decode(noise)
        mu, logvar = self.encode(x)
        std = torch.exp(0.5 * logvar)
        z = mu + torch.randn(std.shape, generator=generator) * std
        rec = self.decode(z)
        rec_cls = self.cf(rec)
        rec_mu, rec_logvar = self.encode(rec.detach())
        fake_mu, fake_logvar = self.encode(fake.detach())
        loss_rec = (rec - x).pow(2).sum(1).mean()
        loss_cls = self.mse_sum(rec_cls, real_cls)
        kl_real, kl_rec, kl_fake = _kl(mu, logvar), _kl(rec_mu, rec_logvar), _kl(fake_mu, fake_logvar)
        loss_margin = kl_real + (torch.relu(m - kl_rec) + torch.relu(m - kl_fake)) * 0.5 * weight_neg
        loss_e = weight_kl * loss_margin + weight_rec * (loss_cls + loss_rec)
        self.opt_g.zero_grad()
        self.opt_e.zero_grad()
        loss_e.backward(retain_graph=True)
        self.opt_e.step()
        # second pass, as coded: detached inputs, no zero_grad of G before its step
        rec_mu, rec_logvar = self.encode(rec.detach())
        fake_mu, fake_logvar = self.encode(fake.detach())
        loss_g = weight_kl * 0.5 * (_kl(rec_mu, rec_logvar) + _kl(fake_mu, fake_logvar))
        loss_g.backward()
        self.opt_g.step()
        return float(loss_e.detach())

    def epoch(self, loader: DataLoader, **kw) -> float:
        total = 0.0
        with torch.autograd.set_detect_anomaly(True):
            for x, _ in loader:
                if x.shape[0] < 2:
                    continue
                total += self.step(x, **kw)
        return total
