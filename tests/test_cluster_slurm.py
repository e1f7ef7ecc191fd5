"""Slurm executor on a real cluster (CI: scripts/ci/slurm-setup.sh makes a one-node cluster).

Skipped without a cluster; FAILS when BENCH_REQUIRE_SLURM=1. The grid runs on a small synthetic
dataset written here (--label-key), with few RF trees, so the whole module takes minutes on 2 cores.
The jobs run `sys.executable` from the same environment; the run dir is on a filesystem that the
jobs share with the driver (here: the same machine).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.executors.slurm.ledger import load_ledger
from bench.status import collect_status
from bench.store import Store
from tests.conftest import make_counts

pytestmark = [pytest.mark.slurm]

CONFIG = """\
[metrics]
select = ["auc", "mmd", "correlation_discrepancy", "mean_corr"]
[metrics.auc]
n_trees = 50
folds = 3
[executor]
poll_s = 1
record_grace_s = 3
"""
ACTIVA = """\
[models.activa]      # the quick profile with fewer, smaller steps (CI time); VAE warm-up only
epochs = 8
num_cf = 4
num_vae = 8
classifier_epochs = 5
batch_size = 32
confidence = 0.0     # keep every decoded cell: CI checks plumbing, not training quality
"""
DETERMINISTIC = {"real", "shuffled", "nb"}


def activa_works() -> bool:
    from bench.registry import available

    cls = available("generators").get("activa")
    return cls is not None and hasattr(cls, "fit")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm")
    make_counts(n_cells=300, n_genes=200, n_types=3, seed=3).write_h5ad(root / "tiny.h5ad")
    (root / "run.toml").write_text(CONFIG)
    (root / "activa.toml").write_text(CONFIG + ACTIVA)
    return root


def common_args(root: Path, models: str, seeds: str = "0,1", *, local: bool = False) -> list[str]:
    """A run of ``models`` on the tiny file; ``local``: the config without the Slurm-only
    [executor] options, which the local executor refuses (issue 32)."""
    config = root / ("activa.toml" if "activa" in models else "run.toml")
    if local:
        text = config.read_text()
        config = root / f"local-{config.name}"
        config.write_text(text.replace("[executor]\npoll_s = 1\nrecord_grace_s = 3\n", ""))
    return ["run", "--config", str(config), "--models", models, "--dataset", str(root / "tiny.h5ad"),
            "--label-key", "cell_type", "--seeds", seeds, "--experiments", "main"]  # fmt: skip


def values_by_key(run_dir: Path) -> dict[tuple[str, str], tuple[str, float]]:
    with Store(run_dir, create=False) as store:
        df = store.values()
    return {(r.task_key, r.metric): (r.model, r.value) for r in df.itertuples()}


def test_grid_on_slurm_equals_local_run(workspace, require_slurm, capsys):
    models = "nb,activa" if activa_works() else "nb"  # + the `real` and `shuffled` controls
    local, slurm = workspace / "local", workspace / "slurm-grid"
    assert main([*common_args(workspace, models, local=True), "--out", str(local)]) == 0
    capsys.readouterr()
    assert main([*common_args(workspace, models), "--out", str(slurm), "--executor", "slurm"]) == 0
    out = capsys.readouterr().out
    assert "slurm: submitted array of" in out
    # not a terminal: the driver prints one plain line per finished task (task, status, s, left, ETA)
    n_tasks = (len(models.split(",")) + 2) * 2  # with both controls, 2 seeds
    finished = re.findall(rf"^\[(\d+)/{n_tasks}\] \S+/seed\d/main: done in [\d.]+ s; (\d+) left, ETA \d+:\d\d:\d\d$",
                          out, flags=re.M)  # fmt: skip
    assert [(int(i), int(left)) for i, left in finished] == [(i, n_tasks - i) for i in range(1, n_tasks + 1)]

    a, b = values_by_key(local), values_by_key(slurm)
    assert a.keys() == b.keys() and len(a) > 0  # same task keys, same metrics
    n_models = len(models.split(",")) + 2
    assert len({k for k, _ in a}) == n_models * 2
    for key, (model, va) in a.items():
        vb = b[key][1]
        if model in DETERMINISTIC:
            assert vb == pytest.approx(va, abs=1e-6, nan_ok=True), (model, key)
        else:  # trained models: same seeds, but thread scheduling may differ in a job
            assert np.isclose(vb, va, rtol=0.1, atol=0.05, equal_nan=True), (model, key, va, vb)

    with Store(slurm, create=False) as store:
        tasks = store.tasks()
        assert set(tasks.status) == {"done"}
        ledger = load_ledger(slurm)["tasks"]
        assert set(ledger) == set(tasks.key)
        # tasks with equal resources went into one array: nb and the controls (1 CPU, 4 GB, 10 min)
        arrays = {
            e["job_id"].split("_")[0]
            for e in ledger.values()
            if e["spec"]["model"] in ("nb", "real", "shuffled")
        }
        assert len(arrays) == 1
        for entry in ledger.values():
            assert Path(entry["stdout"]).is_file()  # submitit's log of the job

    # local and Slurm results of the same spec merge: same keys, nothing added twice
    with Store(workspace / "merged") as merged:
        with Store(local, create=False) as s:
            assert merged.merge_from(s) == len({k for k, _ in a})
        with Store(slurm, create=False) as s:
            assert merged.merge_from(s) == 0

    # running again submits nothing: every task is done
    assert main([*common_args(workspace, models), "--out", str(slurm), "--executor", "slurm"]) == 0
    out = capsys.readouterr().out
    assert (
        f"{n_models * 2} reused" in out and "0 to run" in out and "submitted" not in out.split("results:")[0]
    )
    assert load_ledger(slurm)["tasks"] == ledger


PLUGIN = '''\
"""Test generators: `boom` raises in fit, `crash` kills its process (the job ends without a
result); both behave like `nb` once BENCH_TEST_FIXED=1 (the same task keys: a fixed bug)."""
import os
import sys

from bench.generators.baselines import NegativeBinomial


class Boom(NegativeBinomial):
    name = "boom"

    def fit(self, train, ctx):
        if os.environ.get("BENCH_TEST_FIXED") != "1":
            raise RuntimeError("boom from the plugin")
        return super().fit(train, ctx)


class Crash(NegativeBinomial):
    name = "crash"

    def fit(self, train, ctx):
        if os.environ.get("BENCH_TEST_FIXED") != "1":
            print("crash: dying without a result", file=sys.stderr, flush=True)
            os._exit(3)
        return super().fit(train, ctx)
'''


def bench_cli(args: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)  # fmt: skip


def test_failed_jobs_are_reported_and_only_missing_tasks_rerun(workspace, require_slurm, tmp_path):
    plugins = tmp_path / "plugins"
    (plugins / "failplug-0.1.dist-info").mkdir(parents=True)
    (plugins / "failplug.py").write_text(PLUGIN)
    (plugins / "failplug-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: failplug\nVersion: 0.1\n"
    )
    (plugins / "failplug-0.1.dist-info" / "entry_points.txt").write_text(
        "[bench.generators]\nboom = failplug:Boom\ncrash = failplug:Crash\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")])}
    env.pop("BENCH_TEST_FIXED", None)
    run_dir = tmp_path / "run"
    args = [*common_args(workspace, "nb,boom,crash", seeds="0"), "--no-control", "--executor", "slurm",
            "--out", str(run_dir)]  # fmt: skip
    proc = bench_cli(args, env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    # the task failure: one line naming the plugin's file:line and the task log that holds the
    # traceback; the crash (the task's process dies): recorded by its job, with the job's stderr tail
    boom = re.search(r"^FAILED tiny/boom/seed0/main: RuntimeError: boom from the plugin \(failplug\.py:\d+\); "
                     r"traceback in (\S+/task\.log) \[job \S+\]$", out, flags=re.M)  # fmt: skip
    assert boom, out
    assert 'failplug.py", line' in Path(boom.group(1)).read_text() and 'failplug.py", line' not in out
    assert (
        "FAILED tiny/crash/seed0/main: killed: the task's process exited with code 3 without a result" in out
    )
    assert "crash: dying without a result" in out
    assert "2 task(s) failed" in out
    with Store(run_dir, create=False) as store:
        status = dict(zip(store.tasks().model, store.tasks().status, strict=True))
        assert status == {"nb": "done", "boom": "failed", "crash": "failed"}
        crash_row = store.task_row(
            next(k for k, e in load_ledger(run_dir)["tasks"].items() if "crash" in e["label"])
        )
        assert "crash: dying without a result" in crash_row["log_tail"]
    first = {e["label"]: e["job_id"] for e in load_ledger(run_dir)["tasks"].values()}

    # `bench status` shows the same
    st = bench_cli(["status", str(run_dir)], env)
    assert st.returncode == 1 and "failed: 2" in st.stdout and "done: 1" in st.stdout, st.stdout

    # the bug fixed, the same command resubmits only the two failed tasks
    proc = bench_cli(args, {**env, "BENCH_TEST_FIXED": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "3 task(s): 1 reused" in out and "2 to run" in out
    second = {e["label"]: e["job_id"] for e in load_ledger(run_dir)["tasks"].values()}
    assert second["tiny/nb/seed0/main"] == first["tiny/nb/seed0/main"]
    for label in ("tiny/boom/seed0/main", "tiny/crash/seed0/main"):
        assert second[label] != first[label]
    with Store(run_dir, create=False) as store:
        assert set(store.tasks().status) == {"done"}
        v = store.values()
        # boom/crash are nb once fixed: with the same seed they give nb's values exactly
        piv = v.pivot_table(index="metric", columns="model", values="value")
        np.testing.assert_allclose(piv["boom"], piv["nb"], atol=1e-9)
        np.testing.assert_allclose(piv["crash"], piv["nb"], atol=1e-9)


def test_detach_then_status(workspace, require_slurm, capsys):
    run_dir = workspace / "detached"
    t0 = time.time()
    assert main([*common_args(workspace, "nb", seeds="0"), "--out", str(run_dir), "--executor", "slurm",
                 "--detach"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "follow with `bench status" in out
    ledger = json.loads((run_dir / "slurm" / "submitted.json").read_text())["tasks"]
    assert len(ledger) == 3  # nb + real + shuffled
    with Store(run_dir, create=False) as store:
        assert store.done_keys() == set()  # nothing waited for

    deadline = t0 + 600
    while True:
        rows = collect_status(run_dir)
        states = sorted(r["state"] for r in rows)
        if all(s in ("done", "failed") for s in states) or time.time() > deadline:
            break
        assert "failed" not in states, rows
        time.sleep(2)
    assert states == ["done", "done", "done"]
    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "done: 3" in out and "failed: 0" in out
    with Store(run_dir, create=False) as store:
        assert len(store.done_keys()) == 3 and len(store.values()) > 0


def test_sbatch_refusal_is_a_user_error(workspace, require_slurm, capsys):
    code = main([*common_args(workspace, "nb", seeds="0"), "--out", str(workspace / "refused"),
                 "--executor", "slurm", "--partition", "no_such_partition"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "partition 'no_such_partition' does not exist" in err, err
    # a request no node can meet, submitted unchanged: Slurm queues it (PartitionConfig), and the
    # driver cancels it and reports why instead of waiting forever
    big = workspace / "big.toml"
    big.write_text(CONFIG + "fit_partition = false\ncpus = 4096\n")
    args = [*common_args(workspace, "nb", seeds="0"), "--out", str(workspace / "refused")]
    args[args.index("--config") + 1] = str(big)
    assert main([*args, "--executor", "slurm", "--no-control"]) == 1
    out = capsys.readouterr().out
    assert "cannot start (PartitionConfig" in out and "cancelled" in out, out
    with Store(workspace / "refused", create=False) as store:
        assert set(store.tasks().status) == {"failed"}
