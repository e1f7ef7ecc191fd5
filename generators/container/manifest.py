"""Generators added with a manifest, in any language: a directory holding ``scgenbench.toml`` and a
build context (a Dockerfile and the model's scripts), or a manifest that names an image pinned by
digest. No Python is needed: the harness makes a :class:`ManifestGenerator` subclass from the
manifest and runs its ``fit`` and ``generate`` commands in the image through the same sandboxed
runner as scGAN's (:func:`~bench.api.docker.run_docker`).

:func:`parse_manifest` checks every field and ends a wrong one with a UserError (one line, exit 2)
that names the file and the field; :func:`manifest_generator` gives the generator class of a
manifest (one class per manifest content). The manifest reference and the I/O contract are in
docs/plugins.md, "A model in any language".
"""

from __future__ import annotations

import hashlib
import math
import re
import shlex
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import anndata as ad
import numpy as np
import scipy.sparse as sp

from bench.api import OUTPUT_SCALES, TaskFailed, UserError, gene_mismatch, split_request
from bench.api.docker import context_files, context_hash
from bench.api.options import check_value, describe, within
from bench.api.sandbox import Sandbox, parse_size, read_container_h5ad
from bench.generators.container import images
from bench.generators.container.base import RUNNER_PARAMS, ContainerGenerator
from bench.generators.container.images import IMAGE_PREFIX
from bench.generators.container.plainio import read_plain, write_plain

MANIFEST_FILE = "scgenbench.toml"
DOCS = 'docs/plugins.md, "A model in any language"'
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DIGEST_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:-]*@sha256:[0-9a-f]{64}$")
PROFILE_NAMES = ("quick", "standard", "paper")
TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "string": (str,),
    "list": (list,),
}
TOP_KEYS = {
    "name": "the name users pass to --models",
    "description": "one line",
    "citation": "the paper to cite",
    "code_url": "where the code lives",
    "conditional": "true or false",
    "output_scale": "counts, library-size-20000 or log1p",
    "parameters": "[parameters.NAME] tables",
    "profiles": "[profiles.quick|standard|paper] tables",
    "commands": "[commands] fit = [...], generate = [...]",
    "resources": "[resources] memory, cpus, gpu, time_min",
    "image": "[image] dockerfile = ... or ref = ...@sha256:...",
    "sandbox": "[sandbox] relaxations (docs/docker.md)",
}
PARAM_KEYS = ("type", "default", "bounds", "choices", "description")
RESOURCE_KEYS = ("memory", "cpus", "gpu", "time_min")
IMAGE_KEYS = ("dockerfile", "context", "build_args", "ref")
# files of a manifest directory that are not sent to the image build (they change no image)
NOT_BUILT = (MANIFEST_FILE, "README.md")


@dataclass(frozen=True)
class Manifest:
    """A checked manifest. ``file``: the scgenbench.toml; ``root``: its directory; ``sha256``: the
    hash of its text; ``image``: ``{"dockerfile", "context", "build_args"}`` or ``{"ref"}``."""

    file: Path
    root: Path
    sha256: str
    name: str
    description: str
    citation: str
    code_url: str
    conditional: bool
    output_scale: str
    parameters: dict[str, Any]
    choices: dict[str, tuple[Any, ...]]
    bounds: dict[str, str]
    profiles: dict[str, dict[str, Any]]
    commands: dict[str, list[str]]
    resources: dict[str, Any]
    needs_gpu: bool
    image: dict[str, Any]
    sandbox: dict[str, Any] = field(default_factory=dict)


