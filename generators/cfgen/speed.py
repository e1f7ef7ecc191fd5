"""CFGen's torch-only speed probe (``bench.api.SpeedProbe``): both training stages and the default
generation on tensors, for the GPU check. Torch only: no AnnData."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from bench.api import UserError
from bench.api.speed import TrainerProbe
from bench.generators.cfgen import settings
from bench.generators.cfgen.train import CfgenTrainer, Rows, TrainConfig


class CfgenSpeedProbe(TrainerProbe):
    """A fresh :class:`CfgenTrainer` of the released defaults with both stages' batch size set to
    ``batch_size``. One ``train_epoch`` = one autoencoder epoch, the encoding of every cell and one
    flow epoch over the same cells (all of them: no validation split), so its cells/s is that of the
    whole two-stage recipe. fp32 and eager only."""

    def __init__(
        self,
        n_genes: int,
        n_classes: int,
        *,
        seed: int,
        device: str,
        batch_size: int,
        precision: str,
        mode: str,
    ):
        if precision != "fp32" or mode != "eager":
            raise UserError(
                f"cfgen trains in fp32, eager only (asked for {precision}, {mode})",
                "time cfgen with precision fp32 and mode eager",
            )
        p = settings.PARAMETERS
        keys = [k for k in TrainConfig.__dataclass_fields__ if k not in ("n_genes", "n_labels")]
        cfg = TrainConfig(n_genes=n_genes, n_labels=n_classes, **{k: p[k] for k in keys})
        cfg.ae_batch_size = cfg.fm_batch_size = int(batch_size)
        self.trainer = CfgenTrainer(cfg, seed=seed, device=device)
        self._sf_ready = False

    def train_epoch(self, X: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        tr = self.trainer
        X, y = X.to(tr.device), y.to(tr.device)
        lib = X.sum(1).clamp_min(1e-8)
        if not self._sf_ready:
            tr.register_size_factors(torch.log(lib), y)
            self._sf_ready = True
        rows = Rows(X, tr.device)
        idx = torch.arange(X.shape[0], device=tr.device)
        inf = 1 << 62
        logs = tr.ae_epoch(rows, y, idx, max_steps=inf, stop_at=None)
        tr.encode_all(rows, X.shape[0])
        logs.update(tr.fm_epoch(torch.log(lib), y, idx, max_steps=inf, stop_at=None))
        if tr.device.type == "cuda":
            torch.cuda.synchronize(tr.device)
        return logs

    def sampler(self) -> tuple[int, Callable[[int, torch.Generator], torch.Tensor]]:
        """`cfgen`'s default generation: chunks of ``gen_chunk`` cells, uniform labels, log-normal
        size factors, the guided dopri5 flow, the decoder and NB counts (drawn with numpy on the
        host, as ``generate`` draws them), returned on the device."""
        p = settings.PARAMETERS
        tr = self.trainer

        def decode(n: int, gen: torch.Generator) -> torch.Tensor:
            labels = torch.randint(0, tr.cfg.n_labels, (n,), generator=gen, device=gen.device).cpu()
            log_sf = tr.log_size_factors(labels, p["size_factor"], gen)
            z1, _ = tr.sample_latents(
                labels,
                log_sf,
                gen,
                guidance_weight=float(p["guidance_weight"]),
                solver=p["solver"],
                ode_steps=int(p["ode_steps"]),
                atol=float(p["atol"]),
                rtol=float(p["rtol"]),
            )
            mu, theta = tr.nb_means(z1, log_sf, labels)
            rng = np.random.default_rng(
                int(torch.randint(0, 2**31 - 1, (), generator=gen, device=gen.device))
            )
            return torch.from_numpy(tr.sample_counts(mu, theta, rng)).to(tr.device)

        return int(p["gen_chunk"]), decode
