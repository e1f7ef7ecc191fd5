"""The public plugin API: everything a generator, metric or dataset plugin may import from the core.

Built-in plugins (``bench.generators``, ``bench.metrics``, ``bench.datasets``) import only this
package, exactly what a third-party plugin imports (``tests/test_architecture.py`` holds the rule):

* :mod:`.generator`: ``Generator`` (metadata plus ``fit`` / ``generate``), ``FitContext``,
  ``FitResult``, ``Budget``, ``Snapshot``, ``validate_output`` and the helpers ``make_output``,
  ``split_request``, ``to_library_size``;
* :mod:`.metric`: ``Metric``, ``MetricOutput``, what a metric declares for the report (``FigureSpec``
  with its ``Drawing``, ``TableSpec``), its plan-time decision (``Planned``) and the directions
  (``badness``, ``arrow``);
* :mod:`.plotting`: what a metric's figure draws with (``figure_class``, ``figure_grid``,
  ``colour_map``, ``REAL_COLOUR``);
* :mod:`.contract`: the evaluation contract (library size, output scales, the ±1 % rule, default
  resources, ``resolve_device``);
* :mod:`.errors`: ``UserError`` (a mistake the user can fix) and ``TaskFailed``;
* :mod:`.options`: the checks of a parameter's or option's value (``INTEGER_1``, bounds, choices);
* :mod:`.speed`: ``SpeedProbe``, a generator's torch-only path (what the GPU check times);
* :mod:`.compat`: shims for third-party library versions (umap, the kNN transformer);
* :mod:`.sandbox`: what a container may do (the policy, its user and mounts), re-exporting
  :mod:`.limits` (memory, CPUs, GPUs of one container), :mod:`.containers` (labels: which run, task
  and process a container belongs to, and the clean-up) and :mod:`.container_files` (what a
  container wrote, read without trusting it);
* :mod:`.docker`: the hardened docker runner that applies it, and the hash that tags an image;
* :mod:`.logs`: a container or process run's log and the user-error file of its entry point;
* :mod:`.userconfig`: the user's settings file (e.g. the Docker base image setup recorded).

The names load on first use, so ``from bench.api import UserError`` does not import AnnData.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the submodule that defines it
_WHERE = {
    "errors": ("UserError", "TaskFailed"),
    "options": ("INTEGER_1", "INTEGER_2", "check_value", "check_declared"),
    "contract": (
        "LIBRARY_SIZE",
        "LIBRARY_SIZE_TOLERANCE",
        "OUTPUT_SCALES",
        "Planned",
        "REAL_COLOUR",
        "RESOURCE_KEYS",
        "DEFAULT_RESOURCES",
        "FIT_VALUES",
        "HARDWARE_VALUES",
        "at_library_size",
        "resolve_device",
    ),
    "generator": (
        "SNAPSHOT_FRACTIONS",
        "BUDGET_UNITS",
        "Budget",
        "FitContext",
        "FitResult",
        "Generator",
        "Snapshot",
        "bind_training_data",
        "gene_mismatch",
        "make_output",
        "split_request",
        "to_library_size",
        "validate_output",
    ),
    "metric": (
        "DIRECTIONS",
        "KINDS",
        "Direction",
        "Kind",
        "Drawing",
        "FigureSpec",
        "Metric",
        "MetricOutput",
        "Planned",
        "TableSpec",
        "arrow",
        "badness",
    ),
    "compat": ("SCANPY_EXACT_KNN_MAX_CELLS", "import_umap", "knn_transformer"),
    "speed": ("SpeedProbe",),
    "plotting": ("REAL_COLOUR", "colour_map", "figure_class", "figure_grid"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}
__all__ = [
    "FIT_VALUES",
    "HARDWARE_VALUES",
    "BUDGET_UNITS",
    "Budget",
    "DEFAULT_RESOURCES",
    "DIRECTIONS",
    "Direction",
    "Drawing",
    "FigureSpec",
    "FitContext",
    "FitResult",
    "Generator",
    "INTEGER_1",
    "INTEGER_2",
    "KINDS",
    "Kind",
    "LIBRARY_SIZE",
    "LIBRARY_SIZE_TOLERANCE",
    "Metric",
    "MetricOutput",
    "OUTPUT_SCALES",
    "Planned",
    "REAL_COLOUR",
    "RESOURCE_KEYS",
    "SCANPY_EXACT_KNN_MAX_CELLS",
    "SNAPSHOT_FRACTIONS",
    "Snapshot",
    "SpeedProbe",
    "TableSpec",
    "TaskFailed",
    "UserError",
    "arrow",
    "at_library_size",
    "badness",
    "bind_training_data",
    "check_declared",
    "check_value",
    "colour_map",
    "figure_class",
    "figure_grid",
    "gene_mismatch",
    "import_umap",
    "knn_transformer",
    "make_output",
    "resolve_device",
    "split_request",
    "to_library_size",
    "validate_output",
]

if TYPE_CHECKING:
    from bench.api.compat import SCANPY_EXACT_KNN_MAX_CELLS, import_umap, knn_transformer
    from bench.api.contract import (
        DEFAULT_RESOURCES,
        FIT_VALUES,
        HARDWARE_VALUES,
        LIBRARY_SIZE,
        LIBRARY_SIZE_TOLERANCE,
        OUTPUT_SCALES,
        RESOURCE_KEYS,
        at_library_size,
        resolve_device,
    )
    from bench.api.errors import TaskFailed, UserError
    from bench.api.generator import (
        BUDGET_UNITS,
        SNAPSHOT_FRACTIONS,
        Budget,
        FitContext,
        FitResult,
        Generator,
        Snapshot,
        bind_training_data,
        gene_mismatch,
        make_output,
        split_request,
        to_library_size,
        validate_output,
    )
    from bench.api.metric import (
        DIRECTIONS,
        KINDS,
        Direction,
        Drawing,
        FigureSpec,
        Kind,
        Metric,
        MetricOutput,
        Planned,
        TableSpec,
        arrow,
        badness,
    )
    from bench.api.options import INTEGER_1, INTEGER_2, check_declared, check_value
    from bench.api.plotting import REAL_COLOUR, colour_map, figure_class, figure_grid
    from bench.api.speed import SpeedProbe


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
