"""The house rules of the package layout, checked on the source: no import cycle among the bench
modules (lazy imports inside functions included), and no core module imports a private module of a
plugin folder (``bench.metrics._*``, ``bench.generators.<model>._*``)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# package -> source folder (pyproject's package-dir)
FOLDERS = {"bench": ROOT / "bench", "bench.generators": ROOT / "generators", "bench.metrics": ROOT / "metrics",
           "bench.datasets": ROOT / "datasets"}  # fmt: skip


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name."""
    out: dict[str, Path] = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` imports anywhere in it (functions included). ``from A
    import b`` counts as an import of ``A.b`` where that is a module, else of ``A``."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in out if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_lazy_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")
    (pkg / "b.py").write_text("from . import a\nfrom .a import f\n")
    known = {"pkg": pkg / "__init__.py", "pkg.a": pkg / "a.py", "pkg.b": pkg / "b.py"}
    graph = {n: imports(n, p, known) for n, p in known.items()}
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


def test_no_import_cycle_among_bench_modules():
    graph = import_graph()
    assert {"bench.runner", "bench.executors.slurm.ledger", "bench.report.html"} <= set(graph)
    assert cycles(graph) == []


PRIVATE_PLUGIN_MODULE = re.compile(r"^bench\.(metrics|datasets|generators(\.\w+)?)\._\w+")


def private_plugin_imports(path: Path) -> list[str]:
    """The private plugin modules (``bench.metrics._mmd``, ``bench.generators.scgan._x``) a source
    file imports, by name or as ``from bench.metrics import _mmd``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        found.update(m[0] for m in map(PRIVATE_PLUGIN_MODULE.match, names) if m)
    return sorted(found)


def test_the_private_import_scan_finds_one(tmp_path):
    src = tmp_path / "x.py"
    src.write_text("def f():\n    from bench.metrics._mmd import mmd\nfrom bench.metrics import _prdc, mmd\n")
    assert private_plugin_imports(src) == ["bench.metrics._mmd", "bench.metrics._prdc"]
    src.write_text("from bench.metrics import mmd\nfrom bench.generators.activa.train import decode\n")
    assert private_plugin_imports(src) == []


def test_no_core_module_imports_a_private_plugin_module():
    core = sorted((ROOT / "bench").rglob("*.py"))
    assert len(core) > 20
    offenders = {str(p.relative_to(ROOT)): private_plugin_imports(p) for p in core}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_pyproject_lists_every_package_and_the_report_css():
    """A non-editable install gets every sub-package (setuptools' list is explicit) and the CSS."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {name for name, path in modules().items() if path.name == "__init__.py"}
    assert set(config["packages"]) == packages
    assert "*.css" in config["package-data"]["bench.report"]
    assert (ROOT / "bench" / "report" / "report.css").is_file()