def manifest_file(path: str | Path) -> Path:
    """The scgenbench.toml of ``path`` (the file, or the directory holding it); UserError else."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / MANIFEST_FILE
    if not p.is_file():
        raise UserError(
            f"{path}: no {MANIFEST_FILE} there",
            f"give a directory holding {MANIFEST_FILE} (or the file itself); see {DOCS}",
        )
    return p.resolve()


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class _Checker:
    """Checks of one manifest's fields; every error names the file and the field."""

    def __init__(self, file: Path):
        self.file = _shown(file)

    def fail(self, where: str, what: str, fix: str) -> UserError:
        return UserError(f"{self.file}: {where}: {what}", f"{fix}; see {DOCS}")

    def table(self, data: dict, key: str, known, required: bool = False) -> dict[str, Any]:
        value = data.get(key, {} if not required else None)
        if value is None:
            raise self.fail(key, "missing", f"add a [{key}] table")
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table, got {value!r}", f"write it as [{key}]")
        if known is not None:
            unknown = sorted(set(value) - set(known))
            if unknown:
                raise self.fail(f"{key}.{unknown[0]}", "unknown field", f"[{key}] takes: {', '.join(known)}")
        return value

    def string(self, data: dict, key: str, where: str, required: bool = False, default: str = "") -> str:
        value = data.get(key)
        if value is None:
            if required:
                raise self.fail(where, "missing", f'add {key} = "..."')
            return default
        if not isinstance(value, str) or (required and not value.strip()):
            raise self.fail(where, f"must be a non-empty string, got {value!r}", f'write {key} = "..."')
        return value

    def boolean(
        self, data: dict, key: str, where: str, required: bool = False, default: bool = False
    ) -> bool:
        value = data.get(key)
        if value is None:
            if required:
                raise self.fail(where, "missing", f"add {key} = true or {key} = false")
            return default
        if not isinstance(value, bool):
            raise self.fail(where, f"must be true or false, got {value!r}", f"write {key} = true or false")
        return value

    def number(self, data: dict, key: str, where: str, *, integer: bool = False) -> float | None:
        value = data.get(key)
        if value is None:
            return None
        ok = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value > 0
        )
        if not ok or (integer and not isinstance(value, int)):
            kind = "a positive integer" if integer else "a positive number"
            raise self.fail(where, f"must be {kind}, got {value!r}", f"write e.g. {key} = 2")
        return value


def _parameter(check: _Checker, pname: str, spec: Any) -> tuple[Any, tuple | None, str | None]:
    """(default, choices, bounds) of one [parameters.NAME] table."""
    where = f"parameters.{pname}"
    if not NAME.match(pname.replace("_", "a")) or pname in RUNNER_PARAMS:
        raise check.fail(
            where,
            "is not a valid parameter name" + (" (the harness's own)" if pname in RUNNER_PARAMS else ""),
            f"use lower-case letters, digits and _; not {', '.join(RUNNER_PARAMS)}",
        )
    if not isinstance(spec, dict):
        raise check.fail(
            where, f"must be a table, got {spec!r}", f'write [{where}] with type = "float", default = ...'
        )
    unknown = sorted(set(spec) - set(PARAM_KEYS))
    if unknown:
        raise check.fail(
            f"{where}.{unknown[0]}", "unknown field", f"a parameter takes: {', '.join(PARAM_KEYS)}"
        )
    kind = spec.get("type")
    if kind not in TYPES:
        raise check.fail(
            f"{where}.type", f"must be one of {', '.join(TYPES)}, got {kind!r}", 'write e.g. type = "float"'
        )
    if "default" not in spec:
        raise check.fail(f"{where}.default", "missing", "every parameter needs a default")
    default = spec["default"]
    if not isinstance(default, TYPES[kind]) or (kind != "bool" and isinstance(default, bool)):
        raise check.fail(
            f"{where}.default", f"{default!r} is not of type {kind}", "give a default of the declared type"
        )
    if kind == "float":
        default = float(default)
    choices = spec.get("choices")
    if choices is not None:
        if not isinstance(choices, list) or not choices:
            raise check.fail(
                f"{where}.choices",
                f"must be a non-empty list, got {choices!r}",
                'write e.g. choices = ["a", "b"]',
            )
        choices = tuple(choices)
        items = default if isinstance(default, list) else [default]
        if any(v not in choices for v in items):
            raise check.fail(
                f"{where}.default", f"{default!r} is not one of the choices", "make the default one of them"
            )
    bound = spec.get("bounds")
    if bound is not None:
        try:
            if not isinstance(bound, str):
                raise ValueError
            within(0, bound)
        except ValueError:
            raise check.fail(
                f"{where}.bounds",
                f"{bound!r} is not an interval",
                'write e.g. bounds = "[1, inf) integer" or "(0, 1]"',
            ) from None
        items = default if isinstance(default, list) else [default]
        if not all(within(v, bound) for v in items):
            raise check.fail(
                f"{where}.default", f"{default!r} is not {describe(bound)}", "make the default satisfy bounds"
            )
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise check.fail(
            f"{where}.description", f"must be a string, got {description!r}", 'write description = "..."'
        )
    return default, choices, bound


