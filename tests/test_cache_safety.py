"""Downloads and caches (issue 32, finding 8): transient-error matching reads only the error's type
and message, pinned sha256 of download recipes, `.part` resume, the registry's lock, and the
prepared cache's checksums."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.failures import is_transient, retry_advice

sys.path.insert(0, str(Path(__file__).parent))


@pytest.mark.parametrize(
    "error",
    [
        "ValueError: bad shape (/home/u/timeout/plugin.py:12); traceback in /runs/timeout/tasks/abc/task.log",
        "ValueError: could not read /data/killed-cells/oom/x.h5ad",
        "KeyError: 'cell_type' (timeout.py:3)",
    ],
)
def test_a_path_with_a_transient_word_does_not_make_an_error_transient(error):
    assert not is_transient(error)
    assert "will repeat" in retry_advice([("x/nb/seed0/main", error)], "/runs/timeout")[0]


@pytest.mark.parametrize(
    "error",
    [
        "TaskFailed: fit timed out after 10 s; traceback in /runs/a/tasks/k/task.log",
        "Slurm job 12 ended TIMEOUT without writing a result",
        "RuntimeError: CUDA out of memory. Tried to allocate 2 GiB (/x/torch/nn.py:5)",
        "interrupted by SIGTERM (Slurm: scancel, time limit or preemption)",
        "Slurm job 5 left the queue without writing a result",
    ],
)
def test_transient_errors_still_are(error):
    assert is_transient(error)
