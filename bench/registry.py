"""Plugin registry: generators, metrics and datasets are found through entry points.

The built-ins register through the same entry points (see pyproject.toml) as third-party
packages do, so a plugin adds a model exactly the way ours are added. The registry hands out
plugins or raises: :func:`available` holds only the plugins that loaded and are what their group
needs (a :class:`~bench.api.Generator` subclass, a :class:`~bench.api.Metric`); the others are
listed apart by :func:`broken`, and :func:`get` names why one is broken.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from bench.api.errors import UserError

GROUPS = {"generators": "bench.generators", "metrics": "bench.metrics", "datasets": "bench.datasets"}


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


def available(kind: str) -> dict[str, Any]:
    """The working plugins of ``kind`` by name (broken ones: :func:`broken`)."""
    return {**_load_group(kind)[0], **_EXTRA[kind]}


def broken(kind: str) -> dict[str, BrokenPlugin]:
    """The plugins of ``kind`` that failed to load, by name (a run-time registration fixes one)."""
    return {k: v for k, v in _load_group(kind)[1].items() if k not in _EXTRA[kind]}


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


def get_generator(name: str):
    return get("generators", name)


def get_metric(name: str):
    return get("metrics", name)


def get_dataset(name: str):
    return get("datasets", name)
