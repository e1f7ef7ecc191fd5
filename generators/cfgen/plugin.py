"""The ``cfgen`` generator: CFGen (Palma et al., ICLR 2025) in native PyTorch.

Stage 1 trains an autoencoder of the raw counts with a negative binomial likelihood whose mean is the
decoder's softmax times the cell's size factor; stage 2 trains a flow matching model in its latent
space with classifier-free guidance on the cell type. New cells: a size factor drawn for the
requested type, noise integrated through the guided field to a latent, decoded to NB means, counts
drawn from the NB. See docs/models/cfgen.md.
"""

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
from bench.generators.cfgen import settings
from bench.generators.cfgen.speed import CfgenSpeedProbe
from bench.generators.cfgen.train import CfgenTrainer, Rows, TrainConfig, steps_per_epoch

if TYPE_CHECKING:  # the torch-only path (speed_probe) runs without AnnData
    import anndata as ad

WEIGHTS_FILE = "cfgen_weights.pt"
CONFIG_FILE = "cfgen_config.json"
DENSE_LIMIT_BYTES = 1 << 30  # a sparse matrix whose dense float32 copy is larger stays sparse on the CPU
_TRAIN_KEYS = [k for k in TrainConfig.__dataclass_fields__ if k not in ("n_genes", "n_labels")]


