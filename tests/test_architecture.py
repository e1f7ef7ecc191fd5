"""The house rules of the package layout, checked on the source: no import cycle among the bench
modules (lazy imports inside functions included); no core module imports a private module of a
plugin folder (``bench.metrics._*``, ``bench.generators.<model>._*``); the plugin API
(``bench.api``) imports nothing else; each plugin folder imports only ``bench.api`` from the core;
the rest of the core reaches plugins only through the registry (known exceptions listed)."""

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


# -- the plugin API (bench.api) and who may import what ----------------------------------------------

PLUGIN_PACKAGES = ("bench.generators", "bench.metrics", "bench.datasets")


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def core_imports_of(package: str) -> dict[str, set[str]]:
    """For each module of a plugin folder: the core modules (``bench.*`` outside the plugin
    folders) it imports."""
    graph = import_graph()
    return {
        name: {m for m in deps if not any(_within(m, p) for p in PLUGIN_PACKAGES)}
        for name, deps in graph.items()
        if _within(name, package)
    }


def test_bench_api_imports_nothing_but_itself():
    """The API is the floor: it imports neither the rest of the core nor a plugin folder."""
    graph = import_graph()
    api = {name: deps for name, deps in graph.items() if _within(name, "bench.api")}
    assert {"bench.api.generator", "bench.api.metric", "bench.api.errors"} <= set(api)
    assert {name: sorted(d for d in deps if not _within(d, "bench.api")) for name, deps in api.items()} == {
        name: [] for name in api
    }


# what a plugin folder imports from the core besides bench.api, with the reason; the list may only
# shrink (a new entry is a new dependency of a plugin on the core's internals)
PLUGIN_EXCEPTIONS: dict[str, dict[str, set[str]]] = {
    "bench.generators": {
        # `bench images build NAME` resolves an image or a generator name (the lead's images.py)
        "bench.generators.container.images": {"bench.registry"},
    },
    "bench.metrics": {},
    "bench.datasets": {
        # the dataset stage (prepare) looks recipes up by name; recipes are plugins like the others
        "bench.datasets.api": {"bench.registry"},
    },
}


def test_each_plugin_folder_imports_only_the_api_from_the_core():
    """generators/, metrics/ and datasets/ import from the core only bench.api (and its modules):
    exactly what a third-party plugin imports. Folder by folder."""
    for package, allowed in PLUGIN_EXCEPTIONS.items():
        found = core_imports_of(package)
        assert len(found) > 3, package
        beyond = {n: {d for d in deps if not _within(d, "bench.api")} for n, deps in found.items()}
        assert {n: d for n, d in beyond.items() if d} == allowed, package


# the core modules that still import a plugin folder, with the reason; the list may only shrink
CORE_EXCEPTIONS: dict[str, set[str]] = {
    # the dataset stage lives in datasets/ (prepare, save_prepared, balanced_split)
    "bench.cli.plugins": {"bench.datasets", "bench.generators.container"},  # + `bench images build`
    "bench.cli.runs": {"bench.generators.container"},  # --allow-unsandboxed sets the containers' opt-in
    "bench.taskspec": {"bench.datasets"},
    "bench.tune": {"bench.datasets", "bench.datasets.preprocess"},
    "bench.scalecurve": {"bench.datasets"},
    "bench.planning": {"bench.datasets"},
    # the DE genes of the shared work: metric code the core calls by name
    "bench.evaluation": {"bench.metrics"},
}


def test_the_core_reaches_plugins_only_through_the_registry():
    """No core module imports a plugin folder (bench.api none at all): the core looks generators,
    metrics and datasets up by name (bench.registry). The known exceptions are listed above."""
    graph = import_graph()
    found = {
        name: {d for d in deps if any(_within(d, p) for p in PLUGIN_PACKAGES)}
        for name, deps in graph.items()
        if _within(name, "bench") and not any(_within(name, p) for p in PLUGIN_PACKAGES)
    }
    assert {n: d for n, d in found.items() if d} == CORE_EXCEPTIONS


def test_bench_api_exports_what_it_lists():
    import bench.api as api

    for name in api.__all__:
        assert getattr(api, name) is not None, name
    assert set(api.__all__) == set(api._MODULE_OF)


# -- no metric or experiment name in the core -------------------------------------------------------

# the core modules that name a registered metric or experiment in a string: none (issue 28, item 3:
# what the core needs from a metric comes from its declaration); keep it empty
NAMED_IN_CORE: dict[str, set[str]] = {}


def _strings(path: Path) -> list[str]:
    """The string constants of a source file, docstrings left out."""
    tree = ast.parse(path.read_text(), str(path))
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs]  # fmt: skip


def names_in(path: Path, names: set[str]) -> set[str]:
    """The names that a string of ``path`` is, or starts (``mmd_kxx``, ``augmentation/arm``)."""
    return {n for s in _strings(path) for n in names if s == n or re.match(rf"^{re.escape(n)}[_/@]", s)}


def test_the_core_names_no_metric_or_experiment():
    """Every registered metric and experiment name, searched in the core's strings (bench/, the
    plugin API included): no module names one."""
    from bench.registry import available

    metrics = available("metrics")
    assert {"mmd", "augmentation", "auc"} <= set(metrics)
    names = set(metrics) | {m.experiment for m in metrics.values()} - {"main"}
    found = {}
    for path in sorted((ROOT / "bench").rglob("*.py")):
        hits = names_in(path, names)
        if hits:
            found[str(path.relative_to(ROOT))] = hits
    assert found == NAMED_IN_CORE


MAX_LINES = 400  # modules of one job (issue 28); split by job, not by size (docs/architecture.md)


def long_modules() -> dict[str, int]:
    """Every module of bench/, generators/, metrics/ and datasets/ over MAX_LINES, by path."""
    out = {}
    for path in modules().values():
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            out[str(path.relative_to(ROOT))] = n
    return out


def test_modules_have_at_most_400_lines():
    """Modules of one job (issue 28): none over MAX_LINES."""
    assert long_modules() == {}
