"""The suite's xdist groups run longest first (tests/conftest.py, tests/durations.json; docs/ci.md)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

import tests.conftest as conftest


class _Item:
    """What the ordering hook reads of a pytest item."""

    def __init__(self, nodeid: str, fixtures=()):
        self.nodeid, self.fixturenames, self.markers = nodeid, list(fixtures), []

    def get_closest_marker(self, name):
        return next((m for m in self.markers if m.name == name), None)

    def add_marker(self, marker):
        self.markers.append(marker.mark)


def test_groups_run_longest_first_unknown_ones_before_all(tmp_path, monkeypatch):
    durations = tmp_path / "durations.json"
    durations.write_text(json.dumps({"tests/test_a.py": 5.0, "tests/test_b.py": 50.0, "slurm": 20.0}))
    monkeypatch.setattr(conftest, "DURATIONS", durations)
    items = [
        _Item("tests/test_a.py::t1"),
        _Item("tests/test_b.py::t1"),
        _Item("tests/test_a.py::t2", fixtures=["require_slurm"]),
        _Item("tests/test_new.py::t1"),
        _Item("tests/test_b.py::t2"),
        _Item("tests/test_a.py::t3"),
    ]
    conftest.pytest_collection_modifyitems(None, items)
    assert [it.nodeid for it in items] == [
        "tests/test_new.py::t1",  # not measured yet: first, it may be long
        "tests/test_b.py::t1",  # 50 s, its tests in their order
        "tests/test_b.py::t2",
        "tests/test_a.py::t2",  # the Slurm group, 20 s
        "tests/test_a.py::t1",  # 5 s
        "tests/test_a.py::t3",
    ]
    assert [it.get_closest_marker("xdist_group").args[0] for it in items[3:]] == [
        "slurm",
        "tests/test_a.py",
        "tests/test_a.py",
    ]


def test_xdist_keeps_the_collection_order(request):
    pytest.importorskip("xdist")
    assert request.config.option.loadscopereorder is False


def test_durations_script_sums_each_groups_tests(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "test_durations", conftest.DURATIONS.parents[1] / "scripts" / "ci" / "test_durations.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "OUT", tmp_path / "durations.json")
    suite = ET.Element("testsuite")
    for name, t in [("t1@tests/test_a.py", "1.5"), ("t2@slurm", "4"), ("t3@tests/test_a.py", "2.25")]:
        ET.SubElement(suite, "testcase", classname="tests.test_a", name=name, time=t)
    xml = tmp_path / "junit.xml"
    ET.ElementTree(suite).write(xml)
    assert mod.main([str(xml)]) == 0
    assert json.loads((tmp_path / "durations.json").read_text()) == {"slurm": 4.0, "tests/test_a.py": 3.8}
    ET.SubElement(suite, "testcase", classname="tests.test_a", name="t4", time="1")
    ET.ElementTree(suite).write(xml)
    assert mod.main([str(xml)]) == 2  # a run without --dist loadgroup names no groups
    assert mod.main([str(tmp_path / "missing.xml")]) == 2  # one line, nothing written
