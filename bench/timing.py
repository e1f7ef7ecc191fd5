"""How the harness measures a generator: wall time and peak memory of a call, generation time.

The runner owns these measurements (a generator never times itself for the tables); the
``timing`` metric only reports what they found (ACTIVA paper, section 5.1, Table 1)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import psutil

# defined by the evaluation contract (bench.api.contract); the report and the gate read them here
from bench.api.contract import FIT_VALUES as FIT_VALUES
from bench.api.contract import HARDWARE_VALUES as HARDWARE_VALUES

T = TypeVar("T")
MB = 1024.0 * 1024.0


def _rss(proc: psutil.Process) -> int:
    try:
        return proc.memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0


def _descendants(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _tree_rss(proc: psutil.Process, children: list[psutil.Process] | None = None) -> int:
    """Resident set size of ``proc`` plus its descendants (bytes): ``children``, else all live ones."""
    children = _descendants(proc) if children is None else children
    return _rss(proc) + sum(_rss(c) for c in children)


class _RssSampler(threading.Thread):
    """Samples the RSS of this process and its descendants every ``interval`` seconds.

    Finding the descendants walks every process of the machine (psutil reads each /proc/PID/stat):
    about 3 ms with 80 processes, more on a busy node, which at 20 samples a second took a
    noticeable share of a core from the model being measured. So the list of descendants is
    refreshed every ``rescan`` seconds, and each sample reads only the known processes' RSS."""

    def __init__(self, interval: float, rescan: float = 1.0):
        super().__init__(daemon=True)
        self.interval = interval
        self.rescan = rescan
        self.proc = psutil.Process()
        # children alive before the call are not its work (a worker pool or a server an earlier
        # task left running): only the processes the call starts count
        self._before = {c.pid for c in _descendants(self.proc)}
        self.peak = _rss(self.proc)
        self._stop_event = threading.Event()

    def _new_children(self) -> list[psutil.Process]:
        return [c for c in _descendants(self.proc) if c.pid not in self._before]

    def run(self) -> None:
        children, scanned = self._new_children(), time.monotonic()
        while not self._stop_event.is_set():
            if time.monotonic() - scanned >= self.rescan:
                children, scanned = self._new_children(), time.monotonic()
            self.peak = max(self.peak, _tree_rss(self.proc, children))
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, _tree_rss(self.proc, self._new_children()))
        return self.peak


@dataclass
class Measurement(Generic[T]):
    """``result`` of the call; ``seconds``: its wall time; ``peak_rss_mb``: the peak increase of
    resident memory of this process and its children over their value when the call started
    (the model's own memory, not what earlier tasks left in the process); ``peak_gpu_mb``: the
    peak of PyTorch's CUDA allocations over their value at the start, ``None`` without CUDA."""

    result: T
    seconds: float
    peak_rss_mb: float
    peak_gpu_mb: float | None


def measure(fn: Callable[[], T], *, interval: float = 0.05) -> Measurement[T]:
    """Run ``fn()`` and measure its wall time and peak memory increase.

    * wall time: ``time.perf_counter``;
    * memory: the resident set size of this process *and the child processes it starts* (container
      and process backends run the model in a child; children alive before the call are left out)
      sampled every ``interval`` seconds by a
      background thread with psutil (the list of child processes is refreshed every second, so
      a child that lives less than a second can be missed); the value is the peak minus the size
      at the start, so it does not depend on what earlier tasks left in the process. Memory freed
      earlier but kept by the allocator can be reused without growing RSS, so this can underestimate; peaks shorter than
      the interval can be missed. ``resource.getrusage`` is not used: its maximum covers the whole
      process lifetime and only reaped children;
    * GPU: ``torch.cuda.max_memory_allocated`` minus ``memory_allocated`` at the start, summed over
      devices, when torch sees CUDA (this process's PyTorch allocations only: not TensorFlow, not
      a container).
    """
    cuda = _cuda_available()
    gpu_start = 0
    if cuda:
        import torch

        for d in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(d)
        gpu_start = sum(torch.cuda.memory_allocated(d) for d in range(torch.cuda.device_count()))
    sampler = _RssSampler(interval)
    baseline = sampler.peak
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
        peak = sum(torch.cuda.max_memory_allocated(d) for d in range(torch.cuda.device_count()))
        peak_gpu = max(peak - gpu_start, 0) / MB
    return Measurement(result, seconds, max(peak_rss - baseline, 0) / MB, peak_gpu)


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover - torch missing or broken
        return False


@dataclass
class GenerationTiming:
    """``wall_seconds``: around the generator's ``generate()`` calls, as a user would call it
    (a container model's start-up included); ``own_seconds``: the model's own generation time
    when every chunk reported one in ``uns['scgenbench']['generate_seconds']`` (measured inside
    a container), else ``None``; ``n_cells``; ``chunk``."""

    wall_seconds: float
    own_seconds: float | None
    n_cells: int
    chunk: int


def time_generation(
    generate: Callable[[int, int], Any], n_cells: int, *, seed: int, chunk: int = 10_000
) -> GenerationTiming:
    """Time ``generate(k, seed)`` for ``n_cells`` cells in chunks of ``chunk`` (memory stays bounded;
    the cells are dropped)."""
    n_cells = int(n_cells)
    if n_cells < 1:
        raise ValueError("n_cells must be positive")
    wall, own, done = 0.0, 0.0, 0
    reported = True
    while done < n_cells:
        k = min(chunk, n_cells - done)
        start = time.perf_counter()
        out = generate(k, seed + done)
        wall += time.perf_counter() - start
        meta = getattr(out, "uns", {}).get("scgenbench", {}) if out is not None else {}
        if isinstance(meta, dict) and meta.get("generate_seconds") is not None:
            own += float(meta["generate_seconds"])
        else:
            reported = False
        done += k
        del out
    return GenerationTiming(wall, own if reported else None, n_cells, int(chunk))
