"""The code version of a generator and of the scoring: what a task key hashes so that editing a
model's or a metric's code never reuses results computed by the old code.

A generator's code version is its distribution's name and version plus a hash of its source
files, so it changes with every edit, also for editable and local installs where the version
number stays the same:

* a generator from another distribution (a plugin package): every file of that distribution's
  top-level package (the folder its class is imported from; ``__pycache__`` left out);
* a generator built into scgenbench (``bench.generators.*``): its own module, or its whole
  sub-package (e.g. ``generators/activa/``, Dockerfile included), plus the ``bench.generators``
  modules they import (``base``, ``container``), so editing one model leaves the others' results;
* a class outside any distribution (a script, a test): the files of its modules;
* a generator added with a manifest (``scgenbench.toml``, no Python): the container package it runs
  on, plus the manifest and every file of its build context (``extra_code_files``), so editing the
  manifest or the R script reruns its tasks.

Every class of the generator's MRO counts, so a subclass also changes when its base does. Files
are named by module name in the hash, never by absolute path: the same code gives the same key in
another checkout. The scoring's code version hashes ``bench.evaluation``, the ``bench.metrics``
package, ``bench.convergence`` and ``bench.timing`` (the modules that turn generated cells and the
runner's measurements into values), plus the code of any metric plugin from another distribution
a task uses.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import re
import sys
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path
from typing import Any

OWN_DISTRIBUTION = "scgenbench"
OWN_GENERATORS = "bench.generators"
# what turns generated cells (and the runner's measurements) into stored values
SCORING_MODULES = (
    "bench.api.contract",
    "bench.evaluation",
    "bench.metrics",
    "bench.convergence",
    "bench.timing",
)
# files under SCORING_MODULES that compute no value, left out of the scoring hash: the built-in
# metrics' report figures (editing a figure must not rerun every task)
NOT_SCORING = ("bench.metrics/figures/",)
SKIP_PARTS = {"__pycache__", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
HASH_LENGTH = 16


@dataclass(frozen=True)
class CodeVersion:
    """``distribution``: the distribution that provides the code (None: not installed, e.g. a
    script or a test module); ``version``: its version; ``code_hash``: hash of the source files;
    ``files``: how many files the hash covers; ``editable``: installed in editable mode."""

    distribution: str | None
    version: str | None
    code_hash: str
    files: int
    editable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@functools.cache
def _top_level_distributions() -> dict[str, list[str]]:
    """Top-level import name -> distributions (scanning every installed distribution is slow, and
    what is installed does not change while a run is planned)."""
    return packages_distributions()


@functools.cache
def _distribution_of(module_name: str) -> tuple[str | None, str | None, bool]:
    top = module_name.split(".", 1)[0]
    names = _top_level_distributions().get(top) or []
    for name in names:
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        try:
            direct = json.loads(dist.read_text("direct_url.json") or "{}")
        except (OSError, ValueError):
            direct = {}
        editable = bool((direct.get("dir_info") or {}).get("editable"))
        return dist.metadata["Name"], dist.version, editable
    return None, None, False


def _module_file(name: str) -> Path | None:
    """The source file of module ``name``, found on disk without importing anything: the scan of
    import statements also yields names such as ``pkg.mod.attr`` (``from .mod import attr``), and
    ``importlib.util.find_spec`` of those imports ``pkg.mod`` (scGAN's TensorFlow port: a 6 s
    TensorFlow import and its log lines in every run that planned scgan)."""
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None) if module is not None else None
    if path is not None:
        return Path(path)
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):  # the longest imported package above it
        package = sys.modules.get(".".join(parts[:i]))
        roots = list(getattr(package, "__path__", None) or [])
        if roots:
            break
    else:
        return None
    rest = parts[i:]
    for root in roots:
        folder = Path(root).joinpath(*rest[:-1])
        for candidate in (folder / rest[-1] / "__init__.py", folder / f"{rest[-1]}.py"):
            if candidate.is_file() and all((Path(root).joinpath(*rest[:j]) / "__init__.py").is_file()
                                           for j in range(1, len(rest))):  # fmt: skip
                return candidate
    return None


def _tree(root: Path, prefix: str) -> dict[str, Path]:
    """Every file under ``root`` (a package folder), named ``prefix/relative/path``."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not SKIP_PARTS.intersection(rel.parts) and path.suffix not in (".pyc", ".pyo"):
            out[f"{prefix}/{rel.as_posix()}"] = path
    return out


def _package_files(module_name: str) -> dict[str, Path]:
    """The files of a module: its package folder when it is a package, else its file."""
    path = _module_file(module_name)
    if path is None:
        return {}
    if path.name == "__init__.py":
        return _tree(path.parent, module_name)
    return {module_name: path}


_FROM = re.compile(r"^[ \t]*from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#]+)", re.MULTILINE)
_IMPORT = re.compile(r"^[ \t]*import[ \t]+([\w. \t,]+)", re.MULTILINE)


