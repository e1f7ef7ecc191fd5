"""Hard limits on a task (issue 32, finding 4): every task of the local executor runs in a child
process that is killed at its limit (--timeout; --memory-limit, by default a fraction of the memory
available), fit, generate and score alike, and the task is recorded as failed with the reason, never
left `running`; --in-process runs them in bench, as before."""

from __future__ import annotations

import importlib
import io
import os
import signal
import sys
import textwrap
import threading
import time

import pytest

from bench import registry
from bench.store import Store
from tests.conftest import make_counts

PLUGIN = textwrap.dedent(
    '''
    import os, time
    import numpy as np
    from bench.api import FitResult, Generator, make_output


    class _Base(Generator):
        conditional = False
        output_scale = "counts"

        def fit(self, train, ctx):
            self.var_names = list(train.var_names)
            return FitResult(train_seconds=0.0)

        def generate(self, n_cells, *, seed):
            X = np.random.default_rng(seed).poisson(2.0, size=(n_cells, len(self.var_names)))
            return make_output(X, self.var_names)


    class Sleepy(_Base):
        """Ignores the cooperative deadline: sleeps in generate (which no deadline covered)."""
        name = "sleepy"

        def generate(self, n_cells, *, seed):
            time.sleep(60)
            return super().generate(n_cells, seed=seed)


    class Greedy(_Base):
        """Allocates one array far past any small cap."""
        name = "greedy"

        def generate(self, n_cells, *, seed):
            big = np.ones(4 * 1024**3 // 8)  # 4 GB
            return super().generate(n_cells, seed=seed + int(big[0]) - 1)


    class Hoarder(_Base):
        """Touches memory 64 MB at a time (resident, not just reserved)."""
        name = "hoarder"

        def generate(self, n_cells, *, seed):
            keep = []
            for _ in range(48):  # 3 GB at most
                keep.append(np.ones(64 * 1024**2 // 8))
                time.sleep(0.05)
            return super().generate(n_cells, seed=seed)


    class Suicidal(_Base):
        """Dies the way the kernel's out-of-memory killer kills."""
        name = "suicidal"

        def generate(self, n_cells, *, seed):
            os.kill(os.getpid(), 9)
    '''
)


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "limits_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module("limits_plugin")
    for cls in (module.Sleepy, module.Greedy, module.Hoarder, module.Suicidal):
        monkeypatch.setitem(registry._EXTRA["generators"], cls.name, cls)
    monkeypatch.setattr("bench.executors.isolated.GRACE_S", 0.5)
    yield module
    sys.modules.pop("limits_plugin", None)


def _run(tmp_path, model, timeout=None, memory=None, in_process=False, seeds=(0,)):
    """`bench run` of one task through the runner (its exit code: 0, 1 failed, 128+N interrupted) and
    the console's text."""
    from rich.console import Console

    from bench.config import build_spec
    from bench.interrupt import Interrupted
    from bench.runner import run

    data = tmp_path / "cells.h5ad"
    if not data.exists():
        data.parent.mkdir(parents=True, exist_ok=True)
        make_counts(n_cells=120, n_genes=60, n_types=3, seed=2).write_h5ad(data)
    run_dir = tmp_path / "run"
    spec = build_spec(None, models=model.split(","), seeds=list(seeds), control=False, datasets=[str(data)], label_key="cell_type",
                      metrics=["mean_corr"], experiments=["main"], timeout_s=timeout, memory_gb=memory,
                      executor={"name": "local", "in_process": True} if in_process else None)  # fmt: skip
    out = io.StringIO()
    try:
        result = run(spec, run_dir, console=Console(file=out, width=200))
    except Interrupted as exc:
        return exc.exit_code, run_dir, out.getvalue()
    return (1 if result.failed else 0), run_dir, out.getvalue()


def _only_task(run_dir):
    with Store(run_dir, create=False) as store:
        (row,) = store.tasks().itertuples()
        return row.status, store.task_row(row.key)["error"]


def test_a_task_past_its_time_limit_is_killed_and_recorded(plugin, tmp_path):
    """generate() sleeping 60 s under --timeout 2: killed at ~2.5 s, recorded failed with the reason."""
    t0 = time.monotonic()
    rc, run_dir, out = _run(tmp_path, "sleepy", timeout=2)
    took = time.monotonic() - t0
    assert rc == 1
    assert took < 40, took  # not the 60 s the model sleeps
    status, error = _only_task(run_dir)
    assert status == "failed"
    assert error.startswith("killed: exceeded the 2 s task limit"), error
    assert "FAILED cells/sleepy/seed0/main: killed: exceeded the 2 s task limit" in out


