"""Slurm edges (issue 32, findings 6 and 4) on a real cluster (CI: scripts/ci/slurm-setup.sh, one
node): a job stopped at its time limit is recorded as `timeout` with what to raise, scancel and
`scontrol requeue` leave a failed record, a driver killed between sbatch and its ledger save does
not submit again, every job cleans up containers on its own node, and a job's task runs in a child
process under the default memory cap (past it, or killed as by the out-of-memory killer, the task is
recorded failed with the reason).

Skipped without a cluster; FAILS when BENCH_REQUIRE_SLURM=1 (and, for the clean-up, without a
Docker engine when BENCH_REQUIRE_DOCKER=1)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.executors.slurm.ledger import load_ledger, record_path
from bench.failures import is_limit, is_transient
from bench.store import Store
from bench.tasks import TaskRecord
from tests.conftest import make_counts

pytestmark = [pytest.mark.slurm]

PLUGIN = '''\
"""`sleepy`: nb whose fit first sleeps SLEEPY_S seconds (default 300), saying so on stdout."""
import os
import time

from bench.generators.baselines import NegativeBinomial


class Sleepy(NegativeBinomial):
    name = "sleepy"

    def fit(self, train, ctx):
        print("sleepy: fitting", flush=True)
        time.sleep(float(os.environ.get("SLEEPY_S", "300")))
        return super().fit(train, ctx)


class Hoarder(NegativeBinomial):
    """Touches memory 64 MB at a time, 3 GB at most."""
    name = "hoarder"

    def fit(self, train, ctx):
        import numpy as np

        keep = [np.ones(64 * 1024**2 // 8) for _ in range(48)]
        return super().fit(train, ctx)


class OomKilled(NegativeBinomial):
    """Dies the way the kernel's out-of-memory killer kills."""
    name = "oomkilled"

    def fit(self, train, ctx):
        os.kill(os.getpid(), 9)
