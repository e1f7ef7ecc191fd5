"""The base class of generators that run in a Docker image or a local process through the work-dir
protocol (:class:`ContainerGenerator`); the choice of its backend is :mod:`.backend`, the check
of the ``fit.json`` it reads back :mod:`.fitjson`.

The protocol (DESIGN.md): the harness writes ``train.h5ad`` and ``spec.json`` into a work dir,
bind-mounts it at ``/work`` and runs the image's entry point with ``fit /work`` or
``generate /work``; the entry point writes ``fit.json`` + ``model/`` (and convergence snapshots in
``snapshots/``) or ``generated.h5ad`` back. Logs go to ``WORKDIR/container.log`` and, with progress, to the console.
Any framework model reuses this by subclassing :class:`ContainerGenerator` and setting
``image_name``, ``build_context`` and ``entry_point``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import anndata as ad
import pandas as pd

from bench.api import FitContext, FitResult, Generator, TaskFailed, UserError, split_request
from bench.api.docker import context_hash, run_docker
from bench.api.logs import USER_ERROR_FILE, user_error
from bench.api.sandbox import Limits, Sandbox, container_file, parse_size, read_container_h5ad, resolve_limits
from bench.generators.container import images
from bench.generators.container.backend import BACKENDS, select_backend
from bench.generators.container.fitjson import read_fit_json
from bench.generators.container.images import IMAGE_PREFIX, ensure_image
from bench.generators.container.process import run_process

# parameters that steer the runner; everything else goes to the entry point in spec.json
RUNNER_PARAMS = ("backend", "mem_limit", "cpu_limit")


class ContainerGenerator(Generator):
    """A generator whose fit/generate run in a Docker image (or a local process) through the
    work-dir protocol. Subclasses set ``image_name``, ``build_context`` (the folder holding the
    Dockerfile), ``build_files`` (files sent to the build; empty = all), ``entry_point`` (the script
    in ``build_context`` for backend 'process') and ``process_requires`` (modules it needs).

    The container runs in the sandbox of docs/docker.md (security model); ``sandbox`` declares the
    relaxations a model truly needs (e.g. ``{"network": "bridge"}``), shown by `bench list`.
    ``command_inputs`` names the work-dir paths each command reads: they are mounted read-only.
    Parameters ``mem_limit`` ('16g') and ``cpu_limit`` (4) override the limits that otherwise come
    from ``resources`` (or the Slurm allocation) for one run."""

    image_name: ClassVar[str] = ""
    # the image variants its Dockerfile builds (build arg VARIANT when more than one): a run on
    # device 'cuda' uses "gpu" where there is one
    image_variants: ClassVar[tuple[str, ...]] = ("cpu",)
    build_context: ClassVar[Path | None] = None
    build_files: ClassVar[tuple[str, ...]] = ()
    entry_point: ClassVar[str] = "entry.py"
    process_requires: ClassVar[tuple[str, ...]] = ()
    parameters: ClassVar[dict[str, Any]] = {"backend": "auto", "mem_limit": None, "cpu_limit": None}
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {"backend": BACKENDS}
    bounds: ClassVar[dict[str, str]] = {"cpu_limit": "(0, inf)"}
    sandbox: ClassVar[dict[str, Any]] = {}
    command_inputs: ClassVar[dict[str, tuple[str, ...]]] = {
        "fit": ("train.h5ad", "spec.json"),
        "generate": ("spec.json", "model"),
    }

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        Sandbox.declared(cls.sandbox, owner=f"generator {cls.name or cls.__name__}")  # fail at import
        if cls.image_name and cls.build_context is not None:
            images.IMAGES.setdefault(cls.image_name, cls)

    def __init__(self, **params: Any):
        super().__init__(**params)
        if self.params["mem_limit"] is not None:
            parse_size(self.params["mem_limit"])  # a size docker cannot read: UserError before the run
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._work_dir: Path | None = None  # the fit's work dir (FitContext), else a temp dir
        self._timeout_s: float | None = None  # per container call, from the fit's deadline
        self._backend: str | None = None
        self._device = "cpu"
        self._fitted = False
        self._model_src: Path | None = None  # a saved model dir (load), copied into the work dir on use
        self._image: str | None = None  # the image tag the docker backend ran

    # -- hooks -------------------------------------------------------------------------------
    @classmethod
    def build_args(cls, variant: str = "cpu") -> dict[str, str]:
        """Build arguments besides BASE_IMAGE: VARIANT for an image with several variants."""
        return {"VARIANT": variant} if len(cls.image_variants) > 1 else {}

    @classmethod
    def image_tag(cls, base_id: str, variant: str = "cpu") -> str:
        """``scgenbench/<image_name>:<variant>-<hash of the build files, build args and the base
        image's id>``."""
        h = context_hash(Path(cls.build_context), cls.build_files, base_id, cls.build_args(variant))
        return f"{IMAGE_PREFIX}/{cls.image_name}:{variant}-{h}"

    @classmethod
    def image_variant(cls, device: str) -> str:
        """The image variant a run on ``device`` uses: "gpu" on CUDA where the model has one."""
        return "gpu" if str(device).startswith("cuda") and "gpu" in cls.image_variants else "cpu"

    @classmethod
    def sandbox_policy(cls) -> Sandbox:
        return Sandbox.declared(cls.sandbox, owner=f"generator {cls.name}")

    @classmethod
    def sandbox_relaxations(cls) -> list[str]:
        return cls.sandbox_policy().relaxations()

    @classmethod
    def metadata(cls) -> dict[str, Any]:
        return {**super().metadata(), "sandbox": ", ".join(cls.sandbox_policy().relaxations()) or "default"}

    def limits(self) -> Limits:
        """Memory, CPU and GPU limits of this generator's containers (or processes)."""
        return resolve_limits(type(self).resources, self.params, device=self._device)

    def spec_extra(self) -> dict[str, Any]:
        """Model-specific fields of spec.json."""
        return {"conditional": self.conditional}

    # -- plumbing -----------------------------------------------------------------------------
    def _work(self) -> Path:
        if self._work_dir is None:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix=f"scgenbench-{self.name}-")
            self._work_dir = Path(self._tmp.name)
        self._work_dir.mkdir(parents=True, exist_ok=True)
        return self._work_dir

    def _write_spec(self, work: Path, **fields: Any) -> None:
        spec = {
            **self.spec_extra(),
            "params": {k: v for k, v in self.params.items() if k not in RUNNER_PARAMS},
            "label_key": self.label_key,
            "device": self._device,
            **fields,
        }
        tmp = work / "spec.json.tmp"
        tmp.write_text(json.dumps(spec, indent=1))
        tmp.replace(work / "spec.json")

    def choose_backend(self) -> str:
        """'docker' or 'process' for this generator's ``backend`` parameter (:func:`select_backend`)."""
        return select_backend(self.params.get("backend", "auto"), self.process_requires, name=self.name)

    @classmethod
    def docker_image(cls, client, variant: str = "cpu") -> str:
        """The tag of the image the docker backend runs, built first when it is not there."""
        return ensure_image(cls, client, progress=True, variant=variant)

    def command_argv(self, command: str) -> list[str] | None:
        """The container's command for ``command`` ('fit' | 'generate'); None: ``[command, /work]``
        after the image's entry point."""
        return None

    def write_inputs(self, train: ad.AnnData, work: Path) -> None:
        """Write what the ``fit`` command reads: ``train.h5ad`` (X as the harness hands it to
        ``fit``: library-size normalised; obs[label_key]) by default."""
        slim = ad.AnnData(X=train.X, obs=pd.DataFrame(index=train.obs_names.astype(str)))
        slim.var_names = self.var_names
        if self.label_key in train.obs:
            slim.obs[self.label_key] = train.obs[self.label_key].astype(str).to_numpy()
        slim.write_h5ad(work / "train.h5ad")

    def read_generated(self, work: Path) -> ad.AnnData:
        """The cells the ``generate`` command wrote (``generated.h5ad``)."""
        path = work / "generated.h5ad"
        if not path.exists():
            raise TaskFailed(f"{self.name}: generate finished without writing generated.h5ad")
        return read_container_h5ad(path)

    def _run(self, command: str, work: Path, progress: bool) -> None:
        if self._backend is None:
            self._backend = self.choose_backend()
        what = f"{self.name} {self._backend}"
        (work / USER_ERROR_FILE).unlink(missing_ok=True)
        try:
            if self._backend == "docker":
                client = images.docker_client()
                if client is None:
                    raise UserError("no Docker engine answers", "start Docker, or use backend 'process'")
                self._image = self.docker_image(client, variant=self.image_variant(self._device))
                run_docker(
                    self._image,
                    command,
                    work,
                    device=self._device,
                    timeout_s=self._timeout_s,
                    progress=progress,
                    limits=self.limits(),
                    sandbox=self.sandbox_policy(),
                    inputs=self.command_inputs.get(command, ()),
                    client=client,
                    what=what,
                    argv=self.command_argv(command),
                )
            else:
                script = Path(self.build_context) / self.entry_point
                run_process(
                    script,
                    command,
                    work,
                    device=self._device,
                    timeout_s=self._timeout_s,
                    progress=progress,
                    limits=self.limits(),
                    what=what,
                )
        except TaskFailed:
            mistake = user_error(work)
            if mistake is not None:  # the entry point said why (exit 2): the user's one-line error
                raise UserError(f"{self.name}: {mistake[0]}", mistake[1]) from None
            raise

    def _need_fitted(self) -> Path:
        work = self._work()
        if self._model_src is not None and not (work / "model").is_dir():
            shutil.copytree(self._model_src, work / "model")
        if not self._fitted or not (work / "model").is_dir():
            raise TaskFailed(f"{self.name}: generate called before fit (or load)")
        return work

    # -- verbs --------------------------------------------------------------------------------------
    def fit(self, train: ad.AnnData, ctx: FitContext) -> FitResult:
        """Run the entry point's ``fit``; read back ``fit.json`` and the convergence snapshots it
        wrote (``snapshots/index.json`` + one h5ad per snapshot, at ``ctx.snapshot_steps``)."""
        self._device = ctx.device
        self._work_dir = Path(ctx.work_dir) if ctx.work_dir is not None else None
        left = ctx.time_left()
        self._timeout_s = None if left is None else max(left, 1.0)
        work = self._work()
        self.label_key = self.label_key or ctx.label_key
        self.write_inputs(train, work)
        for stale in ("fit.json", "generated.h5ad"):
            (work / stale).unlink(missing_ok=True)
        for stale in ("model", "snapshots"):
            if (work / stale).exists():
                shutil.rmtree(work / stale)
        snapshots = {"fractions": list(ctx.snapshot_fractions), "n_cells": int(ctx.snapshot_cells)}
        self._write_spec(
            work,
            seed=int(ctx.seed),
            progress=bool(ctx.progress),
            snapshots=snapshots if ctx.on_snapshot is not None else None,
        )
        self._run("fit", work, ctx.progress)
        record = read_fit_json(work, self.name)
        if not (work / "model").is_dir() or (work / "model").is_symlink():
            raise TaskFailed(f"{self.name}: fit finished without writing the model dir model/")
        self._fitted = True
        self._hand_snapshots(work / "snapshots", ctx)
        keys = ("train_seconds", "steps", "cells_seen", "history")
        extra = {k: v for k, v in record.items() if k not in keys}
        extra["backend"] = self._backend
        if self._image is not None:
            extra["image"] = self._image
        return FitResult(
            train_seconds=float(record["train_seconds"]),
            steps=record.get("steps"),
            cells_seen=record.get("cells_seen"),
            history=record.get("history", {}),
            extra=extra,
        )

    @staticmethod
    def _hand_snapshots(folder: Path, ctx: FitContext) -> None:
        index = folder / "index.json"
        if ctx.on_snapshot is None or not index.exists():
            return
        for item in json.loads(index.read_text()):
            cells = read_container_h5ad(container_file(folder, item.get("file")))
            ctx.snapshot(
                step=int(item["step"]),
                cells_seen=item.get("cells_seen"),
                train_seconds=item.get("train_seconds"),
                cells=cells,
            )

    def generate(self, n_cells: int | dict[str, int], *, seed: int) -> ad.AnnData:
        """Run the entry point's ``generate``; the generation time it measured inside the
        container is passed on in ``uns['scgenbench']['generate_seconds']``."""
        work = self._need_fitted()
        total, per_label = split_request(n_cells)
        for stale in ("generated.h5ad", "generated"):
            if (work / stale).is_dir() and not (work / stale).is_symlink():
                shutil.rmtree(work / stale)
            else:
                (work / stale).unlink(missing_ok=True)
        self._write_spec(work, seed=int(seed), generate_seed=int(seed), n_cells=per_label or total)
        self._run("generate", work, progress=False)
        return self.read_generated(work)

    def save(self, path: str | Path) -> None:
        work = self._need_fitted()
        path = Path(path)
        self._write_meta(path)
        if (path / "model").exists():
            shutil.rmtree(path / "model")
        shutil.copytree(work / "model", path / "model")

    @classmethod
    def load(cls, path: str | Path) -> ContainerGenerator:
        gen = cls._read_meta(Path(path))
        assert isinstance(gen, ContainerGenerator)
        gen._model_src = Path(path) / "model"
        gen._fitted = True
        return gen


