"""Generators added with a manifest, in any language: a directory holding ``scgenbench.toml`` and a
build context (a Dockerfile and the model's scripts), or a manifest that names an image pinned by
digest. No Python is needed: the harness makes a :class:`ManifestGenerator` subclass from the
manifest and runs its ``fit`` and ``generate`` commands in the image through the same sandboxed
runner as scGAN's (:func:`~bench.api.docker.run_docker`).

:func:`manifest_generator` gives the generator class of a manifest (one class per manifest
content); the manifest is read and checked by :mod:`.manifest_parse` (:func:`parse_manifest`, its
field checks in :mod:`.manifest_checks`). The manifest reference and the I/O contract are in
docs/plugins.md, "A model in any language".
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, ClassVar

import anndata as ad
import numpy as np
import scipy.sparse as sp

from bench.api import TaskFailed, UserError, gene_mismatch, split_request
from bench.api.docker import context_files, context_hash
from bench.api.sandbox import read_container_h5ad
from bench.generators.container import images
from bench.generators.container.base import ContainerGenerator
from bench.generators.container.images import IMAGE_PREFIX
from bench.generators.container.manifest_checks import shown
from bench.generators.container.manifest_parse import MANIFEST_FILE, Manifest, parse_manifest
from bench.generators.container.plainio import read_plain, write_plain

__all__ = [
    "MANIFEST_FILE",
    "Manifest",
    "ManifestGenerator",
    "from_images",
    "manifest_generator",
    "parse_manifest",
]

# files of a manifest directory that are not sent to the image build (they change no image)
NOT_BUILT = (MANIFEST_FILE, "README.md")


# -- the images a Dockerfile builds on -----------------------------------------------------------
_FROM = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", re.IGNORECASE | re.MULTILINE)
_ARG = re.compile(r"^\s*ARG\s+(\w+)(?:=(\S*))?", re.IGNORECASE | re.MULTILINE)


def from_images(dockerfile_text: str, build_args: dict[str, str]) -> list[str]:
    """The images a Dockerfile builds FROM (``${ARG}`` defaults and build args resolved; stages it
    names and ``scratch`` left out)."""
    head = dockerfile_text.split("\n")
    args: dict[str, str] = {}
    for line in head:
        if re.match(r"^\s*FROM\s", line, re.IGNORECASE):
            break
        m = _ARG.match(line)
        if m:
            args[m.group(1)] = (m.group(2) or "").strip("\"'")
    args.update(build_args)
    stages: set[str] = set()
    out = []
    for m in _FROM.finditer(dockerfile_text):
        ref = re.sub(r"\$\{?(\w+)\}?", lambda v: args.get(v.group(1), ""), m.group(1))
        if ref.lower() != "scratch" and ref not in stages:
            out.append(ref)
        if m.group(2):
            stages.add(m.group(2))
    return out


class ManifestGenerator(ContainerGenerator):
    """A generator made from a manifest (:func:`manifest_generator`): docker only, the manifest's
    commands, raw counts in (``train.h5ad`` and the plain format in ``train/``), and either
    ``generated.h5ad`` or the plain format in ``generated/`` out."""

    manifest: ClassVar[Manifest | None] = None
    parameters: ClassVar[dict[str, Any]] = {"mem_limit": None, "cpu_limit": None}
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {}
    bounds: ClassVar[dict[str, str]] = {"cpu_limit": "(0, inf)"}
    command_inputs: ClassVar[dict[str, tuple[str, ...]]] = {
        "fit": ("train.h5ad", "train", "spec.json"),
        "generate": ("spec.json", "model"),
    }

    # -- what the manifest says -------------------------------------------------------------------
    @classmethod
    def metadata(cls) -> dict[str, Any]:
        return {**super().metadata(), "manifest": str(cls.manifest.file) if cls.manifest else None}

    @classmethod
    def extra_code_files(cls) -> dict[str, Path]:
        """The manifest and every file of its directory, for the code version (task keys)."""
        m = cls.manifest
        files = {f"manifest:{m.name}/{p.relative_to(m.root).as_posix()}": p for p in context_files(m.root)}
        files[f"manifest:{m.name}/{MANIFEST_FILE}"] = m.file
        return files

    def choose_backend(self) -> str:
        if images.docker_client() is None:
            raise UserError(
                f"generator '{self.name}' (a manifest plugin, {shown(self.manifest.file)}) runs in Docker, "
                "and no Docker engine answers",
                "start Docker (e.g. `sudo systemctl start docker`)",
            )
        return "docker"

    def command_argv(self, command: str) -> list[str]:
        return list(self.manifest.commands[command])

    def spec_extra(self) -> dict[str, Any]:
        return {
            "conditional": self.conditional,
            "output_scale": self.output_scale,
            "labels": list(self.labels or []),
            "n_genes": len(self.var_names or []),
            "inputs": {"h5ad": "train.h5ad", "plain": "train/"},
        }

    # -- the image --------------------------------------------------------------------------------
    @classmethod
    def image_tag_for(cls, client) -> str:
        """``scgenbench/manifest-<name>:<hash of the build files, build args and the FROM images' ids>``,
        or the manifest's digest-pinned ref."""
        import docker

        m = cls.manifest
        if "ref" in m.image:
            return m.image["ref"]
        context: Path = m.image["context"]
        dockerfile = (context / m.image["dockerfile"]).read_text()
        ids = []
        for ref in from_images(dockerfile, m.image["build_args"]):
            try:
                ids.append(client.images.get(ref).id)
            except docker.errors.ImageNotFound:
                try:
                    ids.append(client.images.pull(ref).id)
                except Exception as exc:
                    raise UserError(
                        f"{shown(m.file)}: image: the Dockerfile builds FROM {ref}, which is not here and "
                        f"cannot be pulled ({(str(exc).splitlines() or [''])[0]})",
                        "make that image first (the R example's: `sudo bash scripts/setup.sh --services`), "
                        "or pull it",
                    ) from None
        h = context_hash(context, cls._build_files(), ",".join(ids), m.image["build_args"])
        return f"{IMAGE_PREFIX}/manifest-{m.name}:{h}"

    @classmethod
    def _build_files(cls) -> tuple[str, ...]:
        context: Path = cls.manifest.image["context"]
        return tuple(
            p.relative_to(context).as_posix()
            for p in context_files(context)
            if not (p.parent == cls.manifest.root and p.name in NOT_BUILT)
        )

    @classmethod
    def docker_image(cls, client, variant: str = "cpu") -> str:
        import docker

        tag = cls.image_tag_for(client)
        try:
            client.images.get(tag)
            return tag
        except docker.errors.ImageNotFound:
            pass
        if "ref" in cls.manifest.image:
            try:
                client.images.pull(tag)
                return tag
            except Exception as exc:
                raise UserError(
                    f"{shown(cls.manifest.file)}: image.ref {tag} is not here and cannot be pulled "
                    f"({(str(exc).splitlines() or [''])[0]})",
                    f"`docker pull {tag}` where a registry answers, or `docker load` it",
                ) from None
        return cls._build(client, tag, progress=True)

    @classmethod
    def _build(cls, client, tag: str, progress: bool) -> str:
        m = cls.manifest
        context: Path = m.image["context"]
        if progress:
            print(f"building {tag} from {shown(context / m.image['dockerfile'])}", flush=True)
        return images.stream_build(
            client,
            tag,
            images._context_tar(context, cls._build_files()),
            buildargs=dict(m.image["build_args"]),
            labels={"org.scgenbench.manifest": str(m.file), "org.scgenbench.context": tag.rsplit(":", 1)[1]},
            progress=progress,
            dockerfile=m.image["dockerfile"],
        )

    @classmethod
    def build_own_image(cls, progress: bool = True) -> str:
        """`bench images build NAME`: the image of this manifest, built (or pulled) when missing."""
        client = images.docker_client()
        if client is None:
            raise UserError("no Docker engine answers", "start Docker (e.g. `sudo systemctl start docker`)")
        return cls.docker_image(client)

    # -- the I/O contract -------------------------------------------------------------------------
    def write_inputs(self, train: ad.AnnData, work: Path) -> None:
        """``train.h5ad`` (X: the raw counts; obs[label_key]; var_names the genes) and the same in the
        plain format in ``train/`` (counts.mtx, obs.csv, var.csv)."""
        counts = train.layers.get("counts", train.X)
        X = sp.csr_matrix(counts, dtype=np.float32)
        cells = [str(c) for c in train.obs_names]
        labels = train.obs[self.label_key].astype(str).to_numpy() if self.label_key in train.obs else None
        slim = ad.AnnData(X=X)
        slim.obs_names = cells
        slim.var_names = list(self.var_names)
        if labels is not None:
            slim.obs[self.label_key] = labels
        slim.write_h5ad(work / "train.h5ad")
        write_plain(work / "train", X, cells, list(self.var_names), labels)

    def generate(self, n_cells: int | dict[str, int], *, seed: int) -> ad.AnnData:
        self._request = n_cells
        return super().generate(n_cells, seed=seed)

    def read_generated(self, work: Path) -> ad.AnnData:
        """``generated.h5ad`` or ``generated/`` (plain format), exactly one; checked against the
        contract (genes, labels) with the file and the field named."""
        h5ad, plain = work / "generated.h5ad", work / "generated"
        per_label = split_request(getattr(self, "_request", 0))[1]
        if h5ad.exists() and plain.exists():
            raise TaskFailed(
                f"{self.name}: generate wrote both generated.h5ad and generated/: write one of them"
            )
        if plain.exists():
            if plain.is_symlink() or not plain.is_dir():
                raise TaskFailed(
                    f"{self.name}: generated is not a directory (the plain output is generated/counts.mtx + obs.csv)"
                )
            out = read_plain(
                plain, list(self.var_names), self.label_key, who=self.name, need_labels=per_label is not None
            )
            shutil.rmtree(plain)  # converted: the task's work dir keeps no second copy of the cells
            return out
        if not h5ad.exists():
            raise TaskFailed(
                f"{self.name}: generate finished without writing generated.h5ad or generated/counts.mtx + "
                "generated/obs.csv"
            )
        out = read_container_h5ad(h5ad)
        mismatch = gene_mismatch([str(v) for v in out.var_names], list(self.var_names))
        if mismatch:
            raise TaskFailed(f"{self.name}: generated.h5ad: var_names: {mismatch}")
        if per_label is not None and self.label_key not in out.obs:
            raise TaskFailed(
                f"{self.name}: generated.h5ad: obs has no column '{self.label_key}' (spec.json's label_key)"
            )
        return out


