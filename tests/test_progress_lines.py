"""Long runs report progress in logs: one plain line per finished task when stdout is not a terminal
(Slurm logs, CI, nohup), and the progress bar instead of those lines in an interactive terminal."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_counts

LINE = re.compile(
    r"^\[(\d+)/(\d+)\] (\S+/(?:nb|real|shuffled)/seed\d/main): (done|failed) in (\d+\.\d) s; (\d+) left, "
    r"ETA (\d+:\d\d:\d\d)$"
)


def _cmd(tmp_path: Path) -> list[str]:
    data = tmp_path / "cells.h5ad"
    make_counts(n_cells=150, n_genes=80, n_types=3, seed=5).write_h5ad(data)
    return [sys.executable, "-m", "bench.cli", "run", "--models", "nb", "--dataset", str(data), "--label-key",
            "cell_type", "--seeds", "0,1", "--metrics", "mean_corr", "--experiments", "main",
            "--out", str(tmp_path / "run")]  # fmt: skip


def test_one_plain_line_per_finished_task_when_stdout_is_not_a_terminal(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    proc = subprocess.run(_cmd(tmp_path), capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = [LINE.match(line) for line in proc.stdout.splitlines() if line.startswith("[")]
    assert found and all(found), proc.stdout
    assert [int(m.group(1)) for m in found] == [1, 2, 3, 4, 5, 6]
    assert {int(m.group(2)) for m in found} == {6}
    assert [int(m.group(6)) for m in found] == [5, 4, 3, 2, 1, 0]
    assert sorted(m.group(3).split("/", 1)[1] for m in found) == [
        "nb/seed0/main", "nb/seed1/main", "real/seed0/main", "real/seed1/main",
        "shuffled/seed0/main", "shuffled/seed1/main"]  # fmt: skip
    assert {m.group(4) for m in found} == {"done"}
    assert found[-1].group(7) == "0:00:00"


@pytest.mark.skipif(not hasattr(pty, "openpty"), reason="needs a pseudo-terminal")
def test_no_plain_lines_in_an_interactive_terminal(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(COLUMNS="120", TERM="xterm")
    leader, follower = pty.openpty()
    proc = subprocess.Popen(_cmd(tmp_path), stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=600) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))
    assert "results:" in text  # the run finished and printed its tables
    assert not re.search(r"\[\d+/\d+\] \S+: (done|failed) in", text)