def test_an_allocation_past_the_memory_cap_fails_the_task(plugin, tmp_path):
    """A 4 GB allocation under --memory-limit 1: refused (RLIMIT_AS), the task fails with the limit."""
    rc, run_dir, _ = _run(tmp_path, "greedy", memory=1)
    assert rc == 1
    status, error = _only_task(run_dir)
    assert status == "failed"
    assert "out of memory (limit 1 GB, --memory-limit)" in error and "MemoryError" in error, error


def test_resident_memory_past_the_cap_is_killed(plugin, tmp_path):
    """Memory touched 64 MB at a time: the child is killed once its resident memory passes the cap."""
    rc, run_dir, _ = _run(tmp_path, "hoarder", memory=1)
    assert rc == 1
    status, error = _only_task(run_dir)
    assert status == "failed"
    assert error.startswith("killed: out of memory (limit 1 GB") or "MemoryError" in error, error


def test_a_child_killed_by_sigkill_is_recorded_not_left_running(plugin, tmp_path):
    """What the kernel's OOM killer does: bench goes on, the task is failed with the reason."""
    rc, run_dir, _ = _run(tmp_path, "suicidal", timeout=600)
    assert rc == 1
    status, error = _only_task(run_dir)
    assert status == "failed"
    assert error.startswith("killed by SIGKILL: most likely out of memory"), error


