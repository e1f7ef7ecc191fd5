"""Training time, generation time and peak memory (ACTIVA paper, section 5.1, Table 1)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psutil

T = TypeVar("T")
MB = 1024.0 * 1024.0


def _tree_rss(proc: psutil.Process) -> int:
    """Resident set size of ``proc`` plus all its live descendants (bytes)."""
    total = 0
    try:
        total += proc.memory_info().rss
        children = proc.children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return total
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += child.memory_info().rss
    return total


class _RssSampler(threading.Thread):
    def __init__(self, interval: float):
        super().__init__(daemon=True)
        self.interval = interval
        self.proc = psutil.Process()
        self.peak = _tree_rss(self.proc)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, _tree_rss(self.proc))
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, _tree_rss(self.proc))
        return self.peak


def measure(fn: Callable[[], T], *, interval: float = 0.05) -> tuple[T, float, float, float | None]:
    """Run ``fn()`` and return ``(result, seconds, peak_rss_mb, peak_gpu_mb)``.

    * ``seconds``: wall time (``time.perf_counter``).
    * ``peak_rss_mb``: peak resident memory of this process *and its child processes* (container
      and process backends run the model in a child) while ``fn`` ran, sampled every ``interval``
      seconds by a background thread with psutil (peaks shorter than the interval can be missed;
      ``resource.getrusage`` is not used because its maximum covers the whole process lifetime,
      not this call, and only reaped children).
    * ``peak_gpu_mb``: ``torch.cuda.max_memory_allocated`` over all devices after resetting the
      peak counters, when torch sees a CUDA device; ``None`` otherwise. It covers this process's
      PyTorch allocations only (not TensorFlow, not a container).
    """
    cuda = _cuda_available()
    if cuda:
        import torch

        for d in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(d)
    sampler = _RssSampler(interval)
    sampler.start()
    start = time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = time.perf_counter() - start
        peak_rss = sampler.stop()
    peak_gpu = None
    if cuda:
        import torch

        torch.cuda.synchronize()
        peak_gpu = sum(torch.cuda.max_memory_allocated(d) for d in range(torch.cuda.device_count())) / MB
    return result, seconds, peak_rss / MB, peak_gpu


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover - torch missing or broken
        return False


def timing(
    generator: Any, fit_info: dict[str, Any], *, seed: int, n_cells: int = 100_000
) -> dict[str, float]:
    """Training and generation cost of a fitted generator (ACTIVA paper, section 5.1).

    Values:

    * ``train_seconds``: wall time of training, as measured around ``fit`` (``fit_info``).
    * ``peak_rss_mb`` / ``peak_gpu_mb``: peak memory during fit, copied from ``fit_info`` when
      present (the runner measures them with :func:`measure`).
    * ``generate_seconds_per_100k``: seconds to generate ``n_cells`` cells with
      ``generator.time_generation(n_cells, seed=seed)`` (chunks of 10,000), scaled linearly to
      100,000 cells (the paper reports inference time for 100K cells); ``generate_cells_timed``
      records ``n_cells`` so a scaled figure is recognisable.
    """
    if "train_seconds" not in fit_info:
        raise ValueError("fit_info lacks 'train_seconds'")
    values: dict[str, float] = {"train_seconds": float(fit_info["train_seconds"])}
    for key in ("peak_rss_mb", "peak_gpu_mb"):
        if fit_info.get(key) is not None:
            values[key] = float(fit_info[key])
    n_cells = int(n_cells)
    if n_cells < 1:
        raise ValueError("n_cells must be positive")
    seconds = float(generator.time_generation(n_cells, seed=seed))
    values["generate_seconds_per_100k"] = seconds * 100_000 / n_cells
    values["generate_cells_timed"] = float(n_cells)
    return values
