"""How a metric plugs into the runner.

The science lives in plain functions (``auc``, ``mmd``, ``correlation_discrepancy`` ...) that take
arrays and a seed. A :class:`Metric` wraps one of them for the runner: it names the values it
produces, their direction, and what the runner must hand it.

Kinds:

* ``"sample"``: ``func(ctx, generated, *, seed, **options) -> MetricOutput`` scores generated
  cells against the real test cells held by the :class:`~bench.evaluation.EvalContext`. Which
  cells: ``cells="main"`` the main experiment's generation (unconditional by default);
  ``cells="per-label"`` cells a conditional model generated for the test set's per-label counts
  (the runner makes that extra generation when such a metric is selected; unconditional models
  get no value, shown as n/a).
* ``"fit"``: ``func(ctx, fit_info, *, seed, **options) -> MetricOutput`` reports the runner's
  measurements of the fit (``fit_info``: times, memory, steps, and ``time_generation(n_cells)``,
  which times the fitted generator's ``generate()``; see :mod:`bench.timing`).
* ``"experiment"``: ``func(ctx, fit_generate, *, seed, **options) -> MetricOutput`` runs its own
  protocol; ``fit_generate(train_subset, request, seed) -> AnnData`` fits a fresh generator of the
  task's model on ``train_subset`` and returns validated generated cells (augmentation).

The runner does not branch on the kind: :attr:`Metric.main_input` says what a metric takes within
the main experiment's task ("main", "per-label", "fit"; ``None``: it runs as its own task), and the
runner looks that input up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from bench.api.errors import UserError
from bench.api.options import check_declared, check_value

# "lower" / "higher": the better direction; "target": closest to the value's target is best (a
# classifier AUC's ideal is 0.5, so 0.3 is as bad as 0.7): ranked and gated by |value - target|
Direction = Literal["lower", "higher", "target"]
DIRECTIONS = ("lower", "higher", "target")
Kind = Literal["sample", "fit", "experiment"]
# what a metric measures (``Metric.measures``), in the order of the headline figure's column groups;
# a plugin may declare another word, which goes after these (before "cost")
MEASURES = ("realism", "structure", "biology", "rare-cell augmentation", "privacy", "cost")
KINDS = ("sample", "fit", "experiment")


def badness(value: float, direction: Direction, target: float | None = None) -> float:
    """A value on a lower-is-better scale: ``value`` ("lower"), ``-value`` ("higher") or
    ``|value - target|`` ("target"); used to rank models, colour the best and gate regressions."""
    if direction == "lower":
        return float(value)
    if direction == "higher":
        return -float(value)
    if direction == "target":
        if target is None:
            raise ValueError("direction 'target' needs a target value")
        return abs(float(value) - float(target))
    raise ValueError(f"unknown direction {direction!r}; use one of {DIRECTIONS}")


def arrow(direction: Direction, target: float | None = None) -> str:
    """How tables mark a direction: ``↓``, ``↑`` or ``(→0.5)`` for a target."""
    if direction == "target":
        return f"(→{target:g})"
    return {"lower": "↓", "higher": "↑"}[direction]


@dataclass
class MetricOutput:
    """Values go to the store's long table; artifacts (arrays) are kept for the report.

    ``params``: the parameters of a value that one metric writes several times (value name ->
    ``{"condition": "augmented", "fraction": 0.1, "cell_type": "CD4 T"}``); the runner stores them
    with the value (the store's ``params`` column) so the report reads them as data, never from the
    name. Values without parameters need no entry."""

    values: dict[str, float]
    artifacts: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class FigureSpec:
    """A report figure drawn from a metric's values or arrays, declared by the metric.

    ``section``: the report's id of the figure (linked as ``#<section>-<dataset>``); ``title``: the
    section's heading; ``caption``: a template over the metric's options (``str.format``), filled
    with the options recorded with the values, so that an option a user changes (``n_genes = 10``)
    reads the same in the caption ("the top {n_genes} DE genes").

    ``draw``: how the HTML report draws it: ``draw(view, dataset)`` returns a matplotlib Figure, a
    :class:`Drawing` (the figure with the tasks and seed it shows, whose options the caption takes),
    a string (a note saying why there is nothing to draw) or ``None`` (nothing to draw: the report
    shows ``missing``). ``view`` is the report's view of the run: ``view.values`` (every value:
    dataset, model, seed, experiment, metric, value, params), ``view.models(dataset)``,
    ``view.figure_tasks(dataset, metric, artifact)`` ({model: task key} of the main tasks holding
    ``metric/artifact``), ``view.artifacts(task_key, metric)`` ({name: array}),
    ``view.summary_cell(dataset, model, value)`` and ``view.label(model)`` (a control marked).

    Where it goes: ``part`` "paper" (the dataset's section with the paper's tables) or "suite" (the
    rest of the metric suite), in ``order`` within the part (lower first; then as declared).
    ``missing``: the report's note when ``draw`` returns None ("" : a generic one); ``alt``: the
    image's alternative text after the dataset name ("": the title)."""

    section: str
    title: str
    caption: str
    draw: Callable[[Any, str], Any] | None = field(default=None, compare=False, repr=False)
    part: Literal["paper", "suite"] = "suite"
    order: int = 100
    missing: str = ""
    alt: str = ""

    def caption_for(self, options: dict[str, Any]) -> str:
        return self.caption.format(**options)


