"""Slurm executor without a cluster: resources -> sbatch options, job arrays by resource signature,
merging record files, jobs that end without a record, and the status table."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from bench import registry
from bench.api.errors import UserError
from bench.api.generator import Generator
from bench.executors.slurm import SlurmExecutor
from bench.executors.slurm.ledger import load_ledger, record_path, refresh, save_ledger
from bench.executors.slurm.queue import parse_squeue
from bench.executors.slurm.resources import (
    PartitionLimits,
    fit_to_partition,
    generator_resources,
    group_by_resources,
    parse_sinfo,
    sbatch_parameters,
    task_resources,
)
from bench.runner import store_outcomes
from bench.status import collect_status, show_status
from bench.store import Store
from bench.tasks import DataSpec, TaskRecord, TaskSpec


def make_spec(model="nb", seed=0, experiment="main", device="auto", profile="quick") -> TaskSpec:
    return TaskSpec(dataset="tiny", data=DataSpec("tiny.h5ad", "cell_type", 0, 0.1, None), data_hash="h0",
                    model=model, params={}, seed=seed, experiment=experiment, metrics={"mmd": {}},
                    profile=profile, device=device)  # fmt: skip


class _PerProfile(Generator):
    name = "perprofile_test"
    resources = {"quick": {"cpus": 2, "mem_gb": 3, "time_min": 15}, "paper": {"cpus": 16, "gpus": 2}}

    def fit(self, train, *, label_key, seed, device="cpu", progress=False):  # pragma: no cover
        raise NotImplementedError

    def generate(self, n_cells, *, seed):  # pragma: no cover
        raise NotImplementedError


# -- resources and sbatch options ----------------------------------------------------------------


def test_task_resources_layers_and_device():
    base = {"cpus": 8, "gpus": 1, "mem_gb": 32, "time_min": 720}
    assert task_resources(base, device="auto") == {"cpus": 8, "gpus": 1, "mem_gb": 32.0, "time_min": 720}
    # --device cpu never asks for a GPU; --device cuda always asks for one
    assert task_resources(base, device="cpu")["gpus"] == 0
    assert task_resources({**base, "gpus": 0}, device="cuda")["gpus"] == 1
    # global overrides, then per-model overrides; None means "not given"
    res = task_resources(base, device="auto", overrides={"cpus": 4, "mem_gb": None, "time_min": 30},
                         model_overrides={"time_min": 90, "gpus": 2})  # fmt: skip
    assert res == {"cpus": 4, "gpus": 2, "mem_gb": 32.0, "time_min": 90}


def test_generator_resources_from_metadata_and_profile():
    assert generator_resources("nb", "quick") == {"cpus": 1, "gpus": 0, "mem_gb": 4, "time_min": 10}
    registry.register("generators", _PerProfile.name, _PerProfile)
    try:
        assert generator_resources(_PerProfile.name, "quick") == {
            "cpus": 2,
            "gpus": 0,
            "mem_gb": 3,
            "time_min": 15,
        }
        paper = generator_resources(_PerProfile.name, "paper")
        assert paper["cpus"] == 16 and paper["gpus"] == 2 and paper["mem_gb"] == 8  # default filled in
    finally:
        registry._EXTRA["generators"].pop(_PerProfile.name)


def test_sbatch_script_from_resources_and_overrides(tmp_path):
    """The parameters go through submitit's own sbatch writer: check the #SBATCH lines it makes."""
    from submitit.slurm.slurm import _make_sbatch_string

    res = {"cpus": 8, "gpus": 1, "mem_gb": 32.0, "time_min": 720}
    params = sbatch_parameters(res, partition="gpu", account="lab", qos="high",
                               sbatch_options={"constraint": "a100", "exclusive": True},
                               setup=["module load cuda/12", "source /opt/venv/bin/activate"],
                               job_name="scgenbench-activa", array_parallelism=16)  # fmt: skip
    script = _make_sbatch_string(command="python -m x", folder=tmp_path / "%j", map_count=40, **params)
    for line in ("--cpus-per-task=8", "--gpus-per-node=1", "--mem=32G", "--time=720", "--partition=gpu",
                 "--account=lab", "--qos=high", "--constraint=a100", "--exclusive", "--array=0-39%16",
                 "--job-name=scgenbench-activa", "--ntasks-per-node=1", "--nodes=1"):  # fmt: skip
        assert f"#SBATCH {line}\n" in script, line
    assert script.index("module load cuda/12") < script.index("python -m x")
    # no GPU line without GPUs, fractional memory in MB, no partition line when not given
    params = sbatch_parameters({"cpus": 1, "gpus": 0, "mem_gb": 1.5, "time_min": 10})
    script = _make_sbatch_string(command="true", folder=tmp_path, **params)
    assert "gpus" not in script and "#SBATCH --mem=1536M\n" in script and "--partition" not in script