_CLASSES: dict[tuple[str, str], type[ManifestGenerator]] = {}


def manifest_generator(path: str | Path) -> type[ManifestGenerator]:
    """The generator class of the manifest at ``path`` (one class per manifest file and content)."""
    m = parse_manifest(path)
    key = (str(m.file), m.sha256)
    if key not in _CLASSES:
        attrs = {
            "__module__": __name__,
            "__doc__": f"{m.description or m.name} (manifest plugin, {m.file})",
            "manifest": m,
            "name": m.name,
            "conditional": m.conditional,
            "output_scale": m.output_scale,
            "needs_gpu": m.needs_gpu,
            "paper": m.citation,
            "code_url": m.code_url,
            "description": m.description,
            "parameters": {**ManifestGenerator.parameters, **m.parameters},
            "choices": dict(m.choices),
            "bounds": {**ManifestGenerator.bounds, **m.bounds},
            "profiles": m.profiles,
            "resources": {**ContainerGenerator.resources, **m.resources},
            "sandbox": m.sandbox,
            "image_name": f"manifest-{m.name}",
            "build_context": m.image.get("context", m.root),
        }
        cls_name = "Manifest_" + re.sub(r"\W", "_", m.name)
        _CLASSES[key] = type(cls_name, (ManifestGenerator,), attrs)
    return _CLASSES[key]