@dataclass(frozen=True)
class Drawing:
    """What a figure's ``draw`` may return besides a bare figure: the figure, the task keys it shows
    (the caption is filled with their recorded options; ``None``: every finished task of the
    dataset) and the seed it shows (the caption says "Seed N."; ``None``: no seed named)."""

    figure: Any
    keys: tuple[str, ...] | None = None
    seed: int | None = None


@dataclass(frozen=True)
class TableSpec:
    """A paper-shaped table a metric declares (the report assembles it; the metric never builds it).

    Two shapes: ``values`` (rows: these values of the main experiment, columns: the models, the real
    control as "Training Set (real)", as the paper's Table 2) or ``arms`` (the metric's own
    experiment: rows (model, ``params[row_param]``) in the order of ``arms``, columns the values of
    ``params[column_param]``, largest first, as Fig. 7). ``suffix``: a template over the metric's
    options added to the title when the run recorded them ("({method} test)"). ``order``: the
    table's place among the paper's tables (lower first).

    ``short``: the console's headline view prints the table in a compact shape (the other tables'
    values are its columns already): for ``values``, models as rows and these values as columns,
    value name -> short label; for ``arms``, the arms that do not depend on the generator once,
    arm -> row label, then one row "+ <model>" per model for each other arm. Empty: not printed."""

    title: str
    values: tuple[str, ...] = ()
    arms: tuple[str, ...] = ()
    row_param: str = "condition"
    column_param: str = "fraction"
    suffix: str = ""
    order: int = 100
    short: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if bool(self.values) == bool(self.arms):
            raise ValueError(f"table {self.title!r}: declare either values or arms")

    def title_for(self, options: Any) -> str:
        """The title, with ``suffix`` filled from the recorded options (a dict; else left off)."""
        if not self.suffix or not isinstance(options, dict):
            return self.title
        try:
            return f"{self.title} {self.suffix.format(**options)}"
        except (KeyError, IndexError, ValueError):
            return self.title


