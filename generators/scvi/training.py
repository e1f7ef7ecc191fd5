"""scvi-tools and lightning around a scVI fit: scvi-tools imported (or a UserError naming the fix),
lightning's chatter silenced, scvi-tools' default training length, and the lightning callback that
counts training cells, stops at the deadline and at a minutes budget and hands the harness
convergence snapshots (:func:`training_monitor`)."""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator

from bench.api import FitContext, Generator, TaskFailed, UserError

_QUIET_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "scvi")


def import_scvi():
    try:
        import scvi
    except ImportError as exc:
        raise UserError(
            f"the scvi generator needs scvi-tools ({exc})",
            "pip install 'scgenbench[scvi]' (or bash scripts/setup.sh)",
        ) from exc
    return scvi


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence lightning's and scvi-tools' chatter (accelerator lines, tips, the srun hint,
    data-loader advice, the seed line); restores the log levels afterwards. The progress bar is
    separate (``enable_progress_bar``)."""
    saved = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"(lightning|pytorch_lightning|scvi)(\.|$)")
            warnings.filterwarnings("ignore", message=r".*(srun|num_workers|LeafSpec|litlogger).*")
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def max_epochs_heuristic(n_cells: int) -> int:
    """scvi-tools' default training length (``SCVI.train(max_epochs=None)``)."""
    from scvi.model._utils import get_max_epochs_heuristic

    return int(get_max_epochs_heuristic(n_cells))


def training_monitor(gen: Generator, ctx: FitContext):
    """A lightning callback (built here so importing this module needs no lightning) that counts
    training cells, stops at the deadline and at a minutes budget, and hands the harness generated
    cells at ``ctx.snapshot_steps(total)``, total = the budget's steps (max_steps, else max_epochs x
    batches per epoch; early stopping may end training before the last snapshot), or under a
    minutes budget at the epoch ends that pass those fractions of the time (and at the last one).
    ``gen``: the scvi generator (its ``budget``, ``name`` and ``generate``)."""
    from lightning.pytorch.callbacks import Callback

    limit = gen.budget.seconds if gen.budget is not None else None

    class Monitor(Callback):
        def __init__(self) -> None:
            self.cells_seen = 0
            self.error: TaskFailed | None = None
            self.snap_at: set[int] = set()
            self.snap_times: list[float] = []
            self.start = 0.0
            self.paused = 0.0  # seconds spent in snapshots: not training time

        def _snapshot(self, trainer, seconds: float | None) -> None:
            self.paused += ctx.snapshot(
                step=int(trainer.global_step),
                cells_seen=self.cells_seen,
                train_seconds=seconds,
                cells=lambda n, seed: gen.generate(n, seed=seed),
            )

        def on_train_start(self, trainer, pl_module) -> None:
            self.start, self.paused = time.perf_counter(), 0.0
            if limit is not None:
                self.snap_times = (
                    [f * limit for f in sorted(ctx.snapshot_fractions)] if ctx.on_snapshot else []
                )
                return
            total = int(trainer.max_steps)
            if total < 0:
                total = int(trainer.max_epochs) * int(trainer.num_training_batches)
            self.snap_at = set(ctx.snapshot_steps(total))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.cells_seen += int(batch["X"].shape[0])
            step = int(trainer.global_step)
            if step in self.snap_at:
                self.snap_at.discard(step)
                self._snapshot(trainer, None)

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            try:
                ctx.check_deadline(gen.name)
            except TaskFailed as exc:  # raised inside lightning it would be wrapped: stop, re-raise after
                self.error = exc
                trainer.should_stop = True
                return
            if limit is None:
                return
            trained = time.perf_counter() - self.start - self.paused
            out_of_time = trained >= limit
            last = out_of_time or int(trainer.current_epoch) + 1 >= int(trainer.max_epochs)
            if last and self.snap_times:  # training ends here: one last snapshot
                self.snap_times = [trained]
            if self.snap_times and trained >= self.snap_times[0]:
                self.snap_times = [t for t in self.snap_times if t > trained]
                self._snapshot(trainer, trained)
            if out_of_time:
                trainer.should_stop = True

    return Monitor()
