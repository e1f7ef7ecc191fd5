"""Adapter for the ORIGINAL scGAN image (imsb-uke/scGAN, TensorFlow 1.8, ``ghcr.io/imsb-uke/scgan``),
referenced by digest only (a tag can be moved to other code).

It writes the original's ``parameters.json`` from the run spec, runs
``python main.py --param /work/parameters.json --process --train`` and
``python main.py --param ... --generate --cells_no N0 N1 ... --model_path EXP --save_path OUT`` in
the image (work dir bind-mounted at /work, the image's code in /scGAN), and reads its h5ad back.

Decisions (docs/models/scgan.md):

* cscGAN only: the original's scGAN generation path does ``int(cells_no)`` on the argparse list and
  raises a TypeError as written, so only the conditional model can generate through its CLI.
* labels are passed as preset clusters (``clustering.res = null``, obs 'cluster'); cluster ids are
  given by decreasing class size, so the original's ratio-ordering bug maps every ratio to its own
  cluster (the workaround of upstream issue #2);
* filtering is switched off (min_cells = min_genes = 0): the harness already prepared the data and the
  output must keep the training genes; the split takes ``valid_cells`` (default 128, the smallest
  number that gives its t-SNE validation one batch) out of the training cells, test_cells 0;
* the input file is written in the anndata 0.6 layout (dense X, compound obs/var tables) because the
  image's anndata 0.6.18 cannot read files of anndata >= 0.7 (upstream issue #19);
* the TF 1.8 GPU image cannot import TensorFlow without the NVIDIA runtime (issue #15): needs a GPU.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, ClassVar

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from bench.api import INTEGER_1, INTEGER_2, FitContext, FitResult, TaskFailed, UserError, split_request
from bench.api.sandbox import read_container_h5ad
from bench.generators.container import ContainerGenerator, docker_client, run_docker

ORIGINAL_REPOSITORY = "ghcr.io/imsb-uke/scgan"
# The digest of the published image. Not recorded yet: no registry was reachable where the sandbox
# work was done. Whoever pulls the image fills it in (docs/models/scgan.md, "The original image"):
#   docker pull ghcr.io/imsb-uke/scgan && docker inspect --format '{{index .RepoDigests 0}}' ghcr.io/imsb-uke/scgan
ORIGINAL_DIGEST: str | None = None
ORIGINAL_IMAGE: str | None = f"{ORIGINAL_REPOSITORY}@{ORIGINAL_DIGEST}" if ORIGINAL_DIGEST else None
PIN_HELP = (
    "pull it and pass the digest reference, e.g. --config with [models.scgan_original] "
    f"image = '{ORIGINAL_REPOSITORY}@sha256:...' (`docker inspect --format '{{{{index .RepoDigests 0}}}}' "
    f"{ORIGINAL_REPOSITORY}` prints it)"
)
_PINNED = re.compile(r"^[^\s@]+@sha256:[0-9a-f]{64}$")
EXPERIMENT = "scgenbench"
EXP_DIR = "/work/experiments"
INPUT_NAME = "train_original.h5ad"


def pinned_image(ref: str | None) -> str:
    """``ref`` when it names an image by digest (``repo@sha256:<64 hex>``); a UserError otherwise."""
    if not ref:
        raise UserError(
            "the original scGAN image has no pinned digest in this version of scgenbench", PIN_HELP
        )
    if not _PINNED.match(str(ref)):
        raise UserError(f"image {ref!r} is not referenced by digest (a tag can change under you)", PIN_HELP)
    return str(ref)


def natural_key(s: str) -> list[Any]:
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(s))]


def cluster_ids(labels) -> dict[str, str]:
    """label -> cluster id ('0', '1', ...) by decreasing class size (ties: natural label order)."""
    values, counts = np.unique(np.asarray(labels).astype(str), return_counts=True)
    order = sorted(
        zip(values.tolist(), counts.tolist(), strict=True), key=lambda vc: (-vc[1], natural_key(vc[0]))
    )
    return {label: str(i) for i, (label, _) in enumerate(order)}


def original_parameters(params: dict[str, Any], *, seed: int, gpu: bool = True) -> dict[str, Any]:
    """The original's parameters.json (upstream-models.md section 3.3), one experiment."""
    return {
        "exp_param": {"experiments_dir": EXP_DIR, "GPU": [0]},
        "experiments": {
            EXPERIMENT: {
                "input_ds": {
                    "raw_input": f"/work/{INPUT_NAME}",
                    "clustering": {"res": None},
                    "filtering": {"min_cells": 0, "min_genes": 0},
                    "scale": "normalize_per_cell_LS_20000",
                    "split": {
                        "balanced_split": True,
                        "split_seed": int(seed),
                        "test_cells": 0,
                        "valid_cells": int(params["valid_cells"]),
                    },
                },
                "training": {
                    "max_steps": int(params["max_steps"]),
                    "learning_rate": {
                        "decay": True,
                        "alpha_0": params["lr_initial"],
                        "alpha_final": params["lr_final"],
                    },
                    "optimizer": {"algorithm": "AMSGrad", "beta1": params["beta1"], "beta2": params["beta2"]},
                    "batch_size": int(params["batch_size"]),
                    "critic_iters": int(params["critic_iters"]),
                    "checkpoint": None,
                    "progress_freq": 10,
                    "validation_freq": int(params["validation_freq"]),
                    "save_freq": int(params["save_freq"]),
                    "summary_freq": 50,
                },
                "model": {
                    "type": "cscGAN",
                    "latent_dim": int(params["latent_dim"]),
                    "output_LSN": 20000,
                    "critic_layers": list(params["critic_layers"]),
                    "gen_layers": list(params["gen_layers"]),
                    "critic_cond_type": "proj",
                    "gen_cond_type": "batchnorm",
                    "lambd": params["lambd"],
                },
            }
        },
    }


