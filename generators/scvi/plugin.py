"""The ``scvi`` generator: scVI (Lopez et al. 2018) from scvi-tools, conditional on cell type.

scVI is trained on the raw counts of the training cells with the cell type as a categorical
covariate of the decoder (and of the encoder with ``encode_label = true``). New cells are
made from the prior: z ~ N(0, I), a library size drawn from the empirical library sizes of the
cell's type in the training cells, and counts drawn from the decoder's NB (or ZINB) likelihood.
``mode = "posterior_predictive"`` instead resamples training cells of the type through the
encoder (z ~ q(z | x), the cell's own library size), for comparison. See docs/models/scvi.md.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from bench.api import (
    INTEGER_1,
    INTEGER_2,
    Budget,
    FitContext,
    FitResult,
    Generator,
    TaskFailed,
    UserError,
    make_output,
)
from bench.generators.baselines import label_plan
from bench.generators.counts import training_counts
from bench.generators.scvi.training import (
    import_scvi,
    max_epochs_heuristic,
    quiet_lightning,
    training_monitor,
)

MODES = ("prior", "posterior_predictive")
LIKELIHOODS = ("nb", "zinb")
DISPERSIONS = ("gene", "gene-cell")
MODEL_DIR = "scvi_model"


class ScviGenerator(Generator):
    """scVI with the cell type as a categorical covariate; new cells from the prior."""

    name = "scvi"
    conditional = True
    output_scale = "counts"
    paper = "Lopez et al., scVI, Nature Methods 15:1053-1058 (2018), doi:10.1038/s41592-018-0229-2"
    code_url = "https://github.com/scverse/scvi-tools"
    description = "scVI (scvi-tools) conditioned on cell type; new cells from z ~ N(0, I)"
    parameters: dict[str, Any] = {
        # model (scvi.model.SCVI; scvi-tools defaults except the likelihood, see docs/models/scvi.md)
        "n_latent": 10,
        "n_hidden": 128,
        "n_layers": 1,
        "dropout_rate": 0.1,
        "gene_likelihood": "nb",  # or "zinb" (scvi-tools' default)
        "dispersion": "gene",  # or "gene-cell" (no batch or label key is registered: no per-type form)
        "encode_label": False,  # true: the encoder sees the type too (scvi-tools' encode_covariates)
        # training (SCVI.train; 0 = scvi-tools' heuristic: min(400, 400 * 20,000 / cells) epochs)
        "max_epochs": 0,
        "n_epochs_kl_warmup": 400,  # epochs over which the KL weight rises to 1 (scvi-tools default)
        "early_stopping": False,
        "batch_size": 128,
        "lr": 1e-3,
        "train_size": 0.9,  # the rest is scvi-tools' validation split (elbo_validation in the history)
        # training budget: None = max_epochs; "N steps" / "N epochs" train exactly that long (the KL
        # warm-up keeps its share of the schedule); "N minutes" stops after the epoch that uses up the
        # time, within max_epochs (docs/models/scvi.md)
        "budget": None,
        # generation
        "mode": "prior",  # or "posterior_predictive"
        "gen_chunk": 10_000,  # cells decoded per forward pass
    }
    choices = {"gene_likelihood": LIKELIHOODS, "dispersion": DISPERSIONS, "mode": MODES}
    bounds = {
        "n_latent": INTEGER_1,
        "n_hidden": INTEGER_1,
        "n_layers": INTEGER_1,
        "dropout_rate": "[0, 1)",
        "max_epochs": "[0, inf) integer",
        "n_epochs_kl_warmup": "[0, inf) integer",
        "batch_size": INTEGER_2,
        "lr": "(0, inf)",
        "train_size": "(0, 1]",
        "gen_chunk": INTEGER_1,
    }
    profiles = {
        # CPU-sized: about a minute on pbmc3k's 2,429 training cells x 2,000 genes (2 cores): 120 epochs
        # at 3x the learning rate, the KL weight at 1 for the second half (docs/models/scvi.md)
        "quick": {"max_epochs": 120, "n_epochs_kl_warmup": 60, "lr": 3e-3},
        # scvi-tools' own defaults at the length scvi-tools chooses on pbmc3k (400 epochs of 18 steps, about
        # 3 CPU-minutes on 2,000 HVGs), as a budget in steps; KL warm-up over all of it, no early stopping.
        # No `bench tune` sweep has been run for scvi yet (docs/models/scvi.md)
        "standard": {"budget": "7200 steps"},
        # scVI's published settings are scvi-tools' defaults, at the length its heuristic chooses
        "paper": {},
    }
    resources = {"cpus": 4, "gpus": 1, "mem_gb": 16, "time_min": 120}

    def __init__(self, **params: Any):
        super().__init__(**params)  # types, choices and bounds of every parameter
        self.budget = Budget.parse(self.params["budget"], what="scvi budget")
        self.params["budget"] = None if self.budget is None else str(self.budget)
        self.model = None  # scvi.model.SCVI once fitted or loaded
        self._weights = np.zeros(0)

    # -- fit --------------------------------------------------------------------------------------
    def _anndata(self, train: ad.AnnData, label_key: str) -> ad.AnnData:
        counts, _ = training_counts(train, self.name)
        labels = pd.Categorical(train.obs[label_key].astype(str), categories=self.labels)
        adata = ad.AnnData(
            X=counts.astype(np.float32), obs=pd.DataFrame({label_key: labels}, index=train.obs_names)
        )
        adata.var_names = list(self.var_names)
        return adata

    def fit(self, train: ad.AnnData, ctx: FitContext) -> FitResult:
        scvi = import_scvi()
        p = self.params
        adata = self._anndata(train, ctx.label_key)
        if (np.asarray(adata.X.sum(axis=1)).ravel() <= 0).any():
            raise UserError("scvi: some training cells have no counts", "filter empty cells before the run")
        with quiet_lightning():
            scvi.settings.seed = int(ctx.seed)
            scvi.model.SCVI.setup_anndata(adata, categorical_covariate_keys=[ctx.label_key])
            self.model = scvi.model.SCVI(
                adata,
                n_latent=int(p["n_latent"]),
                n_hidden=int(p["n_hidden"]),
                n_layers=int(p["n_layers"]),
                dropout_rate=float(p["dropout_rate"]),
                gene_likelihood=p["gene_likelihood"],
                dispersion=p["dispersion"],
                encode_covariates=bool(p["encode_label"]),
            )
        self._set_library_sizes()
        max_epochs, max_steps, warmup = self._schedule(adata.n_obs)
        monitor = training_monitor(self, ctx)
        with quiet_lightning():
            self.model.train(
                max_epochs=max_epochs,
                max_steps=max_steps,
                accelerator="gpu" if ctx.device == "cuda" else "cpu",
                devices=1,
                train_size=float(p["train_size"]),
                batch_size=int(p["batch_size"]),
                early_stopping=bool(p["early_stopping"]),
                plan_kwargs={"lr": float(p["lr"]), **warmup},
                enable_progress_bar=bool(ctx.progress),
                enable_model_summary=False,
                callbacks=[monitor],
            )
        if monitor.error is not None:
            raise monitor.error
        self.model.module.eval()
        history = {k: [float(v) for v in df.iloc[:, 0].to_numpy()] for k, df in self.model.history.items()}
        trainer = self.model.trainer
        stopper = trainer.early_stopping_callback
        held_out = self.model.validation_indices
        with quiet_lightning():
            # get_elbo returns the ELBO; the history logs its negative per cell (lower is better)
            neg_elbo_validation = (
                -float(self.model.get_elbo(indices=held_out)) if len(held_out) else float("nan")
            )
        return FitResult(
            steps=int(trainer.global_step),
            cells_seen=int(monitor.cells_seen),
            epochs=int(trainer.current_epoch),
            history=history,
            extra={
                "device": str(self.model.device),
                "budget": p["budget"],
                "max_epochs": int(trainer.max_epochs),
                "max_steps": int(trainer.max_steps),  # -1: no limit in steps (max_epochs, a minutes budget)
                "train_cells": len(self.model.train_indices),
                "stopped_early": stopper is not None and int(stopper.stopped_epoch) > 0,  # early_stopping
                "elbo_train": history.get("elbo_train", [float("nan")])[-1],  # negative ELBO per cell
                "elbo_validation": neg_elbo_validation,  # the same, on the held-out (1 - train_size) cells
            },
        )

    def _schedule(self, n_cells: int) -> tuple[int, int, dict[str, int | None]]:
        """``max_epochs``, ``max_steps`` (-1: none) and the KL warm-up for lightning and scvi-tools.

        Without a budget: ``max_epochs`` (0: scvi-tools' heuristic) and the warm-up in epochs. A budget
        in steps or epochs becomes exactly that many optimizer steps (``per_epoch`` = batches of the
        ``ceil(train_size x cells)`` training cells), and the warm-up keeps its share of the unbudgeted
        schedule, in steps. A minutes budget keeps the unbudgeted schedule; the monitor stops it."""
        p = self.params
        epochs = int(p["max_epochs"]) or max_epochs_heuristic(n_cells)
        warmup = int(p["n_epochs_kl_warmup"])
        n_train = math.ceil(float(p["train_size"]) * n_cells)  # scvi-tools' DataSplitter
        per_epoch = max(1, math.ceil(n_train / int(p["batch_size"])))
        steps = None if self.budget is None else self.budget.steps(per_epoch)
        if steps is None:
            return epochs, -1, {"n_epochs_kl_warmup": warmup or None}
        warm_steps = round(min(warmup / epochs, 1.0) * steps)
        return (
            math.ceil(steps / per_epoch),
            steps,
            {"n_epochs_kl_warmup": None, "n_steps_kl_warmup": warm_steps or None},
        )

    def _set_library_sizes(self) -> None:
        """Per type: the training cells' library sizes, and the type proportions."""
        adata = self.model.adata
        codes = adata.obs[self.label_key].cat.codes.to_numpy()
        totals = np.asarray(adata.X.sum(axis=1)).ravel().astype(np.float64)
        self._libsizes = [totals[codes == i] for i in range(len(self.labels))]
        self._cells = [np.flatnonzero(codes == i) for i in range(len(self.labels))]
        counts = np.array([c.size for c in self._cells], dtype=np.float64)
        self._weights = counts / counts.sum()

    # -- generate ---------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n_cells: int | dict[str, int], *, seed: int) -> ad.AnnData:
        if self.model is None:
            raise TaskFailed("scvi: generate() called before fit() or load()")
        rng = np.random.default_rng(seed)
        labels = label_plan(self.labels, self._weights, n_cells, rng)
        index = {lab: i for i, lab in enumerate(self.labels)}
        codes = np.array([index[lab] for lab in labels], dtype=np.int64)
        chunk = int(self.params["gen_chunk"])
        parts = [self._draw(codes[i : i + chunk], rng) for i in range(0, codes.size, chunk)]
        X = sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, len(self.var_names)))
        return make_output(X, self.var_names, self.label_key, labels)

    def _draw(self, codes: np.ndarray, rng: np.random.Generator) -> sp.csr_matrix:
        module = self.model.module
        was_training = module.training
        module.eval()
        try:
            dev = self.model.device
            n = codes.size
            cat = torch.as_tensor(codes, dtype=torch.long, device=dev).unsqueeze(1)
            batch = torch.zeros((n, 1), dtype=torch.long, device=dev)
            if self.params["mode"] == "prior":
                z = rng.standard_normal((n, module.n_latent)).astype(np.float32)
                lib = np.empty(n)
                for i, pool in enumerate(self._libsizes):
                    rows = np.flatnonzero(codes == i)
                    if rows.size:
                        lib[rows] = rng.choice(pool, size=rows.size)
                z_t = torch.as_tensor(z, device=dev)
                lib_t = torch.as_tensor(np.log(lib), dtype=torch.float32, device=dev).unsqueeze(1)
            else:
                cells = np.empty(n, dtype=np.int64)
                for i, pool in enumerate(self._cells):
                    rows = np.flatnonzero(codes == i)
                    if rows.size:
                        cells[rows] = rng.choice(pool, size=rows.size)
                x = self.model.adata.X[cells]
                x_t = torch.as_tensor(
                    x.toarray() if sp.issparse(x) else np.asarray(x), dtype=torch.float32, device=dev
                )
                inf = module.inference(x_t, batch, cat_covs=cat)
                qz = inf["qz"]
                eps = torch.as_tensor(
                    rng.standard_normal((n, module.n_latent)).astype(np.float32), device=dev
                )
                z_t = module.z_encoder.z_transformation(qz.loc + qz.scale * eps)
                lib_t = inf["library"]
            px = module.generative(z_t, lib_t, batch, cat_covs=cat)["px"]
            mu = px.mu.double().cpu().numpy()
            theta = px.theta.double().cpu().numpy()
            rate = rng.gamma(np.broadcast_to(theta, mu.shape), mu / theta)
            X = rng.poisson(rate).astype(np.float32)
            if self.params["gene_likelihood"] == "zinb":
                dropout = torch.sigmoid(px.zi_logits).cpu().numpy()
                X[rng.random(X.shape) < dropout] = 0.0
            return sp.csr_matrix(X)
        finally:
            module.train(was_training)

    # -- save / load ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        if self.model is None:
            raise TaskFailed("scvi: save() called before fit()")
        path = Path(path)
        self._write_meta(path)
        self.model.save(str(path / MODEL_DIR), overwrite=True, save_anndata=True)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> ScviGenerator:
        scvi = import_scvi()
        path = Path(path)
        gen = cls._read_meta(path)
        with quiet_lightning():
            gen.model = scvi.model.SCVI.load(
                str(path / MODEL_DIR), accelerator="gpu" if device == "cuda" else "cpu"
            )
        gen.model.module.eval()
        gen._set_library_sizes()
        return gen