def test_parse_sinfo_and_fit_to_partition():
    lim = parse_sinfo("2|24105|(null)\n")
    assert lim.cpus == 2 and lim.gpus == 0 and lim.mem_gb == pytest.approx(24105 / 1024)
    lim = parse_sinfo("64|512000|gpu:a100:4(S:0-1)\n32+|256000|gpu:2,tmpdisk:100\n")
    assert (lim.cpus, lim.gpus, lim.mem_gb) == (64, 4, 500.0)

    res = {"cpus": 8, "gpus": 1, "mem_gb": 32.0, "time_min": 720}
    small = PartitionLimits(cpus=2, mem_gb=24105 / 1024, gpus=0)
    fitted, notes = fit_to_partition(res, small, device="auto")
    assert fitted == {"cpus": 2, "gpus": 0, "mem_gb": 22.0, "time_min": 720} and len(notes) == 3
    assert fit_to_partition(res, PartitionLimits(cpus=64, mem_gb=500, gpus=4), device="auto") == (res, [])
    assert fit_to_partition(res, None, device="auto") == (res, [])
    with pytest.raises(UserError, match="no GPUs"):
        fit_to_partition(res, small, device="cuda")


def test_group_by_resources_makes_one_array_per_signature():
    a, b, c, d = make_spec("nb", 0), make_spec("activa", 0), make_spec("real", 1), make_spec("activa", 1)
    small = {"cpus": 1, "gpus": 0, "mem_gb": 4.0, "time_min": 10}
    big = {"cpus": 8, "gpus": 1, "mem_gb": 32.0, "time_min": 720}
    groups = group_by_resources([(a, small), (b, big), (c, dict(small)), (d, dict(big))])
    assert [(r, [s.key for s in specs]) for r, specs in groups] == [
        (small, [a.key, c.key]),
        (big, [b.key, d.key]),
    ]
    # a different time limit is a different array
    groups = group_by_resources([(a, small), (c, {**small, "time_min": 11})])
    assert len(groups) == 2


