"""How a metric plugs into the runner.

The science lives in plain functions (``auc``, ``mmd``, ``correlation_discrepancy`` ...) that take
arrays and a seed. A :class:`Metric` wraps one of them for the runner: it names the values it
produces, their direction, and what the runner must hand it.

Kinds:

* ``"sample"``: ``func(ctx, generated, *, seed, **options) -> MetricOutput`` scores generated
  cells against the real test cells held by the :class:`~bench.evaluation.EvalContext`.
* ``"fit"``: ``func(ctx, fit_info, *, seed, **options) -> MetricOutput`` reports the runner's
  measurements of the fit (``fit_info``: times, memory, steps, and ``time_generation(n_cells)``,
  which times the fitted generator's ``generate()``; see :mod:`bench.timing`).
* ``"experiment"``: ``func(ctx, fit_generate, *, seed, **options) -> MetricOutput`` runs its own
  protocol; ``fit_generate(train_subset, request, seed) -> AnnData`` fits a fresh generator of the
  task's model on ``train_subset`` and returns validated generated cells (augmentation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Direction = Literal["lower", "higher"]
Kind = Literal["sample", "fit", "experiment"]


@dataclass
class MetricOutput:
    """Values go to the store's long table; artifacts (arrays) are kept for the report."""

    values: dict[str, float]
    artifacts: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    name: str
    func: Callable[..., MetricOutput]
    kind: Kind = "sample"
    # direction of every value the metric writes; values not listed are informational
    directions: dict[str, Direction] = field(default_factory=dict)
    description: str = ""
    reference: str = ""
    requires_conditional: bool = False
    # options the run spec may set, with defaults (and quick-profile overrides)
    options: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    # experiment this metric's task belongs to ("main" shares one fit; others run their own task)
    experiment: str = "main"

    def options_for(self, profile: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        return {**self.options, **self.profiles.get(profile, {}), **(overrides or {})}

    def direction_of(self, value: str) -> Direction | None:
        """Direction of a value name; names with an ``@`` suffix (``f1_augmented@0.2``) fall back
        to any declared name with the same prefix, so option-dependent names keep their direction.
        ``None`` for informational values."""
        if value in self.directions:
            return self.directions[value]
        if "@" in value:
            prefix = value.split("@", 1)[0] + "@"
            for name, direction in self.directions.items():
                if name.startswith(prefix):
                    return direction
        return None
