"""The ``scdiffusion`` generator: native PyTorch scDiffusion (latent diffusion with classifier guidance)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch

from bench.api import (
    LIBRARY_SIZE,
    Budget,
    FitContext,
    FitResult,
    Generator,
    TaskFailed,
    UserError,
    contract,
    make_output,
    split_request,
)
from bench.generators.scdiffusion import settings
from bench.generators.scdiffusion.progress import StageProgress
from bench.generators.scdiffusion.speed import ScDiffusionSpeedProbe, to_model_scale
from bench.generators.scdiffusion.train import STAGES, ScDiffusionTrainer, TrainConfig

if TYPE_CHECKING:  # the torch-only path (speed_probe, the GPU check) runs without AnnData
    import anndata as ad

CONFIG_FILE = "scdiffusion_config.json"
WEIGHTS_FILE = "scdiffusion_weights.pt"
_TRAIN_KEYS = [k for k in TrainConfig.__dataclass_fields__ if k not in ("n_genes", "n_classes")]
LOG_EVERY = 50  # optimizer steps between loss records (and progress updates)


class ScDiffusion(Generator):
    """scDiffusion (Luo et al. 2024): an autoencoder maps log-normalised expression to a 128-d
    latent on the unit sphere, a DDPM learns the latents, and a classifier trained on noisy latents
    guides sampling towards a requested cell type.

    Output scale: the decoder's ReLU output is log1p of expression normalised to ``target_sum``
    (10,000) per cell, the scale it was trained on (cell_datasets_loader.py), declared ``log1p``; the
    evaluation contract inverts it with expm1 and normalises each cell to 20,000. See
    docs/models/scdiffusion.md.
    """

    name = "scdiffusion"
    conditional = True
    output_scale = "log1p"
    needs_gpu = False
    paper = (
        "Luo, Hao, Wei & Zhang, scDiffusion: conditional generation of high-quality single-cell data "
        "using diffusion model, Bioinformatics 40(9) btae518 (2024), doi:10.1093/bioinformatics/btae518"
    )
    code_url = "https://github.com/EperLuo/scDiffusion"
    description = (
        "Latent diffusion on an autoencoder's embedding, classifier-guided by cell type (native PyTorch port)"
    )
    parameters = settings.PARAMETERS
    choices = settings.CHOICES
    bounds = settings.BOUNDS
    profiles = settings.PROFILES
    resources = settings.RESOURCES
    tuning = settings.TUNING
    tuning_budget = settings.TUNING_BUDGET

    @classmethod
    def speed_probe(
        cls,
        n_genes: int,
        n_classes: int,
        *,
        seed: int,
        device: str,
        batch_size: int,
        precision: str,
        mode: str,
    ) -> ScDiffusionSpeedProbe:
        return ScDiffusionSpeedProbe(
            n_genes,
            n_classes,
            seed=seed,
            device=device,
            batch_size=batch_size,
            precision=precision,
            mode=mode,
        )

    def __init__(self, **params: Any):
        super().__init__(**params)  # types, choices and bounds of every parameter
        for key in ("denoiser_hidden", "classifier_hidden"):
            if len(self.params[key]) < (2 if key == "denoiser_hidden" else 3):
                raise UserError(
                    f"scdiffusion: {key} = {self.params[key]} is too short",
                    "give the denoiser at least two widths and the classifier three (released: [512, 512, 256, 128])",
                )
        if not self.params["ae_hidden"]:
            raise UserError(
                "scdiffusion: ae_hidden is empty", "give at least one width, e.g. [1024, 1024, 1024]"
            )
        anneal = self.params["diffusion_lr_anneal_steps"]
        if anneal is not None and int(anneal) < int(self.params["diffusion_train_steps"]):
            raise UserError(
                f"scdiffusion: diffusion_lr_anneal_steps {anneal} is below diffusion_train_steps",
                "the learning rate would reach 0 before training ends: raise it or leave it unset",
            )
        if self.params["noise_schedule"] == "linear" and int(self.params["diffusion_steps"]) < 20:
            raise UserError(
                "scdiffusion: the linear schedule needs diffusion_steps >= 20 (its last beta is 20 / steps)",
                "raise diffusion_steps (released: 1000) or use noise_schedule = 'cosine'",
            )
        if int(self.params["sampling_steps"]) > int(self.params["diffusion_steps"]):
            raise UserError(
                "scdiffusion: sampling_steps exceeds diffusion_steps",
                f"sample with at most diffusion_steps = {self.params['diffusion_steps']} steps",
            )
        self.budget = Budget.parse(self.params["budget"], what="scDiffusion budget")
        self.trainer: ScDiffusionTrainer | None = None
        self.device = torch.device("cpu")
        self._balance: torch.Tensor | None = None  # latents of every balance_every-th training cell

    # -- helpers --------------------------------------------------------------------------------
    def _config(self, n_genes: int, n_classes: int, n_cells: int) -> TrainConfig:
        cfg = TrainConfig(n_genes=n_genes, n_classes=n_classes, **{k: self.params[k] for k in _TRAIN_KEYS})
        steps = self.budget.steps(cfg.steps_per_epoch(n_cells)) if self.budget is not None else None
        return cfg.rescaled(steps) if steps is not None else cfg

    def _training_tensors(self, train: ad.AnnData, label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
        """log1p of the training cells normalised to ``target_sum`` (from X, normalised to 20,000),
        dense float32 on the device, and the label indices."""
        X = train.X
        values = X.data if sp.issparse(X) else np.asarray(X)
        if not np.all(np.isfinite(values)):
            raise UserError("training matrix contains NaN or inf", "clean or re-preprocess the dataset")
        if values.size and values.min() < 0:
            raise UserError(
                "training matrix has negative values (scaled or centred data?)",
                "pass library-size-normalised, non-logged expression (the scGAN preprocessing)",
            )
        if train.n_obs < 2:
            raise UserError("scdiffusion needs at least two training cells", "use a larger training set")
        dense = X.toarray() if sp.issparse(X) else np.asarray(X)
        Xt = torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32)).to(self.device)
        index = {lab: i for i, lab in enumerate(self.labels or [])}
        y = np.array([index[str(v)] for v in train.obs[label_key].astype(str)], dtype=np.int64)
        return to_model_scale(Xt, self.params["target_sum"], LIBRARY_SIZE), torch.from_numpy(y).to(
            self.device
        )

    # -- fit --------------------------------------------------------------------------------------
    def fit(self, train: ad.AnnData, ctx: FitContext) -> FitResult:
        self.device = torch.device(contract.resolve_device(ctx.device))
        if not self.labels:
            raise UserError("scdiffusion needs cell-type labels", f"check obs['{ctx.label_key}']")
        X, y = self._training_tensors(train, ctx.label_key)
        cfg = self._config(X.shape[1], len(self.labels), X.shape[0])
        self.trainer = trainer = ScDiffusionTrainer(cfg, seed=ctx.seed, device=self.device)
        self._balance = None
        history: dict[str, list[float]] = {}
        steps = cfg.stage_steps
        limit = self.budget.seconds if self.budget is not None else None
        share = {s: None if limit is None else limit * steps[s] / cfg.total_steps for s in STAGES}
        # convergence snapshots over the diffusion stage (the generative one; the autoencoder comes
        # first, the classifier only guides); under a minutes budget, at those fractions of its time
        offset = steps["autoencoder"]
        if limit is None:
            snapshots = [offset + s for s in ctx.snapshot_steps(steps["diffusion"])]
        else:
            snapshots = (
                [f * share["diffusion"] for f in sorted(ctx.snapshot_fractions)] if ctx.on_snapshot else []
            )
        start = time.perf_counter()
        paused = 0.0
        Z: torch.Tensor | None = None
        with StageProgress(ctx.progress, cfg.total_steps) as bar:
            for stage in STAGES:
                if stage == "diffusion":
                    Z = trainer.encode(X)
                    every = int(self.params["balance_every"])
                    self._balance = Z[::every].clone() if every else None
                stage_start = time.perf_counter() - paused
                running: list[torch.Tensor] = []
                accs: list[torch.Tensor] = []
                for k in range(1, steps[stage] + 1):
                    ctx.check_deadline("scdiffusion")
                    if stage == "autoencoder":
                        running.append(trainer.ae_step(X))
                    elif stage == "diffusion":
                        running.append(trainer.diffusion_step(Z))
                    else:
                        loss, acc = trainer.classifier_step(Z, y)
                        running.append(loss)
                        accs.append(acc)
                    last = k == steps[stage]
                    spent = time.perf_counter() - paused - stage_start
                    out_of_time = share[stage] is not None and spent >= share[stage]
                    if k % LOG_EVERY == 0 or last or out_of_time:
                        mean = float(torch.stack(running).mean())
                        if not np.isfinite(mean):
                            raise TaskFailed(f"scdiffusion: non-finite {stage} loss at step {trainer.step}")
                        history.setdefault(f"{stage}_step", []).append(float(trainer.stage_done[stage]))
                        history.setdefault(f"{stage}_loss", []).append(mean)
                        if accs:
                            history.setdefault("classifier_accuracy", []).append(
                                float(torch.stack(accs).mean())
                            )
                        bar.advance(stage, len(running), mean)
                        running, accs = [], []
                    if stage == "diffusion" and snapshots:
                        reached = trainer.step if limit is None else spent
                        if out_of_time:
                            snapshots = [reached]
                        while snapshots and reached >= snapshots[0]:
                            snapshots.pop(0)
                            paused += ctx.snapshot(
                                step=trainer.step,
                                cells_seen=trainer.cells_seen,
                                train_seconds=time.perf_counter() - start - paused,
                                cells=lambda n, seed: self.generate(n, seed=seed),
                            )
                    if out_of_time:
                        break
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start - paused
        acc = float((trainer.predict(Z).argmax(1) == y).float().mean())
        return FitResult(
            train_seconds=seconds,
            steps=trainer.step,
            cells_seen=trainer.cells_seen,
            history=history,
            extra={
                "device": str(self.device),
                "precision": "fp32",
                # TF32 matmuls are the process's setting (torch.backends), recorded as found
                "tf32": bool(self.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32),
                "data_on_device": X.device == trainer.device,
                "stage_steps": dict(trainer.stage_done),
                "diffusion_lr_anneal_steps": cfg.anneal_steps(),
                "classifier_train_accuracy_t0": acc,
            },
        )

    # -- generate ------------------------------------------------------------------------------
    def _require_trained(self) -> ScDiffusionTrainer:
        if self.trainer is None:
            raise TaskFailed("scdiffusion: generate() called before fit() or load()")
        return self.trainer

    def _latents(self, n: int, gen: torch.Generator, label: int | None) -> torch.Tensor:
        """``n`` latents, ``sample_batch`` per reverse pass; guided towards ``label`` when given
        (classifier_sample.py), unguided otherwise (cell_sample.py)."""
        trainer, p = self._require_trained(), self.params
        parts = []
        for i in range(0, n, int(p["sample_batch"])):
            parts.append(
                trainer.sample_latents(
                    min(int(p["sample_batch"]), n - i),
                    gen,
                    sampling_steps=int(p["sampling_steps"]),
                    clip=bool(p["clip_guided"] if label is not None else p["clip_unguided"]),
                    label=label,
                    scale=float(p["classifier_scale"]),
                    guide_below=int(p["start_guide_steps"]),
                    guide_window=str(p["guide_window"]),
                )
            )
        return torch.cat(parts) if parts else torch.zeros((0, trainer.cfg.latent_dim), device=trainer.device)

    def _decode(self, Z: torch.Tensor, balance: bool) -> torch.Tensor:
        """Decoded expression, ``decode_chunk`` cells per pass; with ``balance`` (batch statistics
        only) each pass also decodes the stored training latents, whose rows are then dropped."""
        trainer = self._require_trained()
        extra = self._balance if balance and self.params["bn_mode"] == "batch" else None
        parts = []
        for i in range(0, Z.shape[0], int(self.params["decode_chunk"])):
            z = Z[i : i + int(self.params["decode_chunk"])]
            if extra is not None:
                parts.append(trainer.decode(torch.cat([z, extra]))[: z.shape[0]].cpu())
            elif self.params["bn_mode"] == "batch" and z.shape[0] < 2:
                raise TaskFailed(
                    "scdiffusion: decoding one cell with batch statistics needs balance_every > 0"
                )
            else:
                parts.append(trainer.decode(z).cpu())
        return torch.cat(parts) if parts else torch.zeros((0, trainer.cfg.n_genes))

    def generate(self, n_cells: int | dict[str, int], *, seed: int) -> ad.AnnData:
        """An int request: unguided samples (cell_sample.py), decoded together. A per-label request:
        each label's latents guided by the classifier at ``classifier_scale`` (classifier_sample.py,
        one run per type), then all labels decoded together, as the released evaluation notebook
        does; a request that leaves out a training type is decoded with the training latents of
        ``balance_every`` (the notebook's 'balance the batchnorm')."""
        trainer = self._require_trained()
        total, per_label = split_request(n_cells)
        gen = torch.Generator(device=trainer.device).manual_seed(int(seed))
        if per_label is None:
            Z = self._latents(total, gen, None)
            return make_output(self._decode(Z, balance=total < 2).numpy(), self.var_names)
        unknown = sorted(set(per_label) - set(self.labels))
        if unknown:
            raise UserError(
                f"scdiffusion: cannot generate unknown cell type(s) {unknown}",
                f"choose from the training labels: {', '.join(self.labels)}",
            )
        want = {lab: n for lab, n in per_label.items() if n > 0}
        index = {lab: i for i, lab in enumerate(self.labels)}
        Z = [self._latents(n, gen, index[lab]) for lab, n in want.items()]
        latents = torch.cat(Z) if Z else torch.zeros((0, trainer.cfg.latent_dim), device=trainer.device)
        partial = set(want) != set(self.labels) or total < 2
        X = self._decode(latents, balance=partial).numpy()
        labels = [lab for lab, n in want.items() for _ in range(n)]
        out = make_output(X, self.var_names, self.label_key, labels)
        out.uns["scgenbench"] = {
            "guided": True,
            "balanced_decoding": bool(partial and self._balance is not None),
        }
        return out

    # -- save / load ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        trainer = self._require_trained()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self._write_meta(path)
        (path / CONFIG_FILE).write_text(json.dumps({"train_config": trainer.cfg.to_dict()}, indent=1))
        state = {k: _cpu(v) for k, v in trainer.state_dict().items()}
        state["balance"] = None if self._balance is None else self._balance.cpu()
        tmp = path / (WEIGHTS_FILE + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path / WEIGHTS_FILE)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> ScDiffusion:
        path = Path(path)
        if not (path / WEIGHTS_FILE).exists():
            raise UserError(f"no scDiffusion model in {path}", f"expected {WEIGHTS_FILE} written by save()")
        gen = cls._read_meta(path)
        gen.device = torch.device(contract.resolve_device(device))
        cfg = TrainConfig(**json.loads((path / CONFIG_FILE).read_text())["train_config"])
        state = torch.load(path / WEIGHTS_FILE, map_location=gen.device, weights_only=True)
        gen.trainer = ScDiffusionTrainer(cfg, seed=0, device=gen.device)
        gen.trainer.load_state_dict(state)
        gen._balance = state["balance"]
        return gen


def _cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    return obj