def test_sigterm_to_bench_stops_the_child_and_records_the_task(plugin, tmp_path):
    timer = threading.Timer(4.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        rc, run_dir, _ = _run(tmp_path, "sleepy", timeout=600)
    finally:
        timer.cancel()
    assert rc == 128 + signal.SIGTERM
    status, error = _only_task(run_dir)
    assert status == "failed"
    assert error.startswith("interrupted by SIGTERM: the task was stopped"), error
    import psutil

    assert not [p for p in psutil.Process().children(recursive=True) if "task" in p.name()]


def _default_cap_of(gb: float, monkeypatch) -> None:
    """Make the default memory cap about ``gb`` GB on this machine (SCGENBENCH_MEMORY_FRACTION)."""
    import psutil

    monkeypatch.setenv(
        "SCGENBENCH_MEMORY_FRACTION", f"{gb * 1024**3 / psutil.virtual_memory().available:.6f}"
    )


def test_without_a_memory_limit_the_default_cap_holds(plugin, tmp_path, monkeypatch):
    """No --memory-limit: the task still runs in a child under the default cap (here about 0.5 GB);
    touching 3 GB fails the task with the cap and where it came from, and bench goes on. Before,
    the task ran in bench with no cap at all (it took the 3 GB, or the machine's memory)."""
    _default_cap_of(0.5, monkeypatch)
    rc, run_dir, out = _run(tmp_path, "hoarder")
    assert rc == 1
    status, error = _only_task(run_dir)
    assert status == "failed"
    assert "out of memory (limit 0.5" in error and "GB, the default, " in error, error
    assert "--memory-limit to set it" in error


def test_the_default_cap_follows_the_memory_available(monkeypatch):
    import psutil

    from bench.api.errors import UserError
    from bench.executors import memory
    from bench.executors.memory import DEFAULT_MEMORY_FRACTION, default_memory_gb

    monkeypatch.delenv("SCGENBENCH_MEMORY_FRACTION", raising=False)
    gb, how = default_memory_gb()
    assert 0 < gb <= DEFAULT_MEMORY_FRACTION * psutil.virtual_memory().total / 1024**3
    assert how.startswith(f"the default, {DEFAULT_MEMORY_FRACTION:g} of the ")
    monkeypatch.setattr(memory, "_cgroup_room", lambda: 1024**3)  # a container limited to 1 GB
    gb, how = default_memory_gb()
    assert gb == pytest.approx(DEFAULT_MEMORY_FRACTION) and "under the cgroup's memory limit" in how
    for bad in ("0", "1.5", "abc"):
        monkeypatch.setenv("SCGENBENCH_MEMORY_FRACTION", bad)
        with pytest.raises(UserError, match="SCGENBENCH_MEMORY_FRACTION"):
            default_memory_gb()


def test_without_options_tasks_run_in_a_child(tmp_path, monkeypatch):
    """No --timeout, no --memory-limit: still a child process per task (the hard limits hold); two
    tasks share one child while it lives (what their libraries compile once is not compiled again)."""
    from bench.executors import isolated

    pids = []
    real = isolated.TaskProcess.run

    def run(self, *args, **kwargs):
        rec = real(self, *args, **kwargs)
        pids.append(self.proc.pid)
        return rec

    monkeypatch.setattr(isolated.TaskProcess, "run", run)
    rc, run_dir, _ = _run(tmp_path, "nb", seeds=[0, 1])
    assert rc == 0 and len(pids) == 2 and pids[0] == pids[1] != os.getpid()
    with Store(run_dir, create=False) as store:
        assert set(store.tasks().status) == {"done"}


def test_a_fresh_child_follows_a_killed_one(plugin, tmp_path):
    """The task after a killed one runs in a new child and is done."""
    rc, run_dir, _ = _run(tmp_path, "suicidal,nb")
    assert rc == 1
    with Store(run_dir, create=False) as store:
        tasks = store.tasks()
        assert dict(zip(tasks.model, tasks.status, strict=True)) == {"suicidal": "failed", "nb": "done"}


def test_in_process_runs_tasks_in_this_process(tmp_path, monkeypatch):
    """--in-process (for pdb): no child process, the run as it was before the hard limits."""
    from bench.executors import isolated

    def refuse(*args, **kwargs):
        raise AssertionError("a child process was started")

    monkeypatch.setattr(isolated.TaskProcess, "__init__", refuse)
    monkeypatch.setattr(isolated, "start_server", refuse)
    rc, run_dir, _ = _run(tmp_path, "nb", in_process=True)
    assert rc == 0
    assert _only_task(run_dir)[0] == "done"


def test_in_process_is_checked():
    from bench.api.errors import UserError
    from bench.cli import build_parser, spec_of
    from bench.config import build_spec
    from bench.executors import make_executor

    args = build_parser().parse_args(["run", "--models", "nb", "--in-process"])
    spec = spec_of(args)
    assert spec.executor == {"name": "local", "in_process": True}
    assert make_executor(spec.executor).in_process
    with pytest.raises(UserError, match="--memory-limit needs each task in a child process"):
        build_spec(None, models=["nb"], memory_gb=4, executor={"in_process": True})
    with pytest.raises(UserError, match="in_process must be true or false"):
        make_executor({"name": "local", "in_process": "yes"})


def test_a_child_gives_the_same_values_as_in_process(tmp_path):
    """The child process changes nothing in the values: nb in bench and in a child with limits."""
    rc, plain, _ = _run(tmp_path, "nb", in_process=True)
    assert rc == 0
    rc, limited, _ = _run(tmp_path / "x", "nb", timeout=600, memory=8)
    assert rc == 0
    with Store(plain, create=False) as a, Store(limited, create=False) as b:
        va, vb = a.values(), b.values()
        assert list(va[va.metric == "mean_corr"].value) == list(vb[vb.metric == "mean_corr"].value)
        assert len(va[va.metric == "mean_corr"]) == 1


def test_memory_limit_is_checked_and_not_in_the_key(tmp_path):
    from bench.api.errors import UserError
    from bench.config import build_spec

    for bad in (0, -1, float("nan"), "abc"):
        with pytest.raises(UserError, match="memory limit must be a positive number"):
            build_spec({"models": ["nb"], "memory_gb": bad})
    assert build_spec({"models": ["nb"], "memory_gb": 4}).memory_gb == 4


@pytest.mark.parametrize(
    "error",
    [
        "killed: exceeded the 600 s task limit (--timeout; fit, generate and score together)",
        "killed: out of memory (limit 8 GB, --memory-limit)",
        "out of memory (limit 1 GB, --memory-limit): MemoryError: Unable to allocate 4.00 GiB",
        "TaskFailed: fit timed out after 10 s; traceback in /runs/a/tasks/k/task.log",
        "fit: training exceeded its time limit (--timeout) and was stopped",
        "timeout: Slurm job 74_0 reached its time limit (1:00) and was stopped; raise the job's --time with "
        "[executor] time_min (or the model's resources time_min), and --timeout if the task has one, then run again",
    ],
)
def test_a_limit_the_user_set_is_not_called_transient(error):
    """The same limit stops the task again: the advice is to raise it, not to run again as is."""
    from bench.failures import is_limit, is_transient, retry_advice

    assert is_limit(error) and not is_transient(error)
    (line,) = retry_advice([("x/nb/seed0/main", error)], "/runs/a")
    assert "raise the limit each error names" in line and "run the same command again" not in line


PID_PLUGIN = """\
import os, time
from bench.generators.baselines import NegativeBinomial


class PidSleepy(NegativeBinomial):
    name = "pidsleepy"

    def fit(self, train, ctx):
        with open(os.environ["PIDSLEEPY_FILE"], "w") as fh:
            fh.write(str(os.getpid()))
        time.sleep(300)
        return super().fit(train, ctx)
"""


def test_a_task_child_does_not_outlive_a_killed_bench(tmp_path):
    """SIGKILL of `bench run --timeout` (no clean-up possible there): its task's child process stops
    too instead of computing on as an orphan."""
    import subprocess

    import psutil

    plugins = tmp_path / "plugins"
    (plugins / "pidsleepy-0.1.dist-info").mkdir(parents=True)
    (plugins / "pidsleepy.py").write_text(PID_PLUGIN)
    (plugins / "pidsleepy-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: pidsleepy\nVersion: 0.1\n"
    )
    (plugins / "pidsleepy-0.1.dist-info" / "entry_points.txt").write_text(
        "[bench.generators]\npidsleepy = pidsleepy:PidSleepy\n"
    )
    make_counts(n_cells=120, n_genes=60, n_types=3, seed=2).write_h5ad(tmp_path / "cells.h5ad")
    pid_file = tmp_path / "child.pid"
    env = {**os.environ, "PIDSLEEPY_FILE": str(pid_file),
           "PYTHONPATH": os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    bench = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", "--models", "pidsleepy", "--no-control",
                              "--dataset", str(tmp_path / "cells.h5ad"), "--label-key", "cell_type", "--metrics",
                              "mean_corr", "--experiments", "main", "--out", str(tmp_path / "run")],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not pid_file.exists() and time.monotonic() < deadline and bench.poll() is None:
            time.sleep(0.5)
        assert pid_file.exists(), "the task never started"
        time.sleep(0.5)
        child = psutil.Process(int(pid_file.read_text()))
        assert child.pid != bench.pid
        bench.kill()
        bench.wait()
        gone, alive = psutil.wait_procs([child], timeout=30)
        assert not alive, "the task's child process outlived bench"
    finally:
        if bench.poll() is None:
            bench.kill()


KILLED_PLUGIN = """\
import os
from bench.generators.baselines import NegativeBinomial


class OomKilled(NegativeBinomial):
    name = "oomkilled"

    def fit(self, train, ctx):
        os.kill(os.getpid(), 9)  # what the kernel's out-of-memory killer does
"""


def test_an_oom_kill_without_options_leaves_bench_running(tmp_path):
    """`bench run` with no --timeout and no --memory-limit, and the task's process SIGKILLed (the
    kernel's out-of-memory killer): bench goes on, exits 1, the task is recorded failed with the
    reason and is not `running`. Before, the task ran in bench: bench died with it (exit -9) and the
    task stayed `running`."""
    import subprocess

    plugins = tmp_path / "plugins"
    (plugins / "oomkilled-0.1.dist-info").mkdir(parents=True)
    (plugins / "oomkilled.py").write_text(KILLED_PLUGIN)
    (plugins / "oomkilled-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: oomkilled\nVersion: 0.1\n"
    )
    (plugins / "oomkilled-0.1.dist-info" / "entry_points.txt").write_text(
        "[bench.generators]\noomkilled = oomkilled:OomKilled\n"
    )
    make_counts(n_cells=120, n_genes=60, n_types=3, seed=2).write_h5ad(tmp_path / "cells.h5ad")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--models", "oomkilled,nb", "--no-control",
                           "--dataset", str(tmp_path / "cells.h5ad"), "--label-key", "cell_type", "--metrics",
                           "mean_corr", "--experiments", "main", "--out", str(tmp_path / "run")],
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    with Store(tmp_path / "run", create=False) as store:
        tasks = store.tasks()
        assert dict(zip(tasks.model, tasks.status, strict=True)) == {"oomkilled": "failed", "nb": "done"}
        error = store.task_row(tasks[tasks.model == "oomkilled"].key.iloc[0])["error"]
    assert error.startswith("killed by SIGKILL: most likely out of memory"), error
    assert "the default, " in error
    assert "FAILED cells/oomkilled/seed0/main: killed by SIGKILL" in out
