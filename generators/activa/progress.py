"""ACTIVA's training progress: a rich progress bar per epoch with the losses (:class:`EpochProgress`)
and the per-epoch loss history that fit reports (:func:`record_epoch`)."""

from __future__ import annotations

from typing import Any


def record_epoch(history: dict[str, list[float]], logs: dict[str, Any], epoch: int) -> None:
    history.setdefault("epoch", []).append(float(epoch))
    for k, v in logs.items():
        if k == "phase":
            continue
        history.setdefault(k, [])
        # pad keys that appear only in some phases so every list is aligned with "epoch"
        while len(history[k]) < len(history["epoch"]) - 1:
            history[k].append(float("nan"))
        history[k].append(float(v))
    for vals in history.values():
        while len(vals) < len(history["epoch"]):
            vals.append(float("nan"))


class EpochProgress:
    """A rich progress bar per epoch with the losses; silent unless ``enabled``."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled, total
        self._bar = None

    def __enter__(self) -> EpochProgress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("activa {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[losses]}"),
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("", total=self.total, losses="")
        return self

    def advance(self, description: str, logs: dict[str, float]) -> None:
        if self._bar is not None:
            losses = " ".join(f"{k}={v:.4g}" for k, v in logs.items())
            self._bar.update(self._task, advance=1, description=description, losses=losses)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