class CfgenGenerator(Generator):
    """CFGen: NB autoencoder with size factors + latent flow matching with classifier-free guidance.

    Output scale: counts drawn from the decoder's negative binomial (integers), declared ``counts``.
    """

    name = "cfgen"
    conditional = True
    output_scale = "counts"
    needs_gpu = False
    paper = (
        "Palma et al., Multi-Modal and Multi-Attribute Generation of Single Cells with CFGen, ICLR 2025, "
        "arXiv:2407.11734"
    )
    code_url = "https://github.com/theislab/CFGen"
    description = "NB autoencoder + latent flow matching with classifier-free guidance (native PyTorch port)"
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
    ) -> CfgenSpeedProbe:
        return CfgenSpeedProbe(
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
        self.budget = Budget.parse(self.params["budget"], what="cfgen budget")
        self.trainer: CfgenTrainer | None = None
        self.device = torch.device("cpu")
        self._weights = np.zeros(0)

    # -- helpers ----------------------------------------------------------------------------------
    def _config(self, n_genes: int, n_labels: int) -> TrainConfig:
        return TrainConfig(n_genes=n_genes, n_labels=n_labels, **{k: self.params[k] for k in _TRAIN_KEYS})

    def _counts(self, train: ad.AnnData) -> tuple[Any, torch.Tensor]:
        """The raw training counts (``layers['counts']``, else X) on the training device, and each
        cell's total count (its size factor)."""
        X = train.layers.get("counts", train.X)
        values = X.data if sp.issparse(X) else np.asarray(X)
        if not np.all(np.isfinite(values)) or (values.size and values.min() < 0):
            raise UserError("cfgen: training counts contain NaN, inf or negative values", "pass raw counts")
        totals = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
        if (totals <= 0).any():
            raise UserError("cfgen: some training cells have no counts", "filter empty cells before the run")
        lib = torch.from_numpy(totals)
        dense_bytes = X.shape[0] * X.shape[1] * 4
        if sp.issparse(X) and self.device.type == "cpu" and dense_bytes > DENSE_LIMIT_BYTES:
            from bench.generators.activa.batches import SparseRows

            return SparseRows(X), lib
        Xt = torch.from_numpy(np.ascontiguousarray(X.toarray() if sp.issparse(X) else X, dtype=np.float32))
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            if dense_bytes <= float(self.params["gpu_max_fraction"]) * free:
                return Xt.to(self.device), lib
            return Xt.pin_memory(), lib
        return Xt, lib

    def _stage_steps(self, n_train: int) -> dict[str, int]:
        """Optimizer steps of each stage: the schedule's epochs, or a steps / epochs budget that
        rescales both stages by one factor (each keeps its share)."""
        p = self.params
        per = {
            "autoencoder": steps_per_epoch(n_train, int(p["ae_batch_size"])),
            "flow": steps_per_epoch(n_train, int(p["fm_batch_size"])),
        }
        epochs = {"autoencoder": int(p["ae_epochs"]), "flow": int(p["fm_epochs"])}
        steps = {s: epochs[s] * per[s] for s in per}
        if self.budget is None or self.budget.unit == "minutes":
            return steps
        if self.budget.unit == "steps":
            factor = self.budget.amount / sum(steps.values())
        else:
            factor = self.budget.amount / sum(epochs.values())
        return {s: max(1, round(factor * steps[s])) for s in steps}

    # -- fit ----------------------------------------------------------------------------------------
    def fit(self, train: ad.AnnData, ctx: FitContext) -> FitResult:
        self.device = torch.device(contract.resolve_device(ctx.device))
        if len(self.labels or []) < 1:
            raise UserError("cfgen needs cell type labels", f"check obs['{ctx.label_key}']")
        X, lib = self._counts(train)
        index = {lab: i for i, lab in enumerate(self.labels)}
        y = torch.tensor([index[str(v)] for v in train.obs[ctx.label_key].astype(str)], dtype=torch.long)
        cfg = self._config(X.shape[1], len(self.labels))
        self.trainer = trainer = CfgenTrainer(cfg, seed=ctx.seed, device=self.device)
        log_sf = torch.log(lib)
        trainer.register_size_factors(log_sf, y)
        counts = np.bincount(y.numpy(), minlength=len(self.labels)).astype(np.float64)
        self._weights = counts / counts.sum()
        y, log_sf = y.to(self.device), log_sf.float().to(self.device)
        rows = Rows(X, self.device)
        n = X.shape[0]
        history: dict[str, list[float]] = {}
        n_train = n - int(np.floor(float(self.params["valid_fraction"]) * n)) if n > 2 else n
        budget = self._stage_steps(n_train)
        seconds_limit = self.budget.seconds if self.budget is not None else None
        share = {s: budget[s] / sum(budget.values()) for s in budget}
        start = time.perf_counter()
        paused = 0.0
        from bench.generators.activa.progress import EpochProgress

        est_epochs = sum(-(-budget[s] // steps_per_epoch(n_train, int(self.params[k])))
                         for s, k in (("autoencoder", "ae_batch_size"), ("flow", "fm_batch_size")))  # fmt: skip
        with EpochProgress(ctx.progress, est_epochs) as bar:
            # stage 1: the NB autoencoder, on its own 90/10 split (released encoder_estimator.py)
            ae_train, ae_valid = trainer.split(n)
            stop = None if seconds_limit is None else start + share["autoencoder"] * seconds_limit
            while trainer.steps["autoencoder"] < budget["autoencoder"]:
                ctx.check_deadline(self.name)
                logs = trainer.ae_epoch(rows, y, ae_train, max_steps=budget["autoencoder"], stop_at=stop)
                logs["ae_valid_loss"] = trainer.ae_valid(rows, y, ae_valid)
                _record(history, "autoencoder", trainer.epochs["autoencoder"], logs)
                bar.advance(f"autoencoder epoch {trainer.epochs['autoencoder']}", logs)
                if not np.isfinite(logs["ae_loss"]):
                    raise TaskFailed(
                        f"cfgen: non-finite autoencoder loss at epoch {trainer.epochs['autoencoder']}"
                    )
                if stop is not None and time.perf_counter() >= stop:
                    break
            ae_seconds = time.perf_counter() - start
            trainer.encode_all(rows, n)
            # stage 2: the latent flow, on a split of its own (released cfgen_estimator.py)
            fm_train, fm_valid = trainer.split(n)
            ae_steps = trainer.steps["autoencoder"]
            snaps = ctx.snapshot_steps(budget["flow"]) if seconds_limit is None else []
            stage2_start = time.perf_counter()
            stop = None if seconds_limit is None else stage2_start + share["flow"] * seconds_limit
            if seconds_limit is not None and ctx.on_snapshot:
                snap_times = [f * share["flow"] * seconds_limit for f in sorted(ctx.snapshot_fractions)]
            else:
                snap_times = []
            while trainer.steps["flow"] < budget["flow"]:
                ctx.check_deadline(self.name)
                logs = trainer.fm_epoch(log_sf, y, fm_train, max_steps=budget["flow"], stop_at=stop)
                logs["fm_valid_loss"] = trainer.fm_valid(log_sf, y, fm_valid)
                _record(history, "flow", trainer.epochs["flow"], logs)
                bar.advance(f"flow epoch {trainer.epochs['flow']}", logs)
                if not np.isfinite(logs["fm_loss"]):
                    raise TaskFailed(f"cfgen: non-finite flow loss at epoch {trainer.epochs['flow']}")
                out_of_time = stop is not None and time.perf_counter() >= stop
                done = out_of_time or trainer.steps["flow"] >= budget["flow"]
                reached_steps = trainer.steps["flow"]
                reached_time = time.perf_counter() - stage2_start - paused
                due = [s for s in snaps if reached_steps >= s]
                snaps = [s for s in snaps if reached_steps < s]
                if snap_times and (done or reached_time >= snap_times[0]):
                    snap_times = [] if done else [t for t in snap_times if t > reached_time]
                    due = [reached_steps]
                if due:
                    paused += ctx.snapshot(
                        step=ae_steps + reached_steps,
                        cells_seen=trainer.cells_seen,
                        train_seconds=time.perf_counter() - start - paused,
                        cells=lambda k, seed: self.generate(k, seed=seed),
                    )
                if out_of_time:
                    break
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start - paused
        return FitResult(
            train_seconds=seconds,
            steps=trainer.step,
            cells_seen=trainer.cells_seen,
            epochs=trainer.epochs["autoencoder"] + trainer.epochs["flow"],
            history=history,
            extra={
                "device": str(self.device),
                "precision": "fp32",
                "tf32": bool(self.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32),
                "data_on_device": isinstance(X, torch.Tensor) and X.device == self.device,
                "autoencoder_steps": trainer.steps["autoencoder"],
                "flow_steps": trainer.steps["flow"],
                "autoencoder_epochs": trainer.epochs["autoencoder"],
                "flow_epochs": trainer.epochs["flow"],
                "autoencoder_seconds": ae_seconds,
                "flow_seconds": seconds - ae_seconds,
                "ae_valid_loss": history.get("ae_valid_loss", [float("nan")])[-1],
                "fm_valid_loss": history.get("fm_valid_loss", [float("nan")])[-1],
            },
        )

    # -- generate -----------------------------------------------------------------------------------
    def generate(self, n_cells: int | dict[str, int], *, seed: int) -> ad.AnnData:
        """Cells of the requested labels (an unconditional request draws labels by ``label_sampling``):
        a log size factor per cell, a latent from the guided flow, NB counts from the decoder."""
        trainer = self.trainer
        if trainer is None:
            raise TaskFailed("cfgen: generate() called before fit() or load()")
        total, per_label = split_request(n_cells)
        rng = np.random.default_rng(seed)
        if per_label is not None:
            unknown = sorted(set(per_label) - set(self.labels))
            if unknown:
                raise UserError(
                    f"cfgen: cannot generate unknown cell type(s) {unknown}",
                    f"choose from the training labels: {', '.join(self.labels)}",
                )
            labels = np.repeat(list(per_label), list(per_label.values())).astype(str)
        else:
            weights = self._weights if self.params["label_sampling"] == "proportional" else None
            labels = rng.choice(np.asarray(self.labels, dtype=str), size=total, p=weights)
        index = {lab: i for i, lab in enumerate(self.labels)}
        codes = torch.tensor([index[lab] for lab in labels], dtype=torch.long)
        gen = torch.Generator(device=trainer.device).manual_seed(int(seed))
        chunk = int(self.params["gen_chunk"])
        parts, nfe = [], 0
        for i in range(0, total, chunk):
            c = codes[i : i + chunk]
            log_sf = trainer.log_size_factors(c, self.params["size_factor"], gen)
            try:
                z1, evals = trainer.sample_latents(
                    c,
                    log_sf,
                    gen,
                    guidance_weight=float(self.params["guidance_weight"]),
                    solver=self.params["solver"],
                    ode_steps=int(self.params["ode_steps"]),
                    atol=float(self.params["atol"]),
                    rtol=float(self.params["rtol"]),
                )
            except RuntimeError as exc:
                raise TaskFailed(f"cfgen: {exc}") from exc
            nfe += evals
            mu, theta = trainer.nb_means(z1, log_sf, c)
            parts.append(sp.csr_matrix(trainer.sample_counts(mu, theta, rng)))
        X = (
            sp.vstack(parts, format="csr")
            if parts
            else sp.csr_matrix((0, len(self.var_names)), dtype=np.float32)
        )
        out = make_output(X, self.var_names, self.label_key, labels)
        out.uns["scgenbench"] = {"ode_field_evaluations": int(nfe)}
        return out

    # -- save / load ----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        if self.trainer is None:
            raise TaskFailed("cfgen: save() called before fit()")
        path = Path(path)
        self._write_meta(path)
        config = {"train_config": self.trainer.cfg.to_dict(), "label_weights": self._weights.tolist()}
        (path / CONFIG_FILE).write_text(json.dumps(config, indent=1))
        state = self.trainer.state_dict()
        state["ae"] = {k: v.cpu() for k, v in state["ae"].items()}
        state["flow"] = {k: v.cpu() for k, v in state["flow"].items()}
        torch.save(state, path / WEIGHTS_FILE)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> CfgenGenerator:
        path = Path(path)
        if not (path / WEIGHTS_FILE).exists():
            raise UserError(f"no CFGen model in {path}", f"expected {WEIGHTS_FILE} written by save()")
        gen = cls._read_meta(path)
        gen.device = torch.device(contract.resolve_device(device))
        config = json.loads((path / CONFIG_FILE).read_text())
        gen.trainer = CfgenTrainer(TrainConfig(**config["train_config"]), seed=0, device=gen.device)
        state = torch.load(path / WEIGHTS_FILE, map_location=gen.device, weights_only=True)
        gen.trainer.load_state_dict(state)
        gen._weights = np.asarray(config["label_weights"], dtype=np.float64)
        return gen


def _record(history: dict[str, list[float]], stage: str, epoch: int, logs: dict[str, float]) -> None:
    """Per-epoch history: the stage's own keys (``ae_*`` or ``fm_*``) and its epoch number."""
    history.setdefault(f"{stage}_epoch", []).append(float(epoch))
    for k, v in logs.items():
        history.setdefault(k, []).append(float(v))
