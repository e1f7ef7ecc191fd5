"""The registry hands out plugins or raises: a plugin that fails to import, or whose entry point
names something its group cannot use, is listed apart (``broken``) and ``get`` says why."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bench import registry
from bench.api.errors import UserError


class _EntryPoint(SimpleNamespace):
    def load(self):
        if isinstance(self.obj, Exception):
            raise self.obj
        return self.obj


@pytest.fixture
def fake_group(monkeypatch):
    from bench.metrics import MMD

    eps = [
        _EntryPoint(name="good", value="pkg:GOOD", obj=MMD),
        _EntryPoint(name="missing", value="nopkg:X", obj=ModuleNotFoundError("No module named 'nopkg'")),
        _EntryPoint(name="not_a_metric", value="pkg:f", obj=len),
    ]
    monkeypatch.setattr(registry, "entry_points", lambda group: eps if group == "bench.metrics" else [])
    registry._load_group.cache_clear()
    yield
    registry._load_group.cache_clear()


def test_broken_plugins_are_listed_apart(fake_group):
    assert list(registry.available("metrics")) == ["good"]
    broken = registry.broken("metrics")
    assert sorted(broken) == ["missing", "not_a_metric"]
    assert "ModuleNotFoundError" in broken["missing"].reason
    assert "not a bench.api.Metric" in broken["not_a_metric"].reason
    assert registry.names("metrics") == ["good", "missing", "not_a_metric"]


def test_get_returns_a_plugin_or_raises(fake_group):
    from bench.metrics import MMD

    assert registry.get_metric("good") is MMD
    with pytest.raises(UserError, match="failed to import: ModuleNotFoundError.*reinstall nopkg:X"):
        registry.get_metric("missing")
    with pytest.raises(UserError, match="unknown metric 'nope'.*good, missing, not_a_metric"):
        registry.get_metric("nope")


def test_get_alone_loads_only_the_named_entry_point(fake_group):
    from bench.metrics import MMD

    assert registry.get_alone("metrics", "good") is MMD
    with pytest.raises(UserError, match="failed to import: ModuleNotFoundError.*reinstall nopkg:X"):
        registry.get_alone("metrics", "missing")
    with pytest.raises(UserError, match="failed to import: .*not a bench.api.Metric"):
        registry.get_alone("metrics", "not_a_metric")
    with pytest.raises(UserError, match="unknown metric 'nope'"):
        registry.get_alone("metrics", "nope")
    assert registry._load_group.cache_info().currsize == 0  # the group was never loaded


def test_register_checks_the_kind():
    with pytest.raises(TypeError, match="not a bench.api.Generator subclass"):
        registry.register("generators", "x", object())
