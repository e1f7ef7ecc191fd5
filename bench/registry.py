"""Plugin registry: generators, metrics and datasets are found through entry points.

The built-ins register through the same entry points (see pyproject.toml) as third-party
packages do, so a plugin adds a model exactly the way ours are added. The registry hands out
plugins or raises: :func:`available` holds only the plugins that loaded and are what their group
needs (a :class:`~bench.api.Generator` subclass, a :class:`~bench.api.Metric`); the others are
listed apart by :func:`broken`, and :func:`get` names why one is broken.

Generators can also come without Python, from a manifest (``scgenbench.toml`` + a build context,
bench.generators.container.manifest): those the user registered with `bench plugins add PATH`
(``[manifests] NAME = PATH`` in the settings file, bench.api.userconfig) and those a run names by
path (``--models path/to/dir``, ``[models.NAME] manifest = PATH``: :func:`use_manifest`, kept in
``$BENCH_MANIFESTS`` so the run's worker processes find them too).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from bench.api.errors import UserError

GROUPS = {"generators": "bench.generators", "metrics": "bench.metrics", "datasets": "bench.datasets"}
# the settings-file table of `bench plugins add` and the variable of the manifests a run names by path
MANIFEST_TABLE = "manifests"
MANIFESTS_ENV = "BENCH_MANIFESTS"
MANIFEST_FILE = "scgenbench.toml"


@dataclass(frozen=True)
class BrokenPlugin:
    """An entry point that failed to import, or names something its group cannot use."""

    name: str
    target: str  # the entry point's value, "package.module:attr"
    reason: str

    def __str__(self) -> str:
        return f"{self.name} -> {self.target}: {self.reason}"


def _problem(kind: str, obj: Any) -> str | None:
    """Why ``obj`` cannot be a plugin of ``kind`` (None: it can)."""
    if kind == "generators":
        from bench.api.generator import Generator

        if not (isinstance(obj, type) and issubclass(obj, Generator)):
            return f"{obj!r} is not a bench.api.Generator subclass"
    elif kind == "metrics":
        from bench.api.metric import Metric

        if not isinstance(obj, Metric):
            return f"{obj!r} is not a bench.api.Metric"
    return None


@cache
def _load_group(kind: str) -> tuple[dict[str, Any], dict[str, BrokenPlugin]]:
    found: dict[str, Any] = {}
    broken: dict[str, BrokenPlugin] = {}
    for ep in entry_points(group=GROUPS[kind]):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not break the harness
            broken[ep.name] = BrokenPlugin(ep.name, ep.value, f"{type(exc).__name__}: {exc}")
            continue
        problem = _problem(kind, obj)
        if problem is not None:
            broken[ep.name] = BrokenPlugin(ep.name, ep.value, problem)
        else:
            found[ep.name] = obj
    return dict(sorted(found.items())), dict(sorted(broken.items()))


_EXTRA: dict[str, dict[str, Any]] = {k: {} for k in GROUPS}


def register(kind: str, name: str, obj: Any) -> None:
    """Register an object at run time (tests, notebooks); entry points are the normal route."""
    problem = _problem(kind, obj)
    if problem is not None:
        raise TypeError(f"cannot register {kind} plugin '{name}': {problem}")
    _EXTRA[kind][name] = obj


def installed(kind: str) -> set[str]:
    """The names of ``kind`` that installed distributions provide through entry points (working or
    broken): a manifest generator may not take one."""
    found, bad = _load_group(kind)
    return {*found, *bad}


def manifest_entries() -> list[tuple[str | None, str]]:
    """(registered name or None, path) of every manifest generator: the settings file's
    ``[manifests]`` table, then ``$BENCH_MANIFESTS`` (paths)."""
    from bench.api import userconfig

    table = userconfig.load().get(MANIFEST_TABLE, {})
    out: list[tuple[str | None, str]] = [(str(k), str(v)) for k, v in table.items()]
    out += [(None, p) for p in os.environ.get(MANIFESTS_ENV, "").split(os.pathsep) if p]
    return out


MANIFEST_GROUP = "bench.manifests"
NO_LOADER = (
    "no manifest loader is installed (entry point group bench.manifests; an install of scgenbench "
    "older than its manifest plugins)",
    "reinstall scgenbench: pip install -e .",
)


@cache
def _manifest_loader():
    """The function that makes a generator class of a manifest path (scgenbench's own is
    bench.generators.container.manifest:manifest_generator), found through its entry point like
    every plugin; None when no install provides one."""
    for ep in entry_points(group=MANIFEST_GROUP):
        return ep.load()
    return None


def manifest_generator(path: str):
    """The generator class of the manifest at ``path`` (UserError for a broken manifest)."""
    loader = _manifest_loader()
    if loader is None:
        raise UserError(*NO_LOADER)
    return loader(path)


def _manifests() -> tuple[dict[str, Any], dict[str, BrokenPlugin]]:
    """The manifest generators that load (by name) and those that do not (with the reason)."""
    entries = manifest_entries()
    if not entries:
        return {}, {}
    taken = installed("generators")
    found: dict[str, Any] = {}
    bad: dict[str, BrokenPlugin] = {}
    for name, path in entries:
        try:
            cls = manifest_generator(path)
        except UserError as exc:
            bad[name or path] = BrokenPlugin(name or path, path, str(exc))
            continue
        if name is not None and cls.name != name:
            why = f"registered as '{name}' but the manifest now names itself '{cls.name}'"
            bad[name] = BrokenPlugin(name, path, f"{why} (`bench plugins add {path}` again)")
        elif cls.name in taken:
            bad[cls.name] = BrokenPlugin(cls.name, path, "an installed generator has that name")
        elif cls.name in found and found[cls.name].manifest.file != cls.manifest.file:
            bad[cls.name] = BrokenPlugin(
                cls.name, path, f"another manifest has that name too ({found[cls.name].manifest.file})"
            )
        else:
            found.setdefault(cls.name, cls)
    return found, bad


def looks_like_path(name: str) -> bool:
    """Whether a model given to a run names a manifest by path (``examples/r-nb``, ``./m``)."""
    from pathlib import Path

    return (
        "/" in name
        or name.startswith(".")
        or name.endswith(".toml")
        or (Path(name) / MANIFEST_FILE).is_file()
    )


def use_manifest(path: str) -> str:
    """Make the manifest generator at ``path`` available to this process and the processes it starts
    (``$BENCH_MANIFESTS``); return its name. A UserError names a broken manifest or a name that is
    taken by another generator."""
    from pathlib import Path

    cls = manifest_generator(path)
    taken = get_or_none("generators", cls.name)
    mine = getattr(taken, "manifest", None)
    if taken is not None and (mine is None or mine.file != cls.manifest.file):
        where = f"the manifest {mine.file}" if mine is not None else "an installed generator"
        raise UserError(
            f"{path}: the manifest's name '{cls.name}' is taken by {where}",
            "rename it (name = ... in its scgenbench.toml)",
        )
    folder = str(Path(cls.manifest.root))
    known = [p for p in os.environ.get(MANIFESTS_ENV, "").split(os.pathsep) if p]
    if folder not in known:
        os.environ[MANIFESTS_ENV] = os.pathsep.join([*known, folder])
    return cls.name


def get_or_none(kind: str, name: str) -> Any:
    return available(kind).get(name)


def available(kind: str) -> dict[str, Any]:
    """The working plugins of ``kind`` by name (broken ones: :func:`broken`)."""
    extra = _manifests()[0] if kind == "generators" else {}
    return {**_load_group(kind)[0], **extra, **_EXTRA[kind]}


def broken(kind: str) -> dict[str, BrokenPlugin]:
    """The plugins of ``kind`` that failed to load, by name (a run-time registration fixes one)."""
    extra = _manifests()[1] if kind == "generators" else {}
    return {k: v for k, v in {**_load_group(kind)[1], **extra}.items() if k not in _EXTRA[kind]}


def names(kind: str) -> list[str]:
    """Every registered name of ``kind``: the working ones (as :func:`available` orders them), then
    the broken ones."""
    return [*available(kind), *broken(kind)]


def get(kind: str, name: str) -> Any:
    items = available(kind)
    if name in items:
        return items[name]
    bad = broken(kind).get(name)
    if bad is not None:
        raise UserError(
            f"{kind} plugin '{name}' failed to import: {bad.reason}", f"fix or reinstall {bad.target}"
        )
    raise UserError(
        f"unknown {kind.rstrip('s')} '{name}'",
        f"installed {kind}: {', '.join(names(kind)) or 'none'}; see `bench list {kind}`",
    )


def get_alone(kind: str, name: str) -> Any:
    """One plugin of ``kind`` by name, importing only its own entry point (:func:`get` imports the
    whole group): for a tool that runs where the other plugins cannot import, such as the GPU check
    (PyTorch without AnnData). An unknown or broken name ends as in :func:`get`."""
    if name in _EXTRA[kind]:
        return _EXTRA[kind][name]
    ep = next((ep for ep in entry_points(group=GROUPS[kind]) if ep.name == name), None)
    if ep is None:
        raise UserError(f"unknown {kind.rstrip('s')} '{name}'", f"see `bench list {kind}`")
    try:
        obj = ep.load()
    except Exception as exc:  # as in _load_group: the message names the plugin, not a traceback
        raise UserError(
            f"{kind} plugin '{name}' failed to import: {type(exc).__name__}: {exc}",
            f"fix or reinstall {ep.value}",
        ) from None
    problem = _problem(kind, obj)
    if problem is not None:
        raise UserError(f"{kind} plugin '{name}' failed to import: {problem}", f"fix or reinstall {ep.value}")
    return obj


def providing(kind: str, attribute: str) -> list[str]:
    """The names of the registered plugins of ``kind`` that provide ``attribute``: a generator class
    that defines it beyond the API's base (``speed_probe``), a metric whose declaration sets it. Found
    in a child interpreter, so that this process imports none of them: a tool that must run where
    other plugins cannot import (the GPU check: PyTorch without AnnData) then loads each one alone
    (:func:`get_alone`)."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys\nfrom bench.registry import _providing\n"
        "print(json.dumps(_providing(sys.argv[1], sys.argv[2])))"
    )
    proc = subprocess.run([sys.executable, "-c", code, kind, attribute], capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise UserError(
            f"could not list the {kind} that provide {attribute}: {proc.stderr.strip()[-300:]}",
            f"name them instead (see `bench list {kind}`)",
        )
    return json.loads(lines[-1])


def _providing(kind: str, attribute: str) -> list[str]:
    from bench.api.generator import Generator

    def unwrap(value: Any) -> Any:
        return getattr(value, "__func__", value)

    base = unwrap(getattr(Generator, attribute, None)) if kind == "generators" else None
    return [
        name
        for name, obj in available(kind).items()
        if getattr(obj, attribute, None) is not None and unwrap(getattr(obj, attribute)) is not base
    ]


def get_generator(name: str):
    return get("generators", name)


def get_metric(name: str):
    return get("metrics", name)


def get_dataset(name: str):
    return get("datasets", name)