# the methods through which a ContainerGenerator's work reaches the hardened runner
# (bench.api.docker.run_docker with the class's declared sandbox)
_RUNNER_METHODS = ("fit", "generate", "_run", "sandbox_policy", "limits")


def enforced_sandbox(cls: type) -> str:
    """What the harness itself enforces for generator class ``cls``, for `bench list` (never what the
    plugin says of itself, e.g. in ``metadata()``):

    * ``in-process``: a generator that is not a container model runs inside the harness's process,
      with the harness's rights;
    * ``in-process (own fit/generate)``: a container model from outside this distribution that
      overrides how its work reaches the container runner: the harness cannot vouch for a sandbox;
    * ``default`` or the relaxations (``network=bridge, ...``): its commands run in the hardened
      container runner with the sandbox the harness computes from the class's ``sandbox`` table
      (backend ``auto`` leaves it only with ``--allow-unsandboxed``); ``none: local process`` when its
      default backend is ``process``."""
    if not (isinstance(cls, type) and issubclass(cls, ContainerGenerator)):
        return "in-process"
    builtin = cls.__module__.split(".")[:2] == ["bench", "generators"]
    own = [
        m for m in _RUNNER_METHODS if next(k for k in cls.__mro__ if m in vars(k)) is not ContainerGenerator
    ]
    if own and not builtin:
        return "in-process (own fit/generate)"
    backend = dict(cls.parameters).get("backend", "auto")
    if backend == "process":
        return "none: local process"
    policy = Sandbox.declared(cls.sandbox, owner=f"generator {cls.name}")
    return ", ".join(policy.relaxations()) or "default"