@dataclass(frozen=True)
class Planned:
    """What an experiment metric's plan-time hook (``Metric.plan``) decided for one dataset: the
    options its tasks run with, the rare class (or other label) its tasks are keyed by, the run
    header's line and notes on what a user should know (printed with the skipped tasks)."""

    options: dict[str, Any]
    label: str | None = None
    header: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Metric:
    name: str
    func: Callable[..., MetricOutput]
    kind: Kind = "sample"
    # direction of every value the metric writes; values not listed are informational (not ranked,
    # not gated); a "target" direction takes its ideal value from ``targets``
    directions: dict[str, Direction] = field(default_factory=dict)
    targets: dict[str, float] = field(default_factory=dict)
    description: str = ""
    reference: str = ""
    requires_conditional: bool = False
    # options the run spec may set, with defaults (and quick-profile overrides)
    options: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    # allowed values of options that take one of a few (e.g. the DE test: "wilcoxon", "t-test"); for
    # a list option, of each of its items
    choices: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    # allowed numbers of numeric options, as an interval with an optional "integer": "[1, inf) integer",
    # "(0, 1)" (bench.api.options); for a list option, of each item; ``None`` always passes
    bounds: dict[str, str] = field(default_factory=dict)
    # experiment this metric's task belongs to ("main" shares one fit; others run their own task)
    experiment: str = "main"
    # "sample" metrics: the generated cells scored ("main" or "per-label", see the module docstring)
    cells: Literal["main", "per-label"] = "main"
    # report table the values go to: "main" (the paper's metrics) or a named group of the suite
    table: str = "main"
    # what the metric measures, the column group of the report's headline figure: one of MEASURES
    # (or a plugin's own word); "" leaves it to :meth:`measured`: "cost" for a "fit" metric, else "other"
    measures: str = ""
    # value names left out of the control-scaled scores (bench.report.scaling): values the negative
    # control is not built to fail (gene marginals), spreads, hardware measurements; a name ending
    # in "@" covers every value with that prefix
    not_scaled: tuple[str, ...] = ()
    # the report figures drawn from this metric's values or arrays, with captions built from its
    # options (:class:`FigureSpec`)
    figures: tuple[FigureSpec, ...] = ()
    # values shown in the console's headline table, value name -> short column label; a name ending
    # in "@" stands for the value with that prefix and the smallest tag the run has (e.g. the
    # smallest augmentation fraction), its label gets "@<tag>"
    headline: dict[str, str] = field(default_factory=dict)
    # the evaluation protocols (bench.protocols, by name: "genes", "pca-real", "paper", "harmony") a
    # "sample" metric of the main cells can be scored in. Under "genes" it gets the contract's cells
    # (``ctx.features``: all genes, or their 50 PCs); under another protocol ``ctx.features`` returns
    # that protocol's space for the real test cells and the model's cells, whatever the metric's
    # ``space`` option. A metric defined on genes (a correlation of named genes) keeps ("genes",).
    protocols: tuple[str, ...] = ("genes",)
    # convergence snapshots (bench.convergence: cells made part-way through training) and `bench
    # tune`'s sweep score a model's cells with this metric under these options (cheap ones: a
    # snapshot must not cost what the task does); None: not scored there
    snapshot: dict[str, Any] | None = None
    # the value whose gain over the last doubling of a training budget says whether a model had
    # converged, and that `bench tune` ranks by; one installed metric declares it
    convergence: str | None = None
    # the paper-shaped tables of this metric's values (:class:`TableSpec`), in the report's paper part
    tables: tuple[TableSpec, ...] = ()
    # command-line flags that set an option of this metric: flag's destination -> option
    # (``--fractions`` sets the augmentation's ``fractions``); the CLI maps them through this
    flags: dict[str, str] = field(default_factory=dict)
    # an "experiment" metric's plan-time hook: ``plan(labels, options, rare=..., chosen_by=...,
    # clustered=...) -> Planned``, called once per dataset with the training and test label counts
    # ({"train": {label: n}, "test": {...}}); it may choose the label its tasks work on (a rare
    # class) and adjust options. None: the options as given, no label
    plan: Callable[..., Planned] | None = field(default=None, compare=False, repr=False)
    # how a value of a format-1 regression baseline reads today: ``from_v1(value, options) -> factor``
    # (the options the baseline's run gave the metric); None: unchanged (bench.regression)
    from_v1: Callable[[str, dict[str, Any]], float] | None = field(default=None, compare=False, repr=False)
    # the array function the GPU check times (bench/gpucheck.py, PyTorch without AnnData):
    # ``speed_probe(real, fake, *, seed, device) -> float`` on two cells x 50 PC arrays
    speed_probe: Callable[..., float] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name}: unknown kind {self.kind!r}; use one of {KINDS}")
        if self.cells not in ("main", "per-label"):
            raise ValueError(f"metric {self.name}: unknown cells {self.cells!r}; use 'main' or 'per-label'")
        for value, direction in self.directions.items():
            if direction not in DIRECTIONS:
                raise ValueError(f"metric {self.name}: unknown direction {direction!r} of {value!r}")
            if direction == "target" and value not in self.targets:
                raise ValueError(f"metric {self.name}: {value!r} has direction 'target' but no target")
        check_declared(f"metric {self.name}", self.options, self.choices, self.bounds)
        if self.snapshot is not None and (self.kind != "sample" or set(self.snapshot) - set(self.options)):
            raise ValueError(f"metric {self.name}: snapshot options must be options of a 'sample' metric")
        if self.convergence is not None and (
            self.snapshot is None or self.convergence not in self.directions
        ):
            raise ValueError(
                f"metric {self.name}: convergence must name a directional value of a snapshot metric"
            )
        if "genes" not in self.protocols:
            raise ValueError(f"metric {self.name}: protocols must include 'genes', got {self.protocols!r}")
        if self.protocols != ("genes",) and (self.kind != "sample" or self.cells != "main"):
            raise ValueError(
                f"metric {self.name}: only a 'sample' metric of the main cells takes other protocols"
            )
        if self.plan is not None and self.kind != "experiment":
            raise ValueError(f"metric {self.name}: only an 'experiment' metric has a plan-time hook")
        unknown_flags = sorted(set(self.flags.values()) - set(self.options))
        if unknown_flags:
            raise ValueError(f"metric {self.name}: flags set unknown option(s) {unknown_flags}")
        for fig in self.figures:
            if fig.part not in ("paper", "suite"):
                raise ValueError(
                    f"metric {self.name}: figure {fig.section!r}: part must be 'paper' or 'suite'"
                )
            try:
                fig.caption_for(self.options)
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"metric {self.name}: caption of figure {fig.section!r}: {exc!r}") from None

    @property
    def main_input(self) -> str | None:
        """What the runner hands ``func`` in the main experiment's task: ``"main"`` (the main
        generation) or ``"per-label"`` (cells generated for the test set's per-label counts) for a
        "sample" metric, ``"fit"`` (the fit measurements) for a "fit" metric; ``None`` for an
        "experiment" metric, which runs as a task of its own experiment."""
        return {"sample": self.cells, "fit": "fit", "experiment": None}[self.kind]

    @property
    def measured(self) -> str:
        """The headline figure's group of this metric's values (``measures``, or its default)."""
        return self.measures or ("cost" if self.kind == "fit" else "other")

    def supports(self, protocol: str) -> bool:
        """Whether the metric is scored in ``protocol`` (a key: ``paper:joint`` is protocol ``paper``)."""
        return protocol.partition(":")[0] in self.protocols

    def figure(self, section: str) -> FigureSpec | None:
        """The declared figure of a report section, or None."""
        return next((f for f in self.figures if f.section == section), None)

    def caption(self, section: str, options: dict[str, Any] | None = None) -> str:
        """The caption of a declared figure for the options a run recorded (missing ones: defaults)."""
        fig = self.figure(section)
        if fig is None:
            raise KeyError(f"metric {self.name} declares no figure {section!r}")
        return fig.caption_for({**self.options, **(options or {})})

    def options_for(self, profile: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The options of a run: defaults, then the profile's, then the user's. An option the metric
        does not have, or a value of the wrong type, outside the option's ``choices`` or outside its
        ``bounds`` (:mod:`bench.api.options`), is a UserError."""
        unknown = sorted(set(overrides or {}) - set(self.options))
        if unknown:
            raise UserError(
                f"metric {self.name} has no option(s) {', '.join(unknown)}",
                f"its options: {', '.join(self.options) or 'none'}; see `bench list metrics`",
            )
        out = {**self.options, **self.profiles.get(profile, {}), **(overrides or {})}
        for option, value in out.items():
            check_value(
                f"metric {self.name}",
                f"[metrics.{self.name}]",
                option,
                value,
                self.options[option],
                choices=self.choices.get(option),
                bound=self.bounds.get(option),
            )
        return out

    def _declared(self, value: str) -> str | None:
        if value in self.directions:
            return value
        if "@" in value:
            prefix = value.split("@", 1)[0] + "@"
            for name in self.directions:
                if name.startswith(prefix):
                    return name
        return None

    def direction_of(self, value: str) -> Direction | None:
        """Direction of a value name; names with an ``@`` suffix (``f1_augmented@0.2``) fall back
        to any declared name with the same prefix, so option-dependent names keep their direction.
        ``None`` for informational values."""
        name = self._declared(value)
        return self.directions[name] if name is not None else None

    def target_of(self, value: str) -> float | None:
        """The target of a value with direction "target" (else None)."""
        name = self._declared(value)
        return self.targets.get(name) if name is not None else None

    def is_scaled(self, value: str) -> bool:
        """Whether a value gets a control-scaled score: it has a direction and is not listed (or
        prefix-listed) in ``not_scaled``."""
        if self.direction_of(value) is None or value in self.not_scaled:
            return False
        return not ("@" in value and value.split("@", 1)[0] + "@" in self.not_scaled)