def _command(check: _Checker, commands: dict, verb: str) -> list[str]:
    value = commands.get(verb)
    where = f"commands.{verb}"
    if value is None:
        raise check.fail(where, "missing", f'add {verb} = ["Rscript", "/opt/model/run.R", "{verb}", "/work"]')
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as exc:
            raise check.fail(
                where, f"cannot be split into words ({exc})", "write it as a list of strings"
            ) from None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise check.fail(
            where,
            f"must be a non-empty list of strings, got {value!r}",
            f'write {verb} = ["prog", "arg", ...]',
        )
    return value


def _inside(check: _Checker, root: Path, rel: Any, where: str, *, directory: bool) -> Path:
    if not isinstance(rel, str) or not rel:
        raise check.fail(
            where,
            f"must be a path relative to the manifest's directory, got {rel!r}",
            'write e.g. dockerfile = "Dockerfile"',
        )
    pure = PurePosixPath(rel)
    path = (root / pure).resolve()
    if pure.is_absolute() or (path != root and root not in path.parents):
        raise check.fail(
            where,
            f"{rel!r} lies outside the manifest's directory",
            "keep the build context next to the manifest",
        )
    if directory and not path.is_dir():
        raise check.fail(where, f"{rel!r} is not a directory", "name the build context's directory")
    if not directory and not path.is_file():
        raise check.fail(where, f"{rel!r} does not exist", "name the Dockerfile, relative to the manifest")
    return path


