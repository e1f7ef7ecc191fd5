"""The ``activa`` generator: native PyTorch ACTIVA (introspective VAE + ACTINN conditioner)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch

from bench.api import (
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
from bench.generators.activa import settings
from bench.generators.activa.batches import SparseRows
from bench.generators.activa.conditional import fill_labels
from bench.generators.activa.generation import decode, generation_decoder
from bench.generators.activa.progress import EpochProgress, record_epoch
from bench.generators.activa.speed import ActivaSpeedProbe
from bench.generators.activa.train import ActivaTrainer, TrainConfig

if TYPE_CHECKING:  # the torch-only path (speed_probe, the GPU check) runs without AnnData
    import anndata as ad

CONFIG_FILE = "activa_config.json"
WEIGHTS_FILE = "activa_weights.pt"
# a sparse training matrix whose dense float32 copy would be larger stays sparse on the CPU
DENSE_LIMIT_BYTES = 1 << 30
_TRAIN_KEYS = [
    "zdim",
    "variant",
    "m",
    "weight_kl",
    "weight_rec",
    "weight_neg",
    "num_cf",
    "num_vae",
    "epochs",
    "classifier_epochs",
    "batch_size",
    "lr_e",
    "lr_g",
    "cf_lr",
    "cf_weight_decay",
    "cf_gamma",
    "cf_step",
    "bf16",
    "tf32",
    "cuda_graph",
]


def resolve_device(device: str | None) -> torch.device:
    """'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when available), as a torch device (bench.api.contract)."""
    return torch.device(contract.resolve_device(device))