def train_command() -> list[str]:
    return ["python", "main.py", "--param", "/work/parameters.json", "--process", "--train"]


def generate_command(cells_no: list[int], save_path: str = "/work/generated_original.h5ad") -> list[str]:
    return [
        "python",
        "main.py",
        "--param",
        "/work/parameters.json",
        "--generate",
        "--cells_no",
        *[str(int(n)) for n in cells_no],
        "--model_path",
        f"{EXP_DIR}/{EXPERIMENT}",
        "--save_path",
        save_path,
    ]


def write_legacy_h5ad(
    path: Path, X, obs_names, var_names, clusters: np.ndarray, categories: list[str]
) -> None:
    """An h5ad in the anndata 0.6 layout: dense X, obs/var as compound datasets with an 'index'
    field, categorical obs 'cluster' as integer codes plus uns['cluster_categories']."""
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    codes = np.array([categories.index(c) for c in clusters], dtype=np.int64)
    obs_names = np.asarray(obs_names).astype(str)
    var_names = np.asarray(var_names).astype(str)
    obs = np.zeros(
        len(obs_names),
        dtype=[("index", f"S{max(1, max(map(len, obs_names), default=1))}"), ("cluster", "i8")],
    )
    obs["index"] = np.char.encode(obs_names, "utf-8")
    obs["cluster"] = codes
    var = np.zeros(len(var_names), dtype=[("index", f"S{max(1, max(map(len, var_names), default=1))}")])
    var["index"] = np.char.encode(var_names, "utf-8")
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=X.astype(np.float32))
        f.create_dataset("obs", data=obs)
        f.create_dataset("var", data=var)
        f.create_group("uns").create_dataset(
            "cluster_categories", data=np.char.encode(np.asarray(categories, str), "utf-8")
        )


