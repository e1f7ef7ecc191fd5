"""Docker images of container generators: the base image, and building an image (tagged by the hash
of its build context, bench.api.docker.context_hash) when it is not there yet."""

from __future__ import annotations

import collections
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.api import TaskFailed, UserError
from bench.api.docker import context_files
from bench.api.logs import LOG_TAIL_LINES
from bench.api.sandbox import docker_client

IMAGE_PREFIX = "scgenbench"
DEFAULT_BASE_IMAGE = "python:3.11-slim"
# the label scripts/ci/docker-setup.sh puts on the offline base image it makes
BASE_LABEL = "org.scgenbench.base"


# image variants: "cpu" (the default) and "gpu" (the model's framework built with CUDA), built from
# one Dockerfile (build arg VARIANT); the tag names the variant, so a GPU run never reuses a CPU image
VARIANTS = ("cpu", "gpu")

# container generators by image name (filled by ContainerGenerator.__init_subclass__)
IMAGES: dict[str, Any] = {}


@dataclass(frozen=True)
class BaseImage:
    """The base image a model image is built on: its name, its id and how it was chosen."""

    name: str
    id: str
    source: str


def configured_base_image(variant: str = "cpu") -> tuple[str | None, str]:
    """The base image the user chose, and where the choice was found: ``$BENCH_GPU_BASE_IMAGE``
    (gpu variant), ``$BENCH_BASE_IMAGE``, then the settings file's ``[docker] gpu_base_image`` /
    ``base_image`` (recorded by ``bench images build --base-image``, which ``scripts/setup.sh
    --services`` runs). ``(None, "")`` when there is no choice."""
    from bench.api import userconfig

    keys = [("BENCH_GPU_BASE_IMAGE", "gpu_base_image")] if variant == "gpu" else []
    keys.append(("BENCH_BASE_IMAGE", "base_image"))
    for env, _ in keys:
        if os.environ.get(env):
            return os.environ[env], f"${env}"
    for _, key in keys:
        value = userconfig.get("docker", key)
        if value:
            return str(value), f"[docker] {key} in {userconfig.path()}"
    return None, ""


def default_base_image(variant: str = "cpu") -> str:
    """The name of the base image of :func:`configured_base_image`, else python:3.11-slim."""
    return configured_base_image(variant)[0] or DEFAULT_BASE_IMAGE


def labelled_base_images(client) -> list:
    """Local images that scripts/ci/docker-setup.sh made as offline bases (label
    ``org.scgenbench.base``), newest first."""
    found = client.images.list(filters={"label": BASE_LABEL})
    return sorted(found, key=lambda im: im.attrs.get("Created", ""), reverse=True)


NO_BASE_FIX = (
    "build the offline base with `sudo bash scripts/setup.sh --services` (it records the base for "
    "bench), `docker pull python:3.11-slim`, or build on a local image: `bench images build scgan "
    "--base-image IMAGE`"
)


def resolve_base_image(client, variant: str = "cpu", base: str | None = None) -> BaseImage:
    """The base image to build ``variant`` images on, in this order (docs/docker.md):
    ``base`` (``--base-image``), the user's choice (:func:`configured_base_image`), then
    python:3.11-slim when it is local or can be pulled, then the newest local image labelled
    ``org.scgenbench.base``. Raises UserError naming the command that makes one."""
    import docker

    if base:
        return BaseImage(base, base_image_id(client, base), "--base-image")
    chosen, source = configured_base_image(variant)
    if chosen:
        try:
            return BaseImage(chosen, base_image_id(client, chosen), source)
        except UserError as exc:
            raise UserError(f"{exc.message} (chosen by {source})", exc.fix) from None
    try:
        return BaseImage(DEFAULT_BASE_IMAGE, client.images.get(DEFAULT_BASE_IMAGE).id, "default")
    except docker.errors.ImageNotFound:
        pass
    try:
        return BaseImage(DEFAULT_BASE_IMAGE, client.images.pull(DEFAULT_BASE_IMAGE).id, "default, pulled")
    except Exception as exc:
        why = str(exc).splitlines()[0]
    for image in labelled_base_images(client):
        name = next(iter(image.tags), image.id)
        return BaseImage(name, image.id, f"local image labelled {BASE_LABEL}")
    raise UserError(
        f"no base image for container generators: {DEFAULT_BASE_IMAGE} is not local and cannot be "
        f"pulled ({why}), and no local image is labelled {BASE_LABEL}",
        NO_BASE_FIX,
    )


