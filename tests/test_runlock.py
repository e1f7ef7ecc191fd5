"""One `bench run` per run dir (issue 32, finding 5): a second run is refused naming the holder, a
stale lock is taken over with a note, and no store write flips a finished task back."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from bench.api.errors import UserError
from bench.cli import main
from bench.runlock import check_free, lock_path, run_dir_lock
from bench.store import Store
from bench.tasks import TaskRecord
from tests.conftest import make_counts
from tests.store_fixtures import task

HOLD = (
    "import sys, time\n"
    "from bench.runlock import run_dir_lock\n"
    "with run_dir_lock(sys.argv[1], command=['bench', 'run', '--models', 'nb']):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(60)\n"
)


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of tmp_path/run."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield run_dir, proc
    finally:
        proc.kill()
        proc.wait()


def test_second_run_on_a_held_run_dir_exits_2_naming_the_holder(holder, tmp_path, capfd):
    run_dir, proc = holder
    h5ad = tmp_path / "cells.h5ad"
    make_counts(n_cells=60, n_genes=50, n_types=2, seed=1).write_h5ad(h5ad)
    before = sorted(p.name for p in run_dir.iterdir())
    rc = main(["run", "--models", "nb", "--dataset", str(h5ad), "--label-key", "cell_type",
               "--experiments", "main", "--metrics", "mean_corr", "--out", str(run_dir)])  # fmt: skip
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1, err
    assert f"pid {proc.pid} on {socket.gethostname()} since " in err[0]
    assert "bench run --models nb" in err[0] and "another --out" in err[0]
    assert sorted(p.name for p in run_dir.iterdir()) == before  # nothing written: no store


def test_the_lock_is_refused_also_at_acquisition(holder):
    run_dir, proc = holder
    with pytest.raises(UserError, match=f"pid {proc.pid}"), run_dir_lock(run_dir):
        pass


def test_a_killed_holder_leaves_a_stale_lock_that_is_taken_over_with_a_note(holder):
    run_dir, proc = holder
    proc.kill()  # SIGKILL: its line stays in the file, the kernel drops its flock
    proc.wait()
    assert json.loads(lock_path(run_dir).read_text())["pid"] == proc.pid
    check_free(run_dir)  # not refused
    notes: list[str] = []
    with run_dir_lock(run_dir, command=["bench", "run"], note=notes.append):
        assert json.loads(lock_path(run_dir).read_text())["pid"] == os.getpid()
    assert len(notes) == 1 and "stale lock" in notes[0] and f"pid {proc.pid}" in notes[0]
    assert lock_path(run_dir).read_text() == ""  # released: an empty file is a free lock


def test_without_flock_a_dead_pid_on_this_host_is_stale_and_a_live_one_refused(tmp_path, monkeypatch):
    import errno

    import bench.runlock as runlock

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "no locks")

    monkeypatch.setattr(runlock.fcntl, "flock", no_flock)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    line = {"pid": dead.pid, "host": socket.gethostname(), "since": time.time(), "command": "bench run"}
    lock_path(run_dir).write_text(json.dumps(line))
    notes: list[str] = []
    with run_dir_lock(run_dir, note=notes.append):
        pass
    assert notes and "stale" in notes[0]
    lock_path(run_dir).write_text(json.dumps({**line, "pid": os.getppid()}))  # alive
    with pytest.raises(UserError, match="is in use by"):
        check_free(run_dir)
    with pytest.raises(UserError, match="is in use by"), run_dir_lock(run_dir):
        pass


def test_mark_running_never_flips_a_task_another_process_finished(tmp_path):
    spec = task("nb", 0)
    with Store(tmp_path / "a") as store:
        now = time.time()
        done = TaskRecord(key=spec.key, status="done", values=[("mmd", 0.5)], started=now, finished=now + 1)
        store.write_record(spec, done, None)
        store.mark_running(spec, None)  # a second process that planned the task before it was done
        store.mark_state(spec, None, "submitted")
        assert store.task_row(spec.key)["status"] == "done"
        assert list(store.values().value) == [0.5]
        # its attempt fails, having started before the other finished: the result stays
        failed = TaskRecord(key=spec.key, status="failed", error="boom", started=now - 5, finished=now + 2)
        store.write_record(spec, failed, None)
        assert store.task_row(spec.key)["status"] == "done"
        assert list(store.values().value) == [0.5]
        # a rerun that started after the result (e.g. --force) and failed does replace it
        later = TaskRecord(key=spec.key, status="failed", error="boom", started=now + 10, finished=now + 11)
        store.write_record(spec, later, None)
        assert store.task_row(spec.key)["status"] == "failed"
        assert store.values().empty


def test_tasks_a_dead_run_left_running_are_recorded_failed_then_rerun(tmp_path, capsys):
    """Issue 32, finding 4: a `bench run` killed mid-task (SIGKILL, the out-of-memory killer) left
    the task `running`. The next run, taking over the stale lock, records it failed with the reason
    before it runs it again; a task of a Slurm run is left to the Slurm ledger."""
    data = tmp_path / "d.h5ad"
    make_counts(n_cells=90, n_genes=40).write_h5ad(data)
    run_dir = tmp_path / "run"
    args = ["run", "--models", "nb", "--dataset", str(data), "--label-key", "cell_type", "--metrics",
            "mean_corr", "--experiments", "main", "--no-control", "--out", str(run_dir)]  # fmt: skip
    assert main(args) == 0
    with Store(run_dir) as store:
        key = store.tasks().key.iloc[0]
        store.conn.execute("UPDATE tasks SET status='running' WHERE key=?", (key,))  # as a kill leaves it
        store.conn.commit()
        slurm_run = store.add_run({"executor": {"name": "slurm"}}, {})
        store.conn.execute(
            "INSERT INTO tasks (key, run_id, status) VALUES ('slurm-task', ?, 'running')", (slurm_run,)
        )
        store.conn.commit()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    line = {"pid": dead.pid, "host": socket.gethostname(), "since": time.time(), "command": "bench run"}
    lock_path(run_dir).write_text(json.dumps(line))
    with Store(run_dir) as store:  # what the next run records first (the reason names the dead run)
        assert store.fail_orphans("killed: test") == [key]
        assert store.task_row(key)["status"] == "failed" and store.task_row(key)["error"] == "killed: test"
        assert store.task_row("slurm-task")["status"] == "running"
        store.conn.execute("UPDATE tasks SET status='running' WHERE key=?", (key,))
        store.conn.commit()
    capsys.readouterr()
    assert main(args) == 0  # takes the stale lock over, records the orphan, reruns it
    out = capsys.readouterr().out
    assert "took over a stale lock" in out and "recorded 1 task(s) the dead run left running as failed" in out
    with Store(run_dir) as store:
        assert store.task_row(key)["status"] == "done"
