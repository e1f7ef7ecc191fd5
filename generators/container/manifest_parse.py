"""A manifest (scgenbench.toml) read and checked into a :class:`Manifest`: :func:`parse_manifest`
ends every wrong field with a UserError (one line, exit 2) that names the file and the field. The
manifest reference is in docs/plugins.md, "A model in any language"."""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.api import OUTPUT_SCALES, UserError
from bench.api.options import check_value
from bench.api.sandbox import Sandbox, parse_size
from bench.generators.container.manifest_checks import DOCS, NAME, Checker, command, inside, parameter

MANIFEST_FILE = "scgenbench.toml"
DIGEST_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:-]*@sha256:[0-9a-f]{64}$")
PROFILE_NAMES = ("quick", "standard", "paper")
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
RESOURCE_KEYS = ("memory", "cpus", "gpu", "time_min")
IMAGE_KEYS = ("dockerfile", "context", "build_args", "ref")


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


def parse_manifest(path: str | Path) -> Manifest:
    """Read and check the manifest at ``path`` (a directory holding scgenbench.toml, or the file).
    Every wrong field ends with a UserError naming the file and the field (``file: field: what``)."""
    file = manifest_file(path)
    check = Checker(file)
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
        parameters[pname], c, b = parameter(check, pname, spec)
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
    commands = {verb: command(check, commands_table, verb) for verb in ("fit", "generate")}

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
        context = inside(check, root, img.get("context", "."), "image.context", directory=True)
        dockerfile = inside(check, root, img["dockerfile"], "image.dockerfile", directory=False)
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