def test_executor_options_are_checked(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    with pytest.raises(UserError, match="sbatch"):
        SlurmExecutor(partition="debug")
    for tool in ("sbatch", "squeue"):
        (tmp_path / tool).write_text("#!/bin/sh\nexit 0\n")
        (tmp_path / tool).chmod(0o755)
    with pytest.raises(UserError, match="unknown Slurm executor option"):
        SlurmExecutor(partitoin="debug")
    with pytest.raises(UserError, match="resources.activa"):
        SlurmExecutor(resources={"activa": {"gpu": 1}})
    ex = SlurmExecutor(partition="debug", setup="module load x", sbatch_options={"constraint": "a"},
                       additional_parameters={"constraint": "b", "exclusive": True})  # fmt: skip
    assert ex.setup == ["module load x"] and ex.sbatch_options == {"constraint": "a", "exclusive": True}


def test_squeue_parsing():
    text = "12_0|RUNNING|None\n12_1|PENDING|Resources\n13|CANCELLED by 0|None\n14|COMPLETED|None\n"
    assert parse_squeue(text) == {"12_0": ("RUNNING", "None"), "12_1": ("PENDING", "Resources"),
                                  "13": ("CANCELLED", "None"), "14": ("COMPLETED", "None")}  # fmt: skip


# -- following jobs: records merged by the driver, failures with log tails ------------------------


@pytest.fixture
def submitted(tmp_path):
    """A run dir with four submitted tasks (ledger + store rows in state 'submitted')."""
    specs = [make_spec("nb", 0), make_spec("nb", 1), make_spec("real", 0), make_spec("real", 1)]
    run_dir = tmp_path / "run"
    logs = run_dir / "slurm" / "7_3"
    logs.mkdir(parents=True)
    (logs / "7_3_0_log.err").write_text("".join(f"line {i}\n" for i in range(100)) + "MemoryError: oom\n")
    (logs / "7_3_0_log.out").write_text("submitit INFO starting\n")
    ledger = {"version": 1, "tasks": {}}
    t0 = time.time() - 5
    with Store(run_dir) as store:
        run_id = store.add_run({"models": ["nb", "real"]}, {})
        for i, spec in enumerate(specs):
            store.mark_state(spec, run_id, "submitted")
            ledger["tasks"][spec.key] = {
                "label": spec.label, "job_id": f"7_{i}", "run_id": run_id, "submitted": t0,
                "stdout": str(run_dir / "slurm" / f"7_{i}" / f"7_{i}_0_log.out"),
                "stderr": str(run_dir / "slurm" / f"7_{i}" / f"7_{i}_0_log.err"), "spec": spec.to_dict(),
            }  # fmt: skip
    save_ledger(run_dir, ledger)
    return run_dir, specs


def test_refresh_merges_records_and_fails_jobs_without_one(submitted, monkeypatch):
    run_dir, specs = submitted
    ledger = load_ledger(run_dir)
    art = np.arange(6, dtype=np.float32).reshape(2, 3)
    TaskRecord(key=specs[0].key, status="done", values=[("mmd", 0.125)], artifacts={"mmd/x": art},
               started=time.time(), finished=time.time()).save(record_path(run_dir, specs[0].key))  # fmt: skip
    TaskRecord(key=specs[1].key, status="failed", error="ValueError: bad", log_tail="Traceback ...",
               finished=time.time()).save(record_path(run_dir, specs[1].key))  # fmt: skip
    states = {"7_2": ("PENDING", "Priority"), "7_3": ("OUT_OF_MEMORY", "None")}
    seen: dict[str, float] = {}
    with Store(run_dir) as store:
        out = store_outcomes(
            store, refresh(run_dir, store, ledger, grace_s=60, seen_ended=seen, states=states)
        )
        # 7_3 ended without a record, but within the grace period (record may still be on its way)
        assert out == {specs[0].key: "done", specs[1].key: "failed", specs[2].key: "submitted",
                       specs[3].key: "running"}  # fmt: skip
        assert store.done_keys() == {specs[0].key}
        assert store.values().value.tolist() == [0.125]
        np.testing.assert_array_equal(store.artifact(specs[0].key, "mmd/x"), art)
        assert store.task_row(specs[1].key)["error"] == "ValueError: bad"
        # merged files move away, so the next look does not merge them again
        assert not record_path(run_dir, specs[0].key).exists()
        assert (run_dir / "records" / "merged" / f"{specs[0].key}.npz").exists()

        seen["7_3"] -= 120  # the grace period is over
        states["7_2"] = ("RUNNING", "None")
        out = store_outcomes(
            store, refresh(run_dir, store, ledger, grace_s=60, seen_ended=seen, states=states)
        )
        assert out[specs[2].key] == "running" and out[specs[3].key] == "failed"
        assert out[specs[0].key] == "done" and out[specs[1].key] == "failed"  # from the store now
        row = store.task_row(specs[3].key)
        assert row["status"] == "failed" and "7_3 ended OUT_OF_MEMORY" in row["error"]
        assert "MemoryError: oom" in row["log_tail"] and "line 99" in row["log_tail"]
        assert "line 10\n" not in row["log_tail"]  # only the tail

        # a job that left the queue (squeue forgot it) without a record also fails, after the grace
        out = store_outcomes(store, refresh(run_dir, store, ledger, grace_s=0, states={}))
        assert out[specs[2].key] == "failed" and "left the queue" in store.task_row(specs[2].key)["error"]
        # a job that can never start (bigger than any node) is cancelled and failed, not waited for
        store.mark_state(specs[2], 1, "submitted")
        ledger["tasks"][specs[2].key]["submitted"] = time.time() + 1
        out = store_outcomes(
            store,
            refresh(run_dir, store, ledger, [specs[2].key], states={"7_2": ("PENDING", "PartitionConfig")}),
        )
        assert out == {specs[2].key: "failed"}
        assert "cannot start (PartitionConfig" in store.task_row(specs[2].key)["error"]

        # squeue unreachable: nothing is concluded about live jobs
        monkeypatch.setattr("bench.executors.slurm.ledger.squeue_states", lambda: None)
        store.mark_state(specs[2], 1, "submitted")
        ledger["tasks"][specs[2].key]["submitted"] = time.time() + 1
        assert store_outcomes(store, refresh(run_dir, store, ledger, [specs[2].key], grace_s=0)) == {
            specs[2].key: "unknown"
        }


def test_status_table_and_exit_code(submitted):
    run_dir, specs = submitted
    TaskRecord(key=specs[0].key, status="done", values=[("mmd", 0.5)], finished=time.time()).save(
        record_path(run_dir, specs[0].key)
    )
    states = {"7_1": ("RUNNING", "None"), "7_2": ("PENDING", "Resources"), "7_3": ("PENDING", "Priority")}
    rows = {r["key"]: r for r in collect_status(run_dir, states=states)}
    assert [rows[s.key]["state"] for s in specs] == ["done", "running", "submitted", "submitted"]
    assert rows[specs[1].key]["job_id"] == "7_1"

    buf = io.StringIO()
    code = show_status(run_dir, console=Console(file=buf, width=200), states=states)
    text = buf.getvalue()
    assert code == 0 and "done: 1" in text and "running: 1" in text and "submitted: 2" in text
    assert "tiny/nb/seed1/main" in text and "in progress" in text

    # 7_3 disappears without a record: failed, with its log tail, exit code 1
    del states["7_3"]
    buf = io.StringIO()
    code = show_status(run_dir, console=Console(file=buf, width=200), states=states)
    text = buf.getvalue()
    assert code == 1 and "failed: 1" in text and "MemoryError: oom" in text and "job 7_3" in text


def test_status_of_a_local_run_dir(tmp_path):
    spec = make_spec()
    with Store(tmp_path) as store:
        store.write_record(spec, TaskRecord(key=spec.key, status="done", values=[("mmd", 1.0)]), None)
    rows = collect_status(tmp_path, states={})
    assert [(r["state"], r["job_id"]) for r in rows] == [("done", "")]
    with pytest.raises(UserError, match="no scgenbench results"):
        collect_status(tmp_path / "nowhere")


def test_ledger_roundtrip_is_atomic(tmp_path):
    save_ledger(tmp_path, {"version": 1, "tasks": {"k": {"job_id": "1"}}})
    assert load_ledger(tmp_path)["tasks"]["k"]["job_id"] == "1"
    assert [p.name for p in (tmp_path / "slurm").iterdir()] == ["submitted.json"]
    assert json.loads((tmp_path / "slurm" / "submitted.json").read_text())["version"] == 1
    assert load_ledger(tmp_path / "empty") == {"version": 1, "tasks": {}}


def test_example_config_makes_a_valid_executor(monkeypatch, tmp_path):
    from pathlib import Path

    from bench.config import build_spec, load_toml
    from bench.executors import make_executor

    for tool in ("sbatch", "squeue"):
        (tmp_path / tool).write_text("#!/bin/sh\nexit 0\n")
        (tmp_path / tool).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    spec = build_spec(
        load_toml(Path(__file__).parents[1] / "examples" / "slurm.toml"), executor={"partition": "long"}
    )
    ex = make_executor(spec.executor)
    assert isinstance(ex, SlurmExecutor) and ex.partition == "long"  # the CLI flag over the TOML
    assert ex.sbatch_options == {"constraint": "a100|h100"} and len(ex.setup) == 2
    nb = task_resources(generator_resources("nb", "paper"), device="auto", overrides=ex.overrides,
                        model_overrides=ex.model_resources.get("nb"))  # fmt: skip
    assert nb == {"cpus": 1, "gpus": 0, "mem_gb": 4.0, "time_min": 30}


def test_importing_submitit_keeps_the_process_logging_handlers():
    """submitit's import-time dictConfig closed every handler the process had; absl's (imported with
    scvi-tools or TensorFlow) then closed its stream, pytest's capture file, and the CI test run
    crashed ("lost sys.stderr"). bench.executors.slurm.submit.import_submitit leaves them alone. In a fresh process:
    submitit must not be imported yet."""
    import subprocess
    import sys

    code = """
import io, logging, sys
assert "submitit" not in sys.modules
closed = []
class Handler(logging.StreamHandler):
    def close(self):
        closed.append(self)
        super().close()
stream = io.StringIO()
mine = Handler(stream)
logging.getLogger().addHandler(mine)
logging.getLogger("a.library").addHandler(Handler(io.StringIO()))
from bench.executors.slurm.submit import import_submitit
submitit = import_submitit()
assert hasattr(submitit, "SlurmExecutor")
assert not closed and not stream.closed, closed
assert mine in logging.getLogger().handlers
assert not logging.getLogger("submitit").handlers
logging.getLogger("submitit").warning("a submitit warning")
assert "a submitit warning" in stream.getvalue()
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_a_job_ended_at_its_time_limit_is_a_timeout_with_what_to_raise(submitted):
    """Issue 32, finding 6: TIMEOUT (or submitit's 'timed-out' before a record), and a record of a task
    stopped by SIGTERM whose job then ended TIMEOUT, say `timeout` and what to raise; not transient."""
    from bench.failures import is_limit, is_transient

    run_dir, specs = submitted
    ledger = load_ledger(run_dir)
    for entry in ledger["tasks"].values():
        entry["resources"] = {"time_min": 10}
    Path(ledger["tasks"][specs[1].key]["stderr"]).parent.mkdir(parents=True, exist_ok=True)
    Path(ledger["tasks"][specs[1].key]["stderr"]).write_text(
        "submitit WARNING (x) - Caught signal SIGUSR2 on vm: this job is timed-out.\n"
    )
    TaskRecord(key=specs[2].key, status="failed", finished=time.time(),
               error="interrupted by SIGTERM (Slurm: scancel, time limit or preemption): the task was stopped",
               ).save(record_path(run_dir, specs[2].key))  # fmt: skip
    states = {"7_0": ("TIMEOUT", "TimeLimit"), "7_1": ("FAILED", "NonZeroExitCode"), "7_2": ("TIMEOUT", "TimeLimit"),
              "7_3": ("CANCELLED", "None")}  # fmt: skip
    with Store(run_dir) as store:
        store_outcomes(store, refresh(run_dir, store, ledger, grace_s=0, states=states))
        errors = {s.key: store.task_row(s.key)["error"] for s in specs}
    for spec in specs[:3]:
        error = errors[spec.key]
        assert error.startswith("timeout: Slurm job 7_") and "reached its time limit (10 min)" in error
        assert "time_min" in error and is_limit(error) and not is_transient(error)
    assert "ended CANCELLED" in errors[specs[3].key] and is_transient(errors[specs[3].key])


def test_entries_saved_before_sbatch_are_found_by_name_not_submitted_again(submitted, monkeypatch):
    """Issue 32, finding 6: a driver killed between sbatch and the save of the job ids left entries in
    state 'submitting'; refresh does not fail them, and the next driver finds their jobs by the
    array's unique name (or drops them when squeue does not know the name and no record exists)."""
    from bench.executors.slurm import executor as ex

    run_dir, specs = submitted
    ledger = load_ledger(run_dir)
    for i, spec in enumerate(specs):
        entry = ledger["tasks"][spec.key]
        for k in ("job_id", "stdout", "stderr"):
            entry.pop(k)
        name = "scgenbench-nb-aaaa" if i < 2 else "scgenbench-real-bbbb"
        entry.update(state="submitting", job_name=name, array_index=i % 2, group_size=2)
    with Store(run_dir) as store:
        out = store_outcomes(store, refresh(run_dir, store, ledger, grace_s=0, states={}))
    assert set(out.values()) == {"submitted"}  # not "left the queue"
    TaskRecord(key=specs[3].key, status="done", finished=time.time()).save(record_path(run_dir, specs[3].key))
    monkeypatch.setattr("bench.executors.slurm.queue.jobs_named",
                        lambda name: ["41_0", "41_1"] if name == "scgenbench-nb-aaaa" else [])  # fmt: skip
    assert ex.reconcile_submitting(run_dir, ledger, {}) is True
    entries = ledger["tasks"]
    assert entries[specs[0].key]["job_id"] == "41_0" and entries[specs[1].key]["job_id"] == "41_1"
    assert "state" not in entries[specs[0].key]
    assert entries[specs[0].key]["stdout"].endswith("slurm/41_0/41_0_0_log.out")
    assert specs[2].key not in entries  # never submitted: submitted again
    assert entries[specs[3].key]["state"] == "recorded"  # its record is merged, not resubmitted
    monkeypatch.setattr("bench.executors.slurm.queue.jobs_named", lambda name: None)
    entries[specs[0].key]["state"] = "submitting"
    with pytest.raises(UserError, match="squeue did not answer"):
        ex.reconcile_submitting(run_dir, ledger, {})


def test_the_ledger_entry_is_saved_before_sbatch_and_dropped_when_sbatch_refuses(tmp_path, monkeypatch):
    from bench.executors.slurm import executor as ex

    monkeypatch.setattr(ex, "squeue_states", lambda: {})
    monkeypatch.setattr(ex, "partition_limits", lambda partition: None)
    monkeypatch.setattr(ex.shutil, "which", lambda name: f"/usr/bin/{name}")
    seen = {}

    def refuse(res, specs, run_dir, *args, **kwargs):
        seen.update(load_ledger(run_dir)["tasks"])
        seen["name"] = kwargs["job_name"]
        raise UserError("sbatch refused the job: no")

    monkeypatch.setattr(ex, "submit_group", refuse)
    spec = make_spec("nb", 0)
    run_dir = tmp_path / "run"
    with Store(run_dir) as store, pytest.raises(UserError, match="sbatch refused"):
        list(ex.SlurmExecutor().execute([spec], store, run_dir=run_dir, run_id=1))
    entry = seen[spec.key]  # what the ledger held while sbatch ran
    assert entry["state"] == "submitting" and entry["job_name"] == seen["name"]
    assert re.fullmatch(r"scgenbench-nb-[0-9a-f]{10}", seen["name"])
    assert entry["array_index"] == 0 and entry["group_size"] == 1 and entry["spec"]["key"] == spec.key
    assert load_ledger(run_dir)["tasks"] == {}  # refused: nothing submitted, nothing left to follow
