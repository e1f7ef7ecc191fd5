"""scDiffusion's training progress: a rich progress bar over the optimizer steps of its three stages
with the current stage and loss (:class:`StageProgress`), silent unless a terminal is attached."""

from __future__ import annotations

from typing import Any


class StageProgress:
    """A rich progress bar over ``total`` steps; :meth:`advance` every ``every`` steps."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled, total
        self._bar: Any = None

    def __enter__(self) -> StageProgress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("scdiffusion {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[loss]}"),
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("", total=self.total, loss="")
        return self

    def advance(self, stage: str, steps: int, loss: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=steps, description=stage, loss=f"loss={loss:.4g}")

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