def _imports(name: str, path: Path) -> set[str]:
    """Absolute names of the modules a source file imports, lazy imports inside functions
    included (relative imports resolved). A plain scan of the import statements: parsing the
    file would cost ~20x more."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for match in _IMPORT.finditer(text):
        out.update(part.split()[0] for part in match[1].split(",") if part.strip())
    for match in _FROM.finditer(text):
        base = match[1]
        level = len(base) - len(base.lstrip("."))
        base = base[level:]
        if level:
            parts = package.split(".")
            parent = ".".join(parts[: len(parts) - level + 1])
            base = f"{parent}.{base}" if base else parent
        out.add(base)
        names = match[2].strip("() \t\n")
        out.update(f"{base}.{n.split()[0]}" for n in names.replace("\n", ",").split(",") if n.strip())
    return out


def _own_generator_files(module_name: str) -> dict[str, Path]:
    """A built-in generator: its module (or its sub-package of bench.generators, whole) and the
    bench.generators modules that code imports, transitively."""
    parts = module_name.split(".")
    start = ".".join(parts[:3]) if len(parts) > 3 else module_name
    files = _package_files(start) if _is_package(start) else _package_files(module_name)
    todo = [(_module_of(label), path) for label, path in files.items() if path.suffix == ".py"]
    seen = {module for module, _ in todo}
    while todo:
        module, path = todo.pop()
        for imported in _imports(module, path):
            if not imported.startswith(OWN_GENERATORS + ".") or imported in seen:
                continue
            file = _module_file(imported)
            if file is None or not file.is_file():
                continue
            seen.add(imported)
            files[imported] = file
            todo.append((imported, file))
    return files


def _module_of(label: str) -> str:
    """The module name of a file label of :func:`_tree` (``pkg/sub/x.py`` -> ``pkg.sub.x``)."""
    if "/" not in label:
        return label
    package, rel = label.split("/", 1)
    rel = rel.removesuffix(".py").removesuffix("__init__").rstrip("/")
    return ".".join([package, *rel.split("/")]) if rel else package


def _is_package(module_name: str) -> bool:
    path = _module_file(module_name)
    return path is not None and path.name == "__init__.py"


def _hash(files: dict[str, Path]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0")
        try:
            h.update(files[name].read_bytes())
        except OSError:
            h.update(b"<unreadable>")
        h.update(b"\0")
    return h.hexdigest()[:HASH_LENGTH]


def _files_of_module(module_name: str) -> tuple[dict[str, Path], tuple[str | None, str | None, bool]]:
    dist = _distribution_of(module_name)
    if dist[0] == OWN_DISTRIBUTION or module_name.startswith(OWN_GENERATORS + "."):
        if module_name.startswith(OWN_GENERATORS + "."):
            return _own_generator_files(module_name), dist
        return _package_files(module_name), dist
    if dist[0] is not None:  # another distribution: its whole top-level package
        return _package_files(module_name.split(".", 1)[0]), dist
    return _package_files(module_name), dist


def _modules_of(obj: Any) -> list[str]:
    if inspect.isclass(obj):
        return [c.__module__ for c in obj.__mro__ if c.__module__ not in ("builtins", "abc", "typing")]
    return [obj.__module__]


def code_files(obj: Any) -> dict[str, Path]:
    """The files the code version of ``obj`` hashes, by label (see :func:`code_version`)."""
    files: dict[str, Path] = {}
    for name in dict.fromkeys(_modules_of(obj)):
        files.update(_files_of_module(name)[0])
    # files that are code without being Python modules: a manifest plugin's scgenbench.toml and its
    # build context (bench.generators.container.manifest), by label
    extra = getattr(obj, "extra_code_files", None)
    if inspect.isclass(obj) and callable(extra):
        files.update(extra())
    return files


def code_version(obj: Any) -> CodeVersion:
    """The code version of a generator class (every class of its MRO) or of a function."""
    files = code_files(obj)
    dist, version, editable = _distribution_of(_modules_of(obj)[0])
    return CodeVersion(dist, version, _hash(files), len(files), editable)


def scoring_version(metrics: dict[str, Any] | None = None) -> str:
    """Hash of the scoring code (:data:`SCORING_MODULES`) and of every given metric (name -> Metric)
    that comes from another distribution."""
    files: dict[str, Path] = {}
    for name in SCORING_MODULES:
        files.update({k: v for k, v in _package_files(name).items() if not k.startswith(NOT_SCORING)})
    extra = []
    for name, metric in sorted((metrics or {}).items()):
        func = getattr(metric, "func", None)
        module = getattr(func, "__module__", "") or ""
        if func is None or module.split(".", 1)[0] == "bench":
            continue
        extra.append(f"{name}={code_version(func).code_hash}")
    h = hashlib.sha256((_hash(files) + "|" + ",".join(extra)).encode())
    return h.hexdigest()[:HASH_LENGTH]
