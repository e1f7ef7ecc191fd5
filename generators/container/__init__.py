"""Generators that run in a Docker image (or, backend ``process``, the same entry point as a local
subprocess): :mod:`.images` (build and tag images), :mod:`.docker` and :mod:`.process` (the two
backends), :mod:`.logs` (their log and user-error file), :mod:`.base` (the generator base class and
the choice of backend). The names below are the package's public interface."""

from bench.generators.container.base import (
    ALLOW_UNSANDBOXED,
    BACKENDS,
    RUNNER_PARAMS,
    ContainerGenerator,
    enforced_sandbox,
    select_backend,
)
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
from bench.generators.container.process import PROCESS_ENV_KEEP, process_env, run_process

__all__ = [
    "ALLOW_UNSANDBOXED",
    "BACKENDS",
    "BASE_LABEL",
    "DEFAULT_BASE_IMAGE",
    "IMAGE_PREFIX",
    "LOG_TAIL_LINES",
    "PROCESS_ENV_KEEP",
    "RUNNER_PARAMS",
    "USER_ERROR_FILE",
    "VARIANTS",
    "BaseImage",
    "ContainerGenerator",
    "base_image_id",
    "build_image",
    "configured_base_image",
    "context_files",
    "context_hash",
    "default_base_image",
    "docker_client",
    "enforced_sandbox",
    "ensure_image",
    "process_env",
    "resolve_base_image",
    "run_docker",
    "run_process",
    "select_backend",
]
