"""scGAN and cscGAN (Marouf et al. 2020) as container generators: the TensorFlow 2 port
(``scgan_tf/``, run by ``entry.py``) runs in the ``scgenbench/scgan`` image (or as a local process
where TensorFlow is installed). See docs/models/scgan.md for the architecture and faithfulness
notes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from bench.api import INTEGER_1, INTEGER_2, Budget
from bench.generators.container import ContainerGenerator

HERE = Path(__file__).resolve().parent
# the TensorFlow port that entry.py runs, copied into the image beside it (the Dockerfile's COPY)
PORT_FILES = tuple(f"scgan_tf/{m}.py" for m in ("__init__", "config", "model", "nets", "runtime", "train"))

# the port's defaults (scgan_tf/config.py, DEFAULTS; kept here so listing models does not import
# TensorFlow; a unit test checks that both agree)
MODEL_DEFAULTS: dict[str, Any] = {
    "latent_dim": 128,
    "gen_layers": [256, 512, 1024],
    "critic_layers": [1024, 512, 256],
    "output_lsn": 20_000.0,
    "lambd": 10.0,
    "lr_initial": 1e-4,
    "lr_final": 1e-5,
    "beta1": 0.5,
    "beta2": 0.9,
    "epsilon": 1e-8,
    "batch_size": 128,
    "critic_iters": 5,
    "max_steps": 1_000_000,
    "budget": None,  # None: max_steps; or "N steps" / "N epochs" / "N minutes" (docs/models/scgan.md)
    "extra_critic_update": True,
    "bn_decay": 0.999,
    "bn_eps": 1e-5,
    "critic_head": "per_class",
    "label_ratios": "keyed",
    "log_every": 10,
    "progress_every": 100,
    "xla": True,
}

# allowed values of the parameters (bench.api.options); ScGAN has no critic head or label ratios
MODEL_CHOICES: dict[str, tuple[Any, ...]] = {
    "critic_head": ("per_class", "projection"),
    "label_ratios": ("keyed", "legacy"),
}
MODEL_BOUNDS: dict[str, str] = {
    "latent_dim": INTEGER_1,
    "gen_layers": INTEGER_1,
    "critic_layers": INTEGER_1,
    "output_lsn": "(0, inf)",
    "lambd": "[0, inf)",
    "lr_initial": "(0, inf)",
    "lr_final": "(0, inf)",
    "beta1": "[0, 1)",
    "beta2": "[0, 1)",
    "epsilon": "(0, inf)",
    "batch_size": INTEGER_2,
    "critic_iters": INTEGER_1,
    "max_steps": INTEGER_1,
    "bn_decay": "[0, 1]",
    "bn_eps": "(0, inf)",
    "log_every": INTEGER_1,
    "progress_every": INTEGER_1,
}

# quick: ~1-2 minutes of CPU training on pbmc3k quick (2,430 cells x 2,000 genes); measured in
# docs/models/scgan.md. paper: the original's settings (max_steps 1,000,000 is its default).
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"max_steps": 60, "progress_every": 10},
    # the sweep's winner (`bench tune`, results/tuning/scgan-pbmc3k.md): learning rate 5e-3 -> 5e-4 at
    # batch 128, for 120 epochs of the critic = 380 steps on pbmc3k's 2,429 training cells; cscGAN
    # (same networks and optimiser) uses the same settings (docs/tuning.md)
    "standard": {
        "lr_initial": 5e-3,
        "lr_final": 5e-4,
        "batch_size": 128,
        "budget": "380 steps",
        "progress_every": 50,
    },
    "paper": {"max_steps": 1_000_000, "progress_every": 1000},
}


class ScGAN(ContainerGenerator):
    name: ClassVar[str] = "scgan"
    conditional: ClassVar[bool] = False
    output_scale: ClassVar[str] = "library-size-20000"
    needs_gpu: ClassVar[bool] = False
    paper: ClassVar[str] = (
        "Marouf et al. 2020, Realistic in silico generation and augmentation of single-cell RNA-seq data "
        "using generative adversarial networks, Nat Commun 11:166"
    )
    code_url: ClassVar[str] = "https://github.com/imsb-uke/scGAN"
    description: ClassVar[str] = (
        "Wasserstein GAN (WGAN-GP) with library-size normalised output; TF2 port in Docker"
    )
    image_name: ClassVar[str] = "scgan"
    image_variants: ClassVar[tuple[str, ...]] = ("cpu", "gpu")  # gpu: TensorFlow with CUDA (--device cuda)
    build_context: ClassVar[Path] = HERE
    build_files: ClassVar[tuple[str, ...]] = (
        "Dockerfile",
        "requirements.txt",
        "requirements-tf.txt",
        "requirements-tf-gpu.txt",
        "entry.py",
        *PORT_FILES,
    )
    entry_point: ClassVar[str] = "entry.py"
    process_requires: ClassVar[tuple[str, ...]] = ("tensorflow", "anndata", "h5py")
    parameters: ClassVar[dict[str, Any]] = {
        **ContainerGenerator.parameters,
        **{k: v for k, v in MODEL_DEFAULTS.items() if k not in MODEL_CHOICES},
    }
    bounds: ClassVar[dict[str, str]] = {**ContainerGenerator.bounds, **MODEL_BOUNDS}
    profiles: ClassVar[dict[str, dict[str, Any]]] = PROFILES
    resources: ClassVar[dict[str, Any]] = {"cpus": 4, "gpus": 1, "mem_gb": 16, "time_min": 24 * 60}

    # `bench tune` (docs/tuning.md): the learning rate's start (its end stays a tenth of it, as the
    # original's 1e-4 -> 1e-5) x batch size, every point for the same 120 epochs (cells through the
    # critic): about 6 minutes of 2-core CPU per point at batch 128, the effort every model gets
    tuning: ClassVar[dict[str, list[Any]]] = {"lr": [1e-4, 5e-4, 2e-3], "batch_size": [64, 128]}
    tuning_budget: ClassVar[str | None] = "120 epochs"

    @classmethod
    def tuning_params(cls, point: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in point.items() if k != "lr"}
        if "lr" in point:
            out["lr_initial"], out["lr_final"] = float(point["lr"]), float(point["lr"]) / 10
        return out

    def __init__(self, **params: Any):
        super().__init__(**params)
        # checked here (one clear line before any container starts), passed on in a canonical form
        budget = Budget.parse(self.params["budget"], what=f"{self.name} budget")
        self.params["budget"] = None if budget is None else str(budget)


class CscGAN(ScGAN):
    name: ClassVar[str] = "cscgan"
    conditional: ClassVar[bool] = True
    description: ClassVar[str] = (
        "conditional scGAN: conditional batch norm in the generator, per-class critic head; TF2 port in Docker"
    )
    parameters: ClassVar[dict[str, Any]] = {**ContainerGenerator.parameters, **MODEL_DEFAULTS}
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {**ContainerGenerator.choices, **MODEL_CHOICES}
