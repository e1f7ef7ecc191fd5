"""Generators that run in a Docker image (or, backend ``process``, the same entry point as a local
subprocess): :mod:`.images` (build and tag images), :mod:`.docker` and :mod:`.process` (the two
backends), :mod:`.logs` (their log and user-error file), :mod:`.base` (the generator base class and
the choice of backend), :mod:`.manifest` (generators added with a scgenbench.toml, any language) and
:mod:`.plainio` (their MatrixMarket + CSV files). The names below are the package's public interface."""

from bench.generators.container.base import BACKENDS, RUNNER_PARAMS, ContainerGenerator, select_backend
from bench.generators.container.docker import run_docker
from bench.generators.container.images import (
    BASE_LABEL,
    DEFAULT_BASE_IMAGE,
    IMAGE_PREFIX,
    LOG_TAIL_LINES,
    VARIANTS,
    BaseImage,
    base_image_id,
    build_image,
    configured_base_image,
    context_files,
    context_hash,
    default_base_image,
    docker_client,
    ensure_image,
    resolve_base_image,
)
from bench.generators.container.logs import USER_ERROR_FILE

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
    "ensure_image",
    "manifest_generator",
    "parse_manifest",
    "process_env",
    "resolve_base_image",
    "run_docker",
    "run_process",
    "select_backend",
]