'''
CONFIG = """\
[executor]
poll_s = 1
record_grace_s = 3
"""


@pytest.fixture
def env(tmp_path):
    plugins = tmp_path / "plugins"
    (plugins / "sleepyplug-0.1.dist-info").mkdir(parents=True)
    (plugins / "sleepyplug.py").write_text(PLUGIN)
    (plugins / "sleepyplug-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: sleepyplug\nVersion: 0.1\n"
    )
    (plugins / "sleepyplug-0.1.dist-info" / "entry_points.txt").write_text(
        "[bench.generators]\nsleepy = sleepyplug:Sleepy\nhoarder = sleepyplug:Hoarder\n"
        "oomkilled = sleepyplug:OomKilled\n"
    )
    make_counts(n_cells=120, n_genes=60, n_types=3, seed=3).write_h5ad(tmp_path / "tiny.h5ad")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")])}


def args(tmp_path: Path, config: str = CONFIG, *extra: str, models: str = "sleepy") -> list[str]:
    (tmp_path / "run.toml").write_text(config)
    return ["run", "--config", str(tmp_path / "run.toml"), "--models", models, "--no-control",
            "--dataset", str(tmp_path / "tiny.h5ad"), "--label-key", "cell_type", "--metrics", "mean_corr",
            "--experiments", "main", "--executor", "slurm", "--out", str(tmp_path / "run"), *extra]  # fmt: skip


def bench_cli(argv: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *argv], capture_output=True, text=True, env=env,
                          timeout=timeout)  # fmt: skip


def only_entry(run_dir: Path) -> tuple[str, dict]:
    ((key, entry),) = load_ledger(run_dir)["tasks"].items()
    return key, entry


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}")


def job_active(job: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=60)
    return any(s in ("RUNNING", "COMPLETING", "PENDING", "REQUEUED") for s in out.stdout.split())


def started_fitting(entry: dict) -> bool:
    try:
        return "sleepy: fitting" in Path(entry["stdout"]).read_text()
    except OSError:
        return False


def test_a_time_limit_is_recorded_as_timeout_with_what_to_raise(env, require_slurm, tmp_path):
    # nb alongside (its own 10 min limit), so that the run has a table to print
    argv = args(tmp_path, CONFIG + "[executor.resources.sleepy]\ntime_min = 1\n")
    argv[argv.index("sleepy")] = "sleepy,nb"
    proc = bench_cli(argv, env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    with Store(tmp_path / "run", create=False) as store:
        tasks = store.tasks()
        assert dict(zip(tasks.model, tasks.status, strict=True)) == {"sleepy": "failed", "nb": "done"}
        error = store.task_row(tasks[tasks.model == "sleepy"].key.iloc[0])["error"]
    assert error.startswith("timeout: Slurm job ") and "reached its time limit" in error, error
    assert "time_min" in error
    assert is_limit(error) and not is_transient(error)
    assert "ran past a time or memory limit" in out and "run the same command again to retry" not in out


@pytest.mark.parametrize("how", ["scancel", "requeue"])
def test_scancel_and_requeue_leave_a_failed_record(env, require_slurm, tmp_path, how):
    proc = bench_cli(args(tmp_path, CONFIG, "--detach"), env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = tmp_path / "run"
    key, entry = only_entry(run_dir)
    job = entry["job_id"]
    try:
        wait_for(lambda: started_fitting(entry), 240, "the job to start its task")
        cmd = ["scancel", job] if how == "scancel" else ["scontrol", "requeue", job]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        wait_for(record_path(run_dir, key).exists, 90, "the job's record")
        rec = TaskRecord.load(record_path(run_dir, key))
        assert rec.status == "failed"
        assert rec.error.startswith("interrupted by SIGTERM (Slurm: scancel, time limit or preemption)"), (
            rec.error
        )
        assert "Segmentation fault" not in Path(entry["stderr"]).read_text(errors="replace")
    finally:
        subprocess.run(["scancel", job], capture_output=True, timeout=60)
        # the node settles (no job completing) before the next test asks whether Slurm is up
        wait_for(lambda: not job_active(job), 120, f"job {job} to leave the node")
    st = bench_cli(["status", str(run_dir)], env)
    assert "failed: 1" in st.stdout, st.stdout


KILL_AFTER_SBATCH = """\
import os, signal, sys
from bench.executors.slurm import executor
real = executor.submit_group
def submit_then_die(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # between sbatch and the ledger's save of the job ids
executor.submit_group = submit_then_die
from bench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_driver_killed_between_sbatch_and_the_save_does_not_submit_again(env, require_slurm, tmp_path):
    script = tmp_path / "die.py"
    script.write_text(KILL_AFTER_SBATCH)
    env = {**env, "SLEEPY_S": "1"}
    first = subprocess.run([sys.executable, str(script), *args(tmp_path)], capture_output=True, text=True,
                           env=env, timeout=600)  # fmt: skip
    assert first.returncode == -9, first.stdout + first.stderr
    run_dir = tmp_path / "run"
    key, entry = only_entry(run_dir)
    assert entry.get("state") == "submitting" and entry["job_name"].startswith("scgenbench-sleepy-")
    proc = bench_cli(args(tmp_path), env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "slurm: submitted" not in out
    arrays = {p.name.split("_")[0] for p in (run_dir / "slurm").iterdir() if p.is_dir()}
    assert len(arrays) == 1, arrays  # one sbatch in all
    key2, entry2 = only_entry(run_dir)
    assert key2 == key and "state" not in entry2 and entry2["job_id"].split("_")[0] in arrays
    with Store(run_dir, create=False) as store:
        assert set(store.tasks().status) == {"done"}


def test_each_job_cleans_up_containers_on_its_node(env, require_slurm, tmp_path):
    from bench.api import sandbox as S

    engine = S.docker_client()
    if engine is None:
        if os.environ.get("BENCH_REQUIRE_DOCKER") == "1":
            pytest.fail("a Docker engine is required (BENCH_REQUIRE_DOCKER=1) but none answers")
        pytest.skip("no Docker engine answers")
    image = next((t for i in engine.images.list() for t in i.tags if t.startswith("scgenbench/")), None)
    if image is None:
        pytest.skip("no scgenbench image to start a stand-in container from")
    run_dir = (tmp_path / "run").resolve()
    proc = bench_cli(args(tmp_path, CONFIG, "--detach"), {**env, "SLEEPY_S": "15"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    key, entry = only_entry(run_dir)
    # after the driver's own start-up clean-up: a container of this task on this node, owned by a live
    # process (this one: no other run's start-up clean-up touches it); only the job's own clean-up
    # step removes it
    left = engine.containers.run(image, entrypoint=["sleep", "300"], detach=True, network_mode="none",
                                 labels={S.LABEL: "1", S.LABEL_RUN_DIR: str(run_dir), S.LABEL_TASK: key,
                                         S.LABEL_OWNER: S.owner_label()})  # fmt: skip
    try:
        wait_for(record_path(run_dir, key).exists, 300, "the job's record")
        names = {
            c.name
            for c in engine.containers.list(all=True, filters={"label": [f"{S.LABEL_RUN_DIR}={run_dir}"]})
        }
        assert left.name not in names
        assert f"removed container(s) {left.name} on " in Path(entry["stdout"]).read_text()
    finally:
        with contextlib.suppress(Exception):
            left.remove(force=True)


def test_a_job_task_past_the_default_memory_cap_is_recorded_with_the_reason(env, require_slurm, tmp_path):
    """No --memory-limit: the job runs its task in a child under the default cap (here about 0.6 GB,
    SCGENBENCH_MEMORY_FRACTION); a task touching 3 GB is recorded failed with the cap, and a task
    SIGKILLed (as by the out-of-memory killer) with that reason; bench exits 1. Before, the job ran
    its task in-process with no cap: the 3 GB task was done, and the killed one left no record."""
    import psutil

    fraction = 0.6 * 1024**3 / psutil.virtual_memory().available  # of the node's (this machine's)
    env = {**env, "SCGENBENCH_MEMORY_FRACTION": f"{fraction:.6f}"}
    proc = bench_cli(args(tmp_path, models="hoarder,oomkilled"), env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    with Store(tmp_path / "run", create=False) as store:
        tasks = store.tasks()
        assert set(tasks.status) == {"failed"}, out
        errors = {m: store.task_row(k)["error"] for m, k in zip(tasks.model, tasks.key, strict=True)}
    assert "out of memory (limit " in errors["hoarder"] and "GB, the default, " in errors["hoarder"], errors
    assert errors["oomkilled"].startswith("killed by SIGKILL: most likely out of memory"), errors
    assert is_limit(errors["hoarder"]) and is_transient(errors["oomkilled"])
