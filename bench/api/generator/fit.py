"""What a ``fit`` gets and reports: the frozen :class:`FitContext` the harness builds (label key,
seed, device, work dir, deadline, progress, snapshots), the training :class:`Budget`, the
:class:`Snapshot` of cells part-way through training, and :class:`FitResult`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.api.errors import TaskFailed, UserError

if TYPE_CHECKING:  # AnnData loads where cells are made or checked: the torch-only path has none
    import anndata as ad

# where in its budget an iterative model hands the harness generated cells (convergence evidence)
SNAPSHOT_FRACTIONS = (0.125, 0.25, 0.5, 1.0)


@dataclass
class FitResult:
    """What ``fit`` reports; every field is optional.

    ``train_seconds``: the model's own training time when it can measure it better than the
    harness (e.g. inside a container, without the container start); the harness always measures
    the wall time of the whole ``fit`` itself. ``steps``: optimizer steps (iterations) taken;
    ``cells_seen``: training cells processed over all steps (steps x batch size), the budget
    measure that is comparable across datasets; ``epochs``; ``history``: per-step or per-epoch
    logs; ``extra``: anything else worth keeping (stored in the task's info).
    """

    train_seconds: float | None = None
    steps: int | None = None
    cells_seen: int | None = None
    epochs: int | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


BUDGET_UNITS = ("steps", "epochs", "minutes")


@dataclass(frozen=True)
class Budget:
    """How long an iteratively trained model trains: ``amount`` optimizer ``steps``, ``epochs``
    (passes over the training cells) or ``minutes`` of training. Written ``"20000 steps"``,
    ``"600 epochs"``, ``"30 minutes"`` (or ``{"steps": 20000}``) in a profile or run config.

    Steps are what a model's quality depends on, and they are the same whatever the dataset's
    size, whereas 600 epochs are 11,600 steps on pbmc3k and 290,000 on pbmc68k; minutes depend on
    the hardware, so results under a minutes budget are not reproducible elsewhere."""

    amount: float
    unit: str

    @classmethod
    def parse(cls, value: Any, *, what: str = "budget") -> Budget | None:
        if value is None or isinstance(value, Budget):
            return value
        if isinstance(value, dict) and len(value) == 1:
            ((unit, amount),) = value.items()
        elif isinstance(value, int | float) and not isinstance(value, bool):
            unit, amount = "steps", value
        elif isinstance(value, str) and len(value.split()) == 2:
            amount, unit = value.split()
        else:
            unit, amount = None, None
        unit = {"step": "steps", "epoch": "epochs", "min": "minutes", "minute": "minutes"}.get(unit, unit)
        try:
            amount = float(amount)
        except (TypeError, ValueError):
            amount = float("nan")
        if unit not in BUDGET_UNITS or not amount > 0:
            raise UserError(
                f"{what} {value!r} is not a training budget",
                'write e.g. "20000 steps", "600 epochs" or "30 minutes"',
            )
        return cls(amount, unit)

    def steps(self, steps_per_epoch: int) -> int | None:
        """The budget in steps (epochs x steps per epoch); ``None`` for a minutes budget."""
        if self.unit == "minutes":
            return None
        per = 1 if self.unit == "steps" else steps_per_epoch
        return max(1, int(round(self.amount * per)))

    @property
    def seconds(self) -> float | None:
        return self.amount * 60.0 if self.unit == "minutes" else None

    def __str__(self) -> str:
        return f"{self.amount:g} {self.unit}"


@dataclass(frozen=True)
class Snapshot:
    """Cells generated part-way through training (see :meth:`FitContext.snapshot`): an AnnData,
    or a callable ``(n_cells, seed) -> AnnData`` the harness calls."""

    step: int
    cells_seen: int | None
    train_seconds: float | None
    cells: ad.AnnData | Callable[[int, int], ad.AnnData]


@dataclass(frozen=True)
class FitContext:
    """What the harness decided for one ``fit`` (built by the runner; a plugin only reads it).

    ``label_key``: the obs column of cell types; ``seed``: the seed of this fit (seed every random
    draw from it); ``device``: ``'cpu'`` or ``'cuda'``, already resolved; ``work_dir``: a private
    directory for this fit (logs, container mounts, checkpoints); ``deadline``: a
    :func:`time.monotonic` time after which training must stop (``None``: no limit; see
    :meth:`check_deadline`); ``progress``: show a progress bar (a terminal is attached).

    Convergence evidence: an iteratively trained model calls :meth:`snapshot` at the steps
    :meth:`snapshot_steps` returns (1/8, 1/4, 1/2 and all of its budget) with generated cells;
    the harness scores them and draws quality against steps and time.
    """

    label_key: str
    seed: int
    device: str = "cpu"
    work_dir: Path | None = None
    deadline: float | None = None
    progress: bool = False
    snapshot_fractions: tuple[float, ...] = ()
    snapshot_cells: int = 0
    on_snapshot: Callable[[Snapshot], None] | None = field(default=None, repr=False, compare=False)

    def time_left(self) -> float | None:
        """Seconds until the deadline (negative once past it), or ``None`` without one."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def check_deadline(self, what: str) -> None:
        """Raise :class:`TaskFailed` when the deadline has passed (call it once per epoch or so)."""
        left = self.time_left()
        if left is not None and left < 0:
            raise TaskFailed(f"{what}: training exceeded its time limit (--timeout) and was stopped")

    def snapshot_steps(self, total_steps: int) -> list[int]:
        """The steps (1-based, ascending, unique) at which to call :meth:`snapshot` for a budget of
        ``total_steps``; empty when the harness wants no snapshots."""
        if self.on_snapshot is None or not self.snapshot_fractions or total_steps < 1:
            return []
        return sorted({min(total_steps, max(1, round(f * total_steps))) for f in self.snapshot_fractions})

    def snapshot(
        self,
        *,
        step: int,
        cells: ad.AnnData | Callable[[int, int], ad.AnnData],
        cells_seen: int | None = None,
        train_seconds: float | None = None,
    ) -> float:
        """Hand the harness cells generated after ``step`` steps: an AnnData of ``snapshot_cells``
        cells, or a callable ``(n_cells, seed) -> AnnData`` that the harness calls (the callable
        form lets the harness time the generation too). Returns the seconds spent here, which a model that times its own training
        should leave out of ``train_seconds``."""
        if self.on_snapshot is None:
            return 0.0
        start = time.perf_counter()
        self.on_snapshot(Snapshot(int(step), cells_seen, train_seconds, cells))
        return time.perf_counter() - start