def read_original_output(
    path: Path, var_names: list[str], id_to_label: dict[str, str], label_key: str
) -> ad.AnnData:
    """The original's generated h5ad (obs_names 'fake', 'fake-1', ..., obs 'cluster' as cluster ids,
    no var names) -> our format: training genes as var_names, obs[label_key] with the labels."""
    out = read_container_h5ad(path)
    if out.n_vars != len(var_names):
        raise TaskFailed(
            f"original scGAN generated {out.n_vars} genes, the training data had {len(var_names)}"
        )
    X = out.X if sp.issparse(out.X) else sp.csr_matrix(np.asarray(out.X))
    res = ad.AnnData(X=sp.csr_matrix(X, dtype=np.float32))
    res.var_names = list(var_names)
    res.obs_names = [f"gen-{i}" for i in range(res.n_obs)]
    if "cluster" in out.obs:
        ids = out.obs["cluster"].astype(str).to_numpy()
        unknown = sorted(set(ids) - set(id_to_label))
        if unknown:
            raise TaskFailed(f"original scGAN generated unknown cluster ids {unknown}")
        names = [id_to_label[i] for i in ids]
        res.obs[label_key] = pd.Categorical(
            names, categories=sorted(set(id_to_label.values()), key=natural_key)
        )
    return res


