"""Plugin registry: generators, metrics and datasets are found through entry points.

The built-ins register through the same entry points (see pyproject.toml) as third-party
packages do, so a plugin adds a model exactly the way ours are added.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

from bench.api.errors import UserError

GROUPS = {"generators": "bench.generators", "metrics": "bench.metrics", "datasets": "bench.datasets"}


@cache
def _load_group(kind: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for ep in entry_points(group=GROUPS[kind]):
        try:
            found[ep.name] = ep.load()
        except Exception as exc:  # a broken plugin must not break the harness
            found[ep.name] = _Broken(ep.name, ep.value, exc)
    return dict(sorted(found.items()))


class _Broken:
    def __init__(self, name: str, target: str, exc: Exception):
        self.name, self.target, self.exc = name, target, exc

    def __repr__(self) -> str:
        return f"<broken plugin {self.name} -> {self.target}: {self.exc}>"


_EXTRA: dict[str, dict[str, Any]] = {k: {} for k in GROUPS}


def register(kind: str, name: str, obj: Any) -> None:
    """Register an object at run time (tests, notebooks); entry points are the normal route."""
    _EXTRA[kind][name] = obj


def available(kind: str) -> dict[str, Any]:
    return {**_load_group(kind), **_EXTRA[kind]}


def get(kind: str, name: str) -> Any:
    items = available(kind)
    if name not in items:
        singular = kind.rstrip("s")
        raise UserError(
            f"unknown {singular} '{name}'",
            f"installed {kind}: {', '.join(items) or 'none'}; see `bench list {kind}`",
        )
    obj = items[name]
    if isinstance(obj, _Broken):
        raise UserError(
            f"{kind} plugin '{name}' failed to import: {obj.exc}", f"fix or reinstall {obj.target}"
        )
    return obj


def get_generator(name: str):
    return get("generators", name)


def get_metric(name: str):
    return get("metrics", name)


def get_dataset(name: str):
    return get("datasets", name)