class ActivaGenerator(Generator):
    """ACTIVA (Heydari et al. 2023): introspective VAE conditioned by an ACTINN classifier.

    Output scale: the decoder ends in a ReLU on the training data's scale (library size 20,000, not
    logged), without a library-size layer, so rows are non-negative but do not sum to exactly
    20,000; declared ``counts`` (non-negative expression values that the evaluation contract
    re-normalises per cell to 20,000 before log1p). See docs/models/activa.md.
    """

    name = "activa"
    conditional = True
    output_scale = "counts"
    needs_gpu = False
    paper = "Heydari et al., ACTIVA, Bioinformatics 39(4) btad151 (2023), doi:10.1093/bioinformatics/btad151"
    code_url = "https://github.com/SindiLab/ACTIVA"
    description = "Introspective VAE + ACTINN cell-type conditioner (native PyTorch port)"
    parameters = settings.PARAMETERS
    choices = settings.CHOICES
    bounds = settings.BOUNDS
    profiles = settings.PROFILES
    resources = settings.RESOURCES
    tuning = settings.TUNING
    tuning_budget = settings.TUNING_BUDGET

    @classmethod
    def tuning_params(cls, point: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in point.items() if k != "lr"}
        if "lr" in point:
            out["lr_e"] = out["lr_g"] = float(point["lr"])
        return out

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
    ) -> ActivaSpeedProbe:
        return ActivaSpeedProbe(
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
        self.budget = Budget.parse(self.params["budget"], what="ACTIVA budget")
        self.trainer: ActivaTrainer | None = None
        self.device = torch.device("cpu")
        self._gen_decoder: torch.nn.Module | None = None  # derived from the trained decoder, lazily

    # -- helpers --------------------------------------------------------------------------------
    def _config(self, n_genes: int, n_classes: int, n_cells: int) -> TrainConfig:
        cfg = TrainConfig(n_genes=n_genes, n_classes=n_classes, **{k: self.params[k] for k in _TRAIN_KEYS})
        steps = self.budget.steps(cfg.steps_per_epoch(n_cells)) if self.budget is not None else None
        return cfg.rescaled(steps, n_cells) if steps is not None else cfg

    def _training_tensors(
        self, train: ad.AnnData, label_key: str
    ) -> tuple[torch.Tensor | SparseRows, torch.Tensor]:
        """The training matrix and label indices for the trainer: dense float32, except a sparse
        matrix on the CPU whose dense copy would exceed ``DENSE_LIMIT_BYTES`` stays sparse and is
        densified one mini-batch at a time (:class:`SparseRows`; the same numbers, bounded memory)."""
        X = train.X
        values = X.data if sp.issparse(X) else np.asarray(X)
        if not np.all(np.isfinite(values)):
            raise UserError("training matrix contains NaN or inf", "clean or re-preprocess the dataset")
        if values.size and values.min() < 0:
            raise UserError(
                "training matrix has negative values (scaled or centred data?)",
                "pass library-size-normalised, non-logged expression (the scGAN preprocessing)",
            )
        index = {lab: i for i, lab in enumerate(self.labels or [])}
        yt = torch.from_numpy(
            np.array([index[str(v)] for v in train.obs[label_key].astype(str)], dtype=np.int64)
        )
        if sp.issparse(X) and self.device.type == "cpu" and X.shape[0] * X.shape[1] * 4 > DENSE_LIMIT_BYTES:
            return SparseRows(X), yt
        X = X.toarray() if sp.issparse(X) else X
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            if Xt.numel() * 4 <= float(self.params["gpu_max_fraction"]) * free:
                return Xt.to(self.device), yt.to(self.device)
            return Xt.pin_memory(), yt.pin_memory()
        return Xt, yt

    # -- fit --------------------------------------------------------------------------------------
    def fit(self, train: ad.AnnData, ctx: FitContext) -> FitResult:
        self.device = resolve_device(ctx.device)
        resume = self.params.get("resume_from")
        if resume:
            state = self._load_state(Path(resume))
            if list(state["meta"]["var_names"]) != list(self.var_names or []):
                raise UserError(
                    f"checkpoint {resume} was trained on other genes", "resume on the same dataset"
                )
            self.labels = state["meta"]["labels"]
        if len(self.labels or []) < 2:
            raise UserError(
                "ACTIVA needs at least two cell types to train ACTINN", f"check obs['{ctx.label_key}']"
            )
        X, y = self._training_tensors(train, ctx.label_key)
        cfg = self._config(X.shape[1], len(self.labels), X.shape[0])
        self.trainer = trainer = ActivaTrainer(cfg, seed=ctx.seed, device=self.device)
        self._gen_decoder = None
        if resume:
            trainer.load_state_dict(_to_device(state["weights"], self.device))
        history: dict[str, list[float]] = {}
        # convergence snapshots over the generative schedule (ACTINN-only pre-training excluded); under
        # a minutes budget, at those fractions of the time
        per_epoch = cfg.steps_per_epoch(X.shape[0])
        limit = self.budget.seconds if self.budget is not None else None
        if limit is None:
            schedule_start = trainer.step - trainer.epoch * per_epoch
            snapshots = [schedule_start + s for s in ctx.snapshot_steps(cfg.epochs * per_epoch)]
        else:
            snapshots = [f * limit for f in sorted(ctx.snapshot_fractions)] if ctx.on_snapshot else []
        start = time.perf_counter()
        paused = 0.0  # seconds spent in snapshots, left out of train_seconds
        total = max(cfg.classifier_epochs - trainer.cf_epoch, 0) + max(cfg.epochs - trainer.epoch, 0)
        with EpochProgress(ctx.progress, total) as bar:
            while trainer.cf_epoch < cfg.classifier_epochs:
                logs = trainer.run_classifier_epoch(X, y)
                record_epoch(history, {"phase": "classifier", **logs}, trainer.cf_epoch)
                bar.advance(f"ACTINN {trainer.cf_epoch}/{cfg.classifier_epochs}", logs)
            while trainer.epoch < cfg.epochs:
                ctx.check_deadline("activa")
                logs = trainer.run_epoch(X, y)
                record_epoch(history, {"phase": cfg.phase(trainer.epoch), **logs}, trainer.epoch)
                bar.advance(f"epoch {trainer.epoch}/{cfg.epochs} {cfg.phase(trainer.epoch)}", logs)
                every = int(self.params["checkpoint_every"])
                if every and ctx.work_dir is not None and trainer.epoch % every == 0:
                    self.save(Path(ctx.work_dir) / "checkpoint")
                if not all(np.isfinite(v) for v in logs.values()):
                    raise TaskFailed(f"activa: non-finite loss at epoch {trainer.epoch}: {logs}")
                trained = time.perf_counter() - start - paused
                out_of_time = limit is not None and trained >= limit
                reached = trainer.step if limit is None else trained
                if out_of_time and snapshots:  # the budget ends here: one last snapshot
                    snapshots = [reached]
                while snapshots and reached >= snapshots[0]:
                    snapshots.pop(0)
                    self._gen_decoder = None  # generation statistics of the current weights
                    paused += ctx.snapshot(
                        step=trainer.step,
                        cells_seen=trainer.cells_seen,
                        train_seconds=trained,
                        cells=lambda n, seed: self.generate(n, seed=seed),
                    )
                    self._gen_decoder = None
                if out_of_time:
                    break
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start - paused
        probs = trainer.predict(X)
        acc = float((probs.argmax(1) == y.cpu()).float().mean()) if len(y) else float("nan")
        return FitResult(
            train_seconds=seconds,
            steps=trainer.step,
            cells_seen=trainer.cells_seen,
            epochs=trainer.epoch,
            history=history,
            extra={
                "variant": cfg.variant,
                "device": str(self.device),
                # numerics in effect (bf16/TF32/graphs only ever on CUDA), recorded with the values
                "bf16": trainer.bf16,
                "tf32": trainer.tf32,
                "cuda_graph": trainer.cuda_graph,
                "graphed_steps": trainer.graphed_steps,
                "data_on_device": X.device == trainer.device,
                "actinn_train_accuracy": acc,
                "classifier_steps": trainer.cf_steps,
                "vae_steps": trainer.vae_steps,
                "introspective_steps": trainer.intro_steps,
            },
        )

    # -- generate ------------------------------------------------------------------------------
    def _require_trained(self) -> ActivaTrainer:
        if self.trainer is None:
            raise TaskFailed("activa: generate() called before fit() or load()")
        return self.trainer

    def _generation_decoder(self) -> torch.nn.Module:
        """The decoder as generation runs it (a copy; see :func:`generation_decoder`)."""
        trainer = self._require_trained()
        if self._gen_decoder is None:
            self._gen_decoder = generation_decoder(
                trainer, self.params["generation_bn"], int(self.params["bn_calibration_cells"])
            )
        return self._gen_decoder

    def _decode(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return decode(self._require_trained(), self._generation_decoder(), n, gen)

    def classify(self, X: np.ndarray | sp.spmatrix | torch.Tensor) -> np.ndarray:
        """ACTINN's predicted labels for cells on the training scale (library size 20,000)."""
        trainer = self._require_trained()
        if sp.issparse(X):
            X = X.toarray()
        Xt = X if isinstance(X, torch.Tensor) else torch.from_numpy(np.asarray(X, dtype=np.float32))
        idx = trainer.predict(Xt).argmax(1).numpy()
        return np.asarray(self.labels)[idx]

    def generate(self, n_cells: int | dict[str, int], *, seed: int) -> ad.AnnData:
        """Decode z ~ N(0, I). A per-label request is filled by ACTINN's confidence filter and its
        fallback rules (:func:`~bench.generators.activa.conditional.fill_labels`);
        ``uns['scgenbench']['conditional_fill']`` records how many cells of each label each rule
        supplied."""
        trainer = self._require_trained()
        total, per_label = split_request(n_cells)
        gen = torch.Generator(device=trainer.device).manual_seed(int(seed))
        chunk = int(self.params["gen_chunk"])
        if per_label is None:
            parts = [self._decode(min(chunk, total - i), gen).cpu() for i in range(0, total, chunk)]
            X = torch.cat(parts).numpy() if parts else np.zeros((0, len(self.var_names)), np.float32)
            return make_output(X, self.var_names)
        unknown = sorted(set(per_label) - set(self.labels))
        if unknown:
            raise UserError(
                f"activa: cannot generate unknown cell type(s) {unknown}",
                f"choose from the training labels: {', '.join(self.labels)}",
            )
        threshold = float(self.params["confidence"])
        X, labels, fill, drawn = fill_labels(
            lambda n: self._decode(n, gen),
            trainer.predict,
            per_label,
            self.labels,
            chunk=chunk,
            max_draws=int(self.params["max_draws"]),
            threshold=threshold,
        )
        out = make_output(X, self.var_names, self.label_key, labels)
        out.uns["scgenbench"] = {"conditional_fill": fill, "decoded_cells": drawn, "confidence": threshold}
        return out

    # -- save / load ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        trainer = self._require_trained()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self._write_meta(path)
        (path / CONFIG_FILE).write_text(json.dumps({"train_config": trainer.cfg.__dict__}, indent=1))
        tmp = path / (WEIGHTS_FILE + ".tmp")
        torch.save(_to_device(trainer.state_dict(), torch.device("cpu")), tmp)
        tmp.replace(path / WEIGHTS_FILE)

    @staticmethod
    def _load_state(path: Path) -> dict[str, Any]:
        if not (path / WEIGHTS_FILE).exists():
            raise UserError(f"no ACTIVA checkpoint in {path}", f"expected {WEIGHTS_FILE} written by save()")
        meta = json.loads((path / "generator.json").read_text())
        config = json.loads((path / CONFIG_FILE).read_text())["train_config"]
        weights = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        return {"meta": meta, "config": config, "weights": weights}

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> ActivaGenerator:
        path = Path(path)
        state = cls._load_state(path)
        gen = cls._read_meta(path)
        gen.device = resolve_device(device)
        cfg = TrainConfig(**state["config"])
        gen.trainer = ActivaTrainer(cfg, seed=0, device=gen.device)
        gen.trainer.load_state_dict(_to_device(state["weights"], gen.device))
        return gen


# -- small helpers ------------------------------------------------------------------------------


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        # generator states and counters stay on the CPU
        return obj if obj.dtype in (torch.uint8, torch.int64) and obj.dim() <= 1 else obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    return obj