def parse_manifest(path: str | Path) -> Manifest:
    """Read and check the manifest at ``path`` (a directory holding scgenbench.toml, or the file).
    Every wrong field ends with a UserError naming the file and the field (``file: field: what``)."""
    file = manifest_file(path)
    check = _Checker(file)
    text = file.read_bytes()
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{check.file}: not valid TOML ({exc})", f"fix the syntax; see {DOCS}") from None
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise check.fail(unknown[0], "unknown field", f"a manifest takes: {', '.join(TOP_KEYS)}")
    root = file.parent
    name = check.string(data, "name", "name", required=True)
    if not NAME.match(name):
        raise check.fail(
            "name", f"{name!r} is not a valid generator name", "use lower-case letters, digits, - and _"
        )
    conditional = check.boolean(data, "conditional", "conditional", required=True)
    scale = data.get("output_scale")
    if scale not in OUTPUT_SCALES:
        raise check.fail(
            "output_scale",
            f"must be one of {', '.join(OUTPUT_SCALES)}, got {scale!r}",
            'write e.g. output_scale = "counts"',
        )

    parameters: dict[str, Any] = {}
    choices: dict[str, tuple[Any, ...]] = {}
    bounds: dict[str, str] = {}
    for pname, spec in check.table(data, "parameters", None).items():
        parameters[pname], c, b = _parameter(check, pname, spec)
        if c is not None:
            choices[pname] = c
        if b is not None:
            bounds[pname] = b

    profiles: dict[str, dict[str, Any]] = {}
    for pname, values in check.table(data, "profiles", PROFILE_NAMES).items():
        if not isinstance(values, dict):
            raise check.fail(
                f"profiles.{pname}", f"must be a table, got {values!r}", f"write [profiles.{pname}]"
            )
        for key, value in values.items():
            where = f"profiles.{pname}.{key}"
            if key not in parameters:
                raise check.fail(where, "is not a declared parameter", f"declare [parameters.{key}] first")
            try:
                check_value(
                    "", "", key, value, parameters[key], choices=choices.get(key), bound=bounds.get(key)
                )
            except UserError as exc:
                raise check.fail(
                    where, exc.message.removeprefix(": "), "give a value the parameter accepts"
                ) from None
        profiles[pname] = dict(values)

    commands_table = check.table(data, "commands", ("fit", "generate"), required=True)
    commands = {verb: _command(check, commands_table, verb) for verb in ("fit", "generate")}

    res = check.table(data, "resources", RESOURCE_KEYS)
    resources: dict[str, Any] = {}
    if res.get("memory") is not None:
        try:
            if isinstance(res["memory"], bool):
                raise UserError("")
            resources["mem_gb"] = parse_size(res["memory"]) / 1024**3
        except UserError:
            raise check.fail(
                "resources.memory", f"cannot read {res['memory']!r}", 'write e.g. memory = "8g"'
            ) from None
    cpus = check.number(res, "cpus", "resources.cpus")
    if cpus is not None:
        resources["cpus"] = cpus
    gpu = check.boolean(res, "gpu", "resources.gpu")
    resources["gpus"] = 1 if gpu else 0
    time_min = check.number(res, "time_min", "resources.time_min")
    if time_min is not None:
        resources["time_min"] = time_min

    img = check.table(data, "image", IMAGE_KEYS, required=True)
    if ("ref" in img) == ("dockerfile" in img):
        raise check.fail(
            "image",
            "give exactly one of dockerfile and ref",
            'write dockerfile = "Dockerfile", or ref = "name@sha256:<digest>"',
        )
    if "ref" in img:
        ref = img["ref"]
        if not isinstance(ref, str) or not DIGEST_REF.match(ref):
            raise check.fail(
                "image.ref",
                f"{ref!r} is not pinned by digest",
                'write ref = "registry/name@sha256:<64 hex digits>"',
            )
        extra = sorted(set(img) - {"ref"})
        if extra:
            raise check.fail(f"image.{extra[0]}", "is for a Dockerfile build, not an image ref", "remove it")
        image: dict[str, Any] = {"ref": ref}
    else:
        context = _inside(check, root, img.get("context", "."), "image.context", directory=True)
        dockerfile = _inside(check, root, img["dockerfile"], "image.dockerfile", directory=False)
        if context not in dockerfile.parents:
            raise check.fail(
                "image.dockerfile", "lies outside the build context", "put the Dockerfile in the context"
            )
        args = img.get("build_args", {})
        if not isinstance(args, dict) or not all(isinstance(v, str) for v in args.values()):
            raise check.fail(
                "image.build_args",
                f"must be a table of strings, got {args!r}",
                'write build_args = { KEY = "value" }',
            )
        image = {
            "dockerfile": dockerfile.relative_to(context).as_posix(),
            "context": context,
            "build_args": dict(args),
        }

    sandbox = check.table(data, "sandbox", None)
    try:
        Sandbox.declared(sandbox, owner=f"{check.file}: sandbox")
    except UserError as exc:
        raise UserError(exc.message, exc.fix) from None
    return Manifest(
        file=file,
        root=root,
        sha256=hashlib.sha256(text).hexdigest(),
        name=name,
        description=check.string(data, "description", "description"),
        citation=check.string(data, "citation", "citation"),
        code_url=check.string(data, "code_url", "code_url"),
        conditional=conditional,
        output_scale=scale,
        parameters=parameters,
        choices=choices,
        bounds=bounds,
        profiles=profiles,
        commands=commands,
        resources=resources,
        needs_gpu=gpu,
        image=image,
        sandbox=dict(sandbox),
    )


# -- the generator ------------------------------------------------------------------------------------
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
                f"generator '{self.name}' (a manifest plugin, {_shown(self.manifest.file)}) runs in Docker, "
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
                        f"{_shown(m.file)}: image: the Dockerfile builds FROM {ref}, which is not here and "
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
                    f"{_shown(cls.manifest.file)}: image.ref {tag} is not here and cannot be pulled "
                    f"({(str(exc).splitlines() or [''])[0]})",
                    f"`docker pull {tag}` where a registry answers, or `docker load` it",
                ) from None
        return cls._build(client, tag, progress=True)

    @classmethod
    def _build(cls, client, tag: str, progress: bool) -> str:
        m = cls.manifest
        context: Path = m.image["context"]
        if progress:
            print(f"building {tag} from {_shown(context / m.image['dockerfile'])}", flush=True)
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