class ScGANOriginal(ContainerGenerator):
    """The published cscGAN code in its own image (TF 1.8, GPU only): a faithfulness reference."""

    name: ClassVar[str] = "scgan_original"
    conditional: ClassVar[bool] = True
    output_scale: ClassVar[str] = "library-size-20000"
    needs_gpu: ClassVar[bool] = True
    paper: ClassVar[str] = "Marouf et al. 2020, Nat Commun 11:166 (original code)"
    code_url: ClassVar[str] = "https://github.com/imsb-uke/scGAN"
    description: ClassVar[str] = "the original cscGAN (TensorFlow 1.8) in ghcr.io/imsb-uke/scgan (by digest)"
    image_name: ClassVar[str] = ""  # not built here: pulled from the upstream registry
    image: ClassVar[str | None] = ORIGINAL_IMAGE
    command_inputs: ClassVar[dict[str, tuple[str, ...]]] = {
        "train": ("parameters.json", INPUT_NAME),
        "generate": ("parameters.json", INPUT_NAME),
    }
    parameters: ClassVar[dict[str, Any]] = {
        **ContainerGenerator.parameters,
        "backend": "docker",
        "image": ORIGINAL_IMAGE,
        "max_steps": 1_000_000,
        "latent_dim": 128,
        "gen_layers": [256, 512, 1024],
        "critic_layers": [1024, 512, 256],
        "lambd": 10.0,
        "lr_initial": 1e-4,
        "lr_final": 1e-5,
        "beta1": 0.5,
        "beta2": 0.9,
        "batch_size": 128,
        "critic_iters": 5,
        "valid_cells": 128,
        "validation_freq": 1000,
        "save_freq": 1000,
    }
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {"backend": ("docker",)}
    bounds: ClassVar[dict[str, str]] = {
        **ContainerGenerator.bounds,
        "max_steps": INTEGER_1,
        "latent_dim": INTEGER_1,
        "gen_layers": INTEGER_1,
        "critic_layers": INTEGER_1,
        "lambd": "[0, inf)",
        "lr_initial": "(0, inf)",
        "lr_final": "(0, inf)",
        "beta1": "[0, 1)",
        "beta2": "[0, 1)",
        "batch_size": INTEGER_2,
        "critic_iters": INTEGER_1,
        "valid_cells": INTEGER_1,
        "validation_freq": INTEGER_1,
        "save_freq": INTEGER_1,
    }
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"max_steps": 300},
        "paper": {"max_steps": 1_000_000},
    }
    resources: ClassVar[dict[str, Any]] = {"cpus": 4, "gpus": 1, "mem_gb": 16, "time_min": 24 * 60}

    def _docker(self, argv: list[str], what: str, progress: bool) -> None:
        client = docker_client()
        if client is None:
            raise UserError(
                "no Docker engine answers", "start Docker; the original scGAN runs only in its image"
            )
        image = pinned_image(self.params["image"])
        try:
            client.images.get(image)
        except Exception as exc:
            raise UserError(f"image {image} is not available locally", f"docker pull {image}") from exc
        run_docker(
            image,
            what,
            self._work(),
            device=self._device,
            timeout_s=self._timeout_s,
            progress=progress,
            limits=self.limits(),
            sandbox=self.sandbox_policy(),
            inputs=self.command_inputs[what],
            client=client,
            what=f"{self.name} {what}",
            argv=argv,
            working_dir="/scGAN",
        )

    def prepare_fit(self, train: ad.AnnData, *, label_key: str, seed: int) -> Path:
        """Write parameters.json and the legacy-format input; returns the work dir."""
        if label_key not in train.obs:
            raise UserError(
                f"the original cscGAN needs labels: obs['{label_key}'] is missing", "pass --label-key"
            )
        work = self._work()
        self.id_map = cluster_ids(train.obs[label_key])
        values, counts = np.unique(train.obs[label_key].astype(str).to_numpy(), return_counts=True)
        self.class_sizes = dict(zip(values.tolist(), counts.tolist(), strict=True))
        ids = [self.id_map[str(x)] for x in train.obs[label_key].astype(str)]
        cats = sorted(self.id_map.values(), key=int)
        write_legacy_h5ad(work / INPUT_NAME, train.X, train.obs_names, self.var_names, np.asarray(ids), cats)
        (work / "parameters.json").write_text(
            json.dumps(original_parameters(self.params, seed=seed), indent=1)
        )
        (work / "label_map.json").write_text(json.dumps(self.id_map))
        if (work / "experiments").exists():
            shutil.rmtree(work / "experiments")  # --process fails when the experiment folder exists
        return work

    def fit(self, train, ctx: FitContext) -> FitResult:
        self._device = ctx.device
        self._work_dir = Path(ctx.work_dir) if ctx.work_dir is not None else None
        left = ctx.time_left()
        self._timeout_s = None if left is None else max(left, 1.0)
        self.prepare_fit(train, label_key=ctx.label_key, seed=ctx.seed)
        self._docker(train_command(), "train", ctx.progress)
        self._fitted = True
        # the harness times the fit (the original's time includes its preprocessing, --process,
        # seconds on pbmc-sized data, and the container start)
        # cells seen: real cells the critic read, 6 critic updates per step (step 0: one), as the port
        steps = int(self.params["max_steps"])
        critic = 1 + max(steps - 1, 0) * (int(self.params["critic_iters"]) + 1)
        return FitResult(
            steps=steps,
            cells_seen=critic * int(self.params["batch_size"]),
            extra={"image": self.params["image"]},
        )

    def cells_no(self, n_cells: int | dict[str, int], seed: int) -> list[int]:
        total, per_label = split_request(n_cells)
        if per_label is None:  # an integer request: split by the training class sizes (largest remainder)
            labels = list(self.class_sizes)
            share = np.array([self.class_sizes[k] for k in labels], dtype=float)
            share = share / share.sum() * total
            alloc = np.floor(share).astype(int)
            for i in np.argsort(-(share - alloc), kind="stable")[: total - int(alloc.sum())]:
                alloc[i] += 1
            per_label = dict(zip(labels, alloc.tolist(), strict=True))
        counts = [0] * len(self.id_map)
        for label, n in per_label.items():
            if label not in self.id_map:
                raise UserError(
                    f"label {label!r} was not in the training data", f"known: {sorted(self.id_map)}"
                )
            counts[int(self.id_map[label])] = int(n)
        return counts

    def generate(self, n_cells, *, seed: int) -> ad.AnnData:
        work = self._work()
        if not self._fitted:
            raise TaskFailed(f"{self.name}: generate called before fit")
        out_path = work / "generated_original.h5ad"
        out_path.unlink(missing_ok=True)
        self._docker(generate_command(self.cells_no(n_cells, seed)), "generate", False)
        inverse = {v: k for k, v in self.id_map.items()}
        return read_original_output(out_path, self.var_names or [], inverse, self.label_key or "cluster")