def base_image_id(client, base: str) -> str:
    """The id (sha256:...) of base image ``base``, pulled first when it is not here."""
    import docker

    try:
        return client.images.get(base).id
    except docker.errors.ImageNotFound:
        pass
    try:
        return client.images.pull(base).id
    except Exception as exc:
        raise UserError(
            f"base image {base} is not available locally and cannot be pulled ({str(exc).splitlines()[0]})",
            NO_BASE_FIX,
        ) from None


def _context_tar(context: Path, files: tuple[str, ...]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in context_files(context, files):
            tar.add(str(p), arcname=str(p.relative_to(context)))
    buf.seek(0)
    return buf


def image_class(name: str) -> type:
    """The container generator class of image or generator ``name``."""
    from bench.registry import get_generator

    cls = IMAGES.get(name) or get_generator(name)
    if not (isinstance(cls, type) and callable(getattr(cls, "image_tag", None))):  # a ContainerGenerator
        raise UserError(f"generator '{name}' does not run in a container", "see `bench list generators`")
    return cls


def build_image(name: str, base_image: str | None = None, progress: bool = True, variant: str = "cpu") -> str:
    """Build the ``variant`` image of container generator ``name`` (e.g. 'scgan') and return its tag
    ``scgenbench/<image>:<variant>-<hash of the build files, build args and the base image's id>``.
    ``base_image`` (build arg BASE_IMAGE, passed as its id so the build uses exactly the hashed
    image) defaults to :func:`default_base_image`."""
    cls = image_class(name)
    own = getattr(cls, "build_own_image", None)
    if own is not None:  # a manifest plugin: its own Dockerfile and base images (manifest.py)
        return own(progress=progress)
    if variant not in cls.image_variants:
        raise UserError(
            f"generator '{name}' has no {variant!r} image", f"use one of {', '.join(cls.image_variants)}"
        )
    client = docker_client()
    if client is None:
        raise UserError("no Docker engine answers", "start Docker (e.g. `sudo systemctl start docker`)")
    chosen = resolve_base_image(client, variant, base_image)
    base, base_id = chosen.name, chosen.id
    tag = cls.image_tag(base_id, variant)
    if progress:
        print(
            f"building {tag} (BASE_IMAGE={base}, {base_id[:19]}, {chosen.source}) from {cls.build_context}",
            flush=True,
        )
    return stream_build(
        client,
        tag,
        _context_tar(Path(cls.build_context), cls.build_files),
        buildargs={"BASE_IMAGE": base_id, **cls.build_args(variant)},
        labels={
            "org.scgenbench.base_image": base,
            "org.scgenbench.base_image_id": base_id,
            "org.scgenbench.context": tag.rsplit(":", 1)[1],
            "org.scgenbench.variant": variant,
        },
        progress=progress,
    )


def stream_build(
    client,
    tag: str,
    fileobj: io.BytesIO,
    *,
    buildargs: dict[str, str],
    labels: dict[str, str],
    progress: bool = True,
    dockerfile: str | None = None,
) -> str:
    """Build ``tag`` from a context tar (``dockerfile``: its path inside the context, default
    Dockerfile), printing the build's lines with progress; a failed build raises TaskFailed with
    the last lines. Returns ``tag``."""
    lines: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
    stream = client.api.build(
        fileobj=fileobj,
        custom_context=True,
        tag=tag,
        buildargs=buildargs,
        labels=labels,
        rm=True,
        forcerm=True,
        decode=True,
        **({"dockerfile": dockerfile} if dockerfile else {}),
    )
    for chunk in stream:
        if "error" in chunk:
            tail = "\n".join(lines)
            raise TaskFailed(f"building image {tag} failed: {chunk['error'].strip()}", log_tail=tail)
        text = chunk.get("stream") or chunk.get("status") or ""
        for line in text.splitlines():
            lines.append(line)
            if progress and line.strip():
                print(line, flush=True)
    return tag


def ensure_image(cls: type, client, progress: bool = True, variant: str = "cpu") -> str:
    """The tag of ``cls``'s ``variant`` image on the base image of :func:`resolve_base_image`,
    built first (with progress) when it is not there."""
    import docker

    base = resolve_base_image(client, variant)
    tag = cls.image_tag(base.id, variant)
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        build_image(cls.image_name, base_image=base.name, progress=progress, variant=variant)
    return tag
