"""Generators that run in a Docker image (or, backend ``process``, the same entry point as a local
subprocess): :mod:`.images` (build and tag images), :mod:`.process` (the ``process`` backend),
:mod:`.base` (the generator base class), :mod:`.backend` (the choice of backend), :mod:`.fitjson`
(the check of the ``fit.json`` a fit writes back), :mod:`.manifest` (generators
added with a scgenbench.toml, any language; the file read and checked by :mod:`.manifest_parse` and
:mod:`.manifest_checks`) and :mod:`.plainio` (their MatrixMarket + CSV files).
The ``docker`` backend is the harness's hardened runner, :mod:`bench.api.docker` (the paper
protocol's Seurat container runs through it too), and the runs' log and user-error file are
:mod:`bench.api.logs`. The names below are the package's public interface."""

from bench.api.docker import context_files, context_hash, run_docker
from bench.api.logs import LOG_TAIL_LINES, USER_ERROR_FILE
from bench.api.sandbox import docker_client
from bench.generators.container.backend import ALLOW_UNSANDBOXED, BACKENDS, select_backend
from bench.generators.container.base import RUNNER_PARAMS, ContainerGenerator, enforced_sandbox
from bench.generators.container.images import (
    BASE_LABEL,
    DEFAULT_BASE_IMAGE,
    IMAGE_PREFIX,
    VARIANTS,
    BaseImage,
    base_image_id,
    build_image,
    configured_base_image,
    default_base_image,
    ensure_image,
    resolve_base_image,
)

# after the modules above: a manifest generator is a ContainerGenerator made from a scgenbench.toml
from bench.generators.container.manifest import (  # noqa: E402
    MANIFEST_FILE,
    Manifest,
    ManifestGenerator,
    manifest_generator,
    parse_manifest,
)
from bench.generators.container.process import PROCESS_ENV_KEEP, process_env, run_process

__all__ = [
    "ALLOW_UNSANDBOXED",
    "BACKENDS",
    "BASE_LABEL",
    "DEFAULT_BASE_IMAGE",
    "IMAGE_PREFIX",
    "LOG_TAIL_LINES",
    "MANIFEST_FILE",
    "PROCESS_ENV_KEEP",
    "RUNNER_PARAMS",
    "USER_ERROR_FILE",
    "VARIANTS",
    "BaseImage",
    "ContainerGenerator",
    "Manifest",
    "ManifestGenerator",
    "base_image_id",
    "build_image",
    "configured_base_image",
    "context_files",
    "context_hash",
    "default_base_image",
    "docker_client",
    "enforced_sandbox",
    "ensure_image",
    "manifest_generator",
    "parse_manifest",
    "process_env",
    "resolve_base_image",
    "run_docker",
    "run_process",
    "select_backend",
]
