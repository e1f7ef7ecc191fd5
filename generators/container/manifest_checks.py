"""The checks of a manifest's fields (scgenbench.toml): each reads one field and ends a wrong one
with a UserError that names the file and the field (``file: field: what``) and the fix. Used by
:func:`~bench.generators.container.manifest_parse.parse_manifest`."""

from __future__ import annotations

import math
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

from bench.api import UserError
from bench.api.options import describe, within
from bench.generators.container.base import RUNNER_PARAMS

DOCS = 'docs/plugins.md, "A model in any language"'
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "string": (str,),
    "list": (list,),
}
PARAM_KEYS = ("type", "default", "bounds", "choices", "description")


def shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class Checker:
    """Checks of one manifest's fields; every error names the file and the field."""

    def __init__(self, file: Path):
        self.file = shown(file)

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


def parameter(check: Checker, pname: str, spec: Any) -> tuple[Any, tuple | None, str | None]:
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


def command(check: Checker, commands: dict, verb: str) -> list[str]:
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


def inside(check: Checker, root: Path, rel: Any, where: str, *, directory: bool) -> Path:
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
