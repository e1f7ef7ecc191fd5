"""The sandbox of container generators (docs/docker.md, security model), the process backend's
limits, and runs that clean up after themselves (SIGTERM/SIGINT, leftovers of crashed runs).

The docker tests use a test plugin (tests/plugins/scgenbench-probe) whose tiny image is built FROM
the base image of bench.generators.container.resolve_base_image; they skip without an engine but FAIL when BENCH_REQUIRE_DOCKER=1. The Slurm test
also needs a cluster (BENCH_REQUIRE_SLURM=1)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
import scipy.sparse as sp

from bench.api import sandbox as S
from bench.api.errors import TaskFailed, UserError
from bench.api.generator import FitResult, Generator, to_library_size
from bench.generators import container as C
from tests.conftest import fit_generator, make_counts

ROOT = Path(__file__).resolve().parent.parent
PROBE_SRC = ROOT / "tests" / "plugins" / "scgenbench-probe"
GB = 1024**3
MB = 1024**2


def train_data(n_cells: int = 60, n_genes: int = 30):
    a = make_counts(n_cells, n_genes)
    a.X = sp.csr_matrix(to_library_size(a.X))
    return a


def fit(gen, train, work_dir: Path):
    return fit_generator(gen, train, work_dir=work_dir)


# -- the policy, without an engine --------------------------------------------------------------------
def test_limits_come_from_resources_slurm_or_the_run():
    res = {"cpus": 1, "gpus": 1, "mem_gb": 0.5}
    lim = S.resolve_limits(res, {}, env={})
    assert (lim.mem_bytes, lim.cpus, lim.gpus, lim.gpu_ids) == (512 * MB, 1.0, 0, ())
    assert lim.source == {"cpus": "resources", "mem": "resources"}
    # a Slurm job: its allocation
    lim = S.resolve_limits(res, {}, env={"SLURM_MEM_PER_NODE": "300", "SLURM_CPUS_PER_TASK": "1"})
    assert (lim.mem_bytes, lim.source["mem"]) == (300 * MB, "SLURM_MEM_PER_NODE")
    lim = S.resolve_limits(res, {}, env={"SLURM_MEM_PER_CPU": "100", "SLURM_CPUS_PER_TASK": "1"})
    assert lim.mem_bytes == 100 * MB
    assert S.resolve_limits(res, {}, env={"SLURM_MEM_PER_NODE": "0"}).mem_bytes == 512 * MB  # 0: whole node
    # per-run parameters win
    lim = S.resolve_limits(res, {"mem_limit": "2g", "cpu_limit": 0.5}, env={"SLURM_MEM_PER_NODE": "300"})
    assert (lim.mem_bytes, lim.cpus, lim.source["mem"]) == (2 * GB, 0.5, "mem_limit")
    # never more CPUs than this process may use (docker refuses more than the host has)
    assert S.resolve_limits({"cpus": 10_000}, {}, env={}).cpus == S.available_cpus()
    # per-profile resource tables: the largest value of each
    assert S.resolve_limits({"quick": {"mem_gb": 1}, "paper": {"mem_gb": 4}}, env={}).mem_bytes == 4 * GB
    with pytest.raises(UserError, match="cannot read memory limit"):
        S.resolve_limits(res, {"mem_limit": "lots"}, env={})


def test_gpus_only_as_allocated():
    res = {"gpus": 1}
    assert S.resolve_limits(res, device="cpu", env={"CUDA_VISIBLE_DEVICES": "0"}).gpu_ids == ()
    slurm = S.resolve_limits(res, device="cuda", env={"SLURM_JOB_GPUS": "2,3", "CUDA_VISIBLE_DEVICES": "0,1"})
    assert slurm.gpu_ids == ("2", "3")  # Slurm's physical ids: what the docker daemon sees
    assert S.resolve_limits(res, device="cuda", env={"CUDA_VISIBLE_DEVICES": "GPU-ab12"}).gpu_ids == (
        "GPU-ab12",
    )
    alone = S.resolve_limits({"gpus": 0}, device="cuda", env={})
    assert (alone.gpus, alone.gpu_ids) == (1, ())  # default one GPU
    work = Path("/nonexistent-work")
    for lim in (slurm, alone):
        opts = S.docker_options(S.Sandbox(), lim, work, user=(1, 1), labels={})
        (req,) = opts["device_requests"]
        assert req["Count"] != -1 and (req["DeviceIDs"] == ["2", "3"] or req["Count"] == 1)


def test_docker_options_are_the_hardened_defaults(tmp_path):
    (tmp_path / "train.h5ad").write_text("x")
    lim = S.Limits(mem_bytes=256 * MB, cpus=1.5)
    opts = S.docker_options(S.Sandbox(), lim, tmp_path, inputs=("train.h5ad", "model"), user=(10001, 10001),
                            labels={"a": "b"})  # fmt: skip
    assert opts["network_mode"] == "none" and opts["cap_drop"] == ["ALL"]
    assert opts["security_opt"] == ["no-new-privileges"] and opts["read_only"] is True
    assert opts["tmpfs"] == {"/tmp": "rw,nosuid,nodev,size=1024m,mode=1777"} and opts["pids_limit"] == 2048
    assert opts["mem_limit"] == opts["memswap_limit"] == 256 * MB and opts["nano_cpus"] == 1_500_000_000
    assert opts["user"] == "10001:10001" and "device_requests" not in opts and "cap_add" not in opts
    mounts = {m["Target"]: (m["Source"], m["ReadOnly"]) for m in opts["mounts"]}
    assert mounts == {"/work": (str(tmp_path.resolve()), False),  # the work dir only; 'model' does not exist
                      "/work/train.h5ad": (str(tmp_path.resolve() / "train.h5ad"), True)}  # fmt: skip
    line = S.command_line("img", ["fit", "/work"], opts)
    assert (
        "--network none" in line
        and "--read-only" in line
        and f"{tmp_path.resolve()}/train.h5ad:/work/train.h5ad:ro" in line
    )


def test_relaxations_are_declared_and_listed(capsys):
    from bench import registry
    from bench.cli import main

    class Networked(C.ContainerGenerator):
        name: ClassVar[str] = "test_networked_model"
        sandbox: ClassVar[dict] = {"network": "bridge", "cap_add": ["net_bind_service"]}

    assert Networked.sandbox_policy().relaxations() == ["network=bridge", "cap_add=NET_BIND_SERVICE"]
    opts = S.docker_options(Networked.sandbox_policy(), S.Limits(MB, 1), Path("/x"), user=(1, 1), labels={})
    assert opts["network_mode"] == "bridge" and opts["cap_add"] == ["NET_BIND_SERVICE"]
    registry.register("generators", Networked.name, Networked)
    try:
        assert main(["list", "generators"]) == 0
    finally:
        del registry._EXTRA["generators"][Networked.name]
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "test_networked_model" in line)
    assert "network=bridge" in row
    assert "default" in next(line for line in out.splitlines() if line.startswith("│ scgan "))
    assert "in-process" in next(line for line in out.splitlines() if line.startswith("│ nb "))
    with pytest.raises(UserError, match="unknown sandbox field"):

        class Bad(C.ContainerGenerator):  # noqa: F841 - defining it is the test
            name: ClassVar[str] = "bad"
            sandbox: ClassVar[dict] = {"privileged": True}


@pytest.mark.parametrize(
    "relax",
    [
        {"network": "host"},
        {"cap_add": ["ALL"]},
        {"cap_add": ["SYS_ADMIN"]},
        {"pids_limit": -1},
        {"pids_limit": 10**9},
        {"tmp_mb": 0},
        {"no_new_privileges": "no"},
    ],  # fmt: skip
)
def test_relaxations_are_bounded(relax):
    """Issue 32, item 3b: network=host, cap_add=ALL, pids_limit=-1 ... were accepted; a plugin that
    declares one now fails at import with the bound it broke."""
    field = next(iter(relax))
    with pytest.raises(UserError, match=f"sandbox {field}=.*outside what the harness allows"):

        class Unbounded(C.ContainerGenerator):  # noqa: F841 - defining it is the test
            name: ClassVar[str] = "unbounded"
            sandbox: ClassVar[dict] = relax


def test_a_relaxed_sandbox_needs_the_runs_opt_in_and_is_recorded(tmp_path, capsys):
    """Issue 32, item 3b: a model declaring relaxations does not run without the user's opt-in for
    it (exit 2, one line naming the relaxations and the flag); with it, the dry run shows them and
    the resolved run (what provenance stores) records them."""
    from bench import registry
    from bench.cli import main
    from bench.config import RunSpec
    from bench.planning import plan

    class Networked(C.ContainerGenerator):
        name: ClassVar[str] = "test_relaxed_model"
        image: ClassVar[str] = "scgenbench/none:never-built"
        sandbox: ClassVar[dict] = {"network": "bridge", "cap_add": ["sys_ptrace"]}

    data = tmp_path / "d.h5ad"
    make_counts(n_cells=90, n_genes=40).write_h5ad(data)
    args = ["run", "--models", Networked.name, "--dataset", str(data), "--label-key", "cell_type",
            "--metrics", "mean_corr", "--experiments", "main", "--no-control", "--out", str(tmp_path / "run"),
            "--dry-run"]  # fmt: skip
    registry.register("generators", Networked.name, Networked)
    try:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "test_relaxed_model: network=bridge, cap_add=SYS_PTRACE" in err
        assert "--allow-relaxed-sandbox test_relaxed_model" in err and "Traceback" not in err
        assert main([*args, "--allow-relaxed-sandbox", Networked.name]) == 0
        assert "sandbox relaxed: network=bridge, cap_add=SYS_PTRACE" in capsys.readouterr().out
        spec = RunSpec(models=[Networked.name], datasets=[str(data)], label_key="cell_type", control=False,
                       metrics=["mean_corr"], experiments=["main"], allow_relaxed_sandbox=[Networked.name])  # fmt: skip
        resolved = plan(spec, write=False).resolved.to_dict()
        assert resolved["models"][Networked.name]["sandbox"] == ["network=bridge", "cap_add=SYS_PTRACE"]
    finally:
        del registry._EXTRA["generators"][Networked.name]


def test_original_image_must_be_pinned_by_digest():
    from bench.generators.scgan import original as O

    digest = "ghcr.io/imsb-uke/scgan@sha256:" + "a" * 64
    assert O.pinned_image(digest) == digest
    with pytest.raises(UserError, match="not referenced by digest"):
        O.pinned_image("ghcr.io/imsb-uke/scgan:latest")
    with pytest.raises(UserError, match="digest"):
        O.pinned_image(None)


def test_interruptible_raises_once_and_restores_handlers():
    from bench.interrupt import Interrupted, interruptible

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as err, interruptible():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
    assert err.value.signame == "SIGTERM" and err.value.exit_code == 143
    assert isinstance(err.value, KeyboardInterrupt)  # no `except Exception` swallows it
    assert signal.getsignal(signal.SIGTERM) is before


class _ClaimsASandbox(Generator):
    """An in-process model that says it is sandboxed (issue 32, finding 3f)."""

    name: ClassVar[str] = "test_claims_a_sandbox"

    @classmethod
    def metadata(cls):
        return {**super().metadata(), "sandbox": "default"}

    def fit(self, train, *args, **kwargs):
        return FitResult(train_seconds=0.0)

    def generate(self, n_cells, *, seed):
        raise AssertionError("not reached")


class _OwnFit(C.ContainerGenerator):
    """A container model whose fit runs in the harness's process, not through the container runner."""

    name: ClassVar[str] = "test_own_fit"

    def fit(self, train, ctx):
        return FitResult(train_seconds=0.0)


def test_the_sandbox_column_is_what_the_harness_enforces_not_what_a_plugin_says(capsys):
    from bench import registry
    from bench.cli import main

    assert C.enforced_sandbox(_ClaimsASandbox) == "in-process"
    assert C.enforced_sandbox(_OwnFit) == "in-process (own fit/generate)"
    for cls in (_ClaimsASandbox, _OwnFit):
        registry.register("generators", cls.name, cls)
    try:
        assert main(["list", "generators"]) == 0
    finally:
        for cls in (_ClaimsASandbox, _OwnFit):
            del registry._EXTRA["generators"][cls.name]
    out = capsys.readouterr().out
    assert "in-process" in next(line for line in out.splitlines() if "test_claims_a_sandbox" in line)
    assert "default" not in next(line for line in out.splitlines() if "test_claims_a_sandbox" in line)
    assert "in-process" in next(line for line in out.splitlines() if "test_own_fit" in line)
    assert C.enforced_sandbox(registry.get_generator("scgan")) == "default"


# -- the local executor on SIGTERM, with an in-process model (no engine needed) -------------------------
class _SelfSignalling(Generator):
    """An in-process model whose fit sends ``signum`` to its own process (as `kill` or Ctrl-C would);
    with --in-process that process is bench (a task's child process: tests/test_task_limits.py)."""

    name: ClassVar[str] = "test_self_signalling"
    parameters: ClassVar[dict] = {"signum": int(signal.SIGTERM)}

    def fit(self, train, *args, **kwargs):
        os.kill(os.getpid(), int(self.params["signum"]))
        time.sleep(10)
        return FitResult(train_seconds=0.0)

    def generate(self, n_cells, *, seed):
        raise AssertionError("not reached")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_marks_the_running_task_failed(tmp_path, capsys, signum):
    from bench import registry
    from bench.cli import main
    from bench.store import Store

    make_counts(n_cells=90, n_genes=40).write_h5ad(tmp_path / "d.h5ad")
    (tmp_path / "run.toml").write_text(f"[models.{_SelfSignalling.name}]\nsignum = {int(signum)}\n")
    registry.register("generators", _SelfSignalling.name, _SelfSignalling)
    try:
        code = main(["run", "--config", str(tmp_path / "run.toml"), "--models", _SelfSignalling.name,
                     "--dataset", str(tmp_path / "d.h5ad"), "--label-key", "cell_type", "--metrics", "mean_corr",
                     "--experiments", "main", "--no-control", "--out", str(tmp_path / "run"), "--in-process"])  # fmt: skip
    finally:
        del registry._EXTRA["generators"][_SelfSignalling.name]
    assert code == 128 + signum
    name = signal.Signals(signum).name
    assert f"interrupted by {name}; task " in capsys.readouterr().err
    with Store(tmp_path / "run", create=False) as store:
        (row,) = store.tasks().itertuples()
        assert row.status == "failed"
        assert store.task_row(row.key)["error"].startswith(f"interrupted by {name}: the task was stopped")


# -- process backend: the limits the OS offers -----------------------------------------------------------
def process_generator(tmp_path: Path, script: str, **params):
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "entry.py").write_text(textwrap.dedent(script))

    class Local(C.ContainerGenerator):
        name: ClassVar[str] = "local_probe"
        build_context: ClassVar[Path] = ctx
        parameters: ClassVar[dict] = {**C.ContainerGenerator.parameters, "backend": "process"}
        resources: ClassVar[dict] = {"cpus": 1, "mem_gb": 0.5}

    return Local(**params)


REPORT = """
import json, os, resource, sys
from pathlib import Path
work = Path(sys.argv[2])
(work / "model").mkdir(exist_ok=True)
(work / "fit.json").write_text(json.dumps({
    "train_seconds": 0.0, "env": dict(os.environ), "cpus": len(os.sched_getaffinity(0)),
    "rlimit_data": resource.getrlimit(resource.RLIMIT_DATA)[0], "pgid_is_own": os.getpgid(0) == os.getpid()}))
"""


def test_process_backend_clean_environment_and_limits(tmp_path, monkeypatch):
    monkeypatch.setenv("SCGENBENCH_TEST_SECRET", "hunter2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    gen = process_generator(tmp_path, REPORT, mem_limit="300m")
    extra = fit(gen, train_data(), tmp_path / "work").extra
    env = extra["env"]
    assert "SCGENBENCH_TEST_SECRET" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert set(env) <= {*C.PROCESS_ENV_KEEP, "HOME", "TMPDIR", "PYTHONUNBUFFERED", "PYTHONNOUSERSITE",
                        "CUDA_VISIBLE_DEVICES", "LC_CTYPE"}  # fmt: skip
    assert env["HOME"] != os.environ.get("HOME") and not Path(env["HOME"]).exists()  # private, removed after
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["PATH"] == os.environ["PATH"]
    assert extra["rlimit_data"] == 300 * MB and extra["cpus"] == 1 and extra["pgid_is_own"]


def test_process_backend_stops_on_a_signal_to_another_thread(tmp_path):
    import psutil

    from bench.interrupt import Interrupted, interruptible

    gen = process_generator(tmp_path, "import time\nprint('sleeping', flush=True)\ntime.sleep(120)\n")
    work = tmp_path / "work"
    signal_from_another_thread(work / "container.log")
    start = time.monotonic()
    with pytest.raises(Interrupted), interruptible():
        fit(gen, train_data(), work)
    assert time.monotonic() - start < 60
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(work) in " ".join(p.info["cmdline"] or [])]
    assert "interrupted by SIGTERM: process stopped" in (work / "container.log").read_text()


def test_process_backend_out_of_memory_is_reported(tmp_path):
    gen = process_generator(tmp_path, """
        print("allocating 400 MB", flush=True)
        blocks = [b"x" * (1 << 20) for _ in range(400)]
        """, mem_limit="200m")  # fmt: skip
    with pytest.raises(
        TaskFailed, match=r"ran out of memory: allocation failed at its memory limit \(200m, from mem_limit\)"
    ) as err:
        fit(gen, train_data(), tmp_path / "work")
    assert "allocating 400 MB" in err.value.log_tail and "MemoryError" in err.value.log_tail
    gen = process_generator(
        tmp_path, "import os, signal\nprint('bye', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n"
    )
    with pytest.raises(TaskFailed, match="killed by SIGKILL: out of memory") as err:
        fit(gen, train_data(), tmp_path / "work")
    assert "bye" in err.value.log_tail


# -- docker: the probe plugin --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine():
    client = C.docker_client()
    if client is None:
        if os.environ.get("BENCH_REQUIRE_DOCKER") == "1":
            pytest.fail("a Docker engine is required (BENCH_REQUIRE_DOCKER=1) but none answers")
        pytest.skip("no Docker engine answers")
    return client


@pytest.fixture(scope="module")
def probe(engine, tmp_path_factory):
    """The probe plugin installed as a user's plugin would be (entry points; PYTHONPATH for
    subprocesses and Slurm jobs), its image built (cached by its hash) and its classes."""
    target = tmp_path_factory.mktemp("probe-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(PROBE_SRC)], check=True)  # fmt: skip
    sys.path.insert(0, str(target))
    try:
        import scgenbench_probe
    finally:
        sys.path.remove(str(target))
    image = C.ensure_image(scgenbench_probe.Probe, engine, progress=False)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(target), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return {"module": scgenbench_probe, "image": image, "env": env}


def labelled(engine, **labels) -> list:
    filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
    return engine.containers.list(all=True, filters=filters)


def signal_from_another_thread(log: Path, timeout: float = 120):
    """Once ``log`` says 'sleeping', send SIGTERM to a thread other than the main one (as the kernel
    does when the main thread has another signal pending, e.g. Slurm's SIGCONT before SIGTERM)."""

    def target() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (log.exists() and "sleeping" in log.read_text()):
            time.sleep(0.2)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

    threading.Thread(target=target, daemon=True).start()


@pytest.mark.docker
def test_container_cannot_reach_network_host_or_root_fs(probe, tmp_path):
    from bench import registry
    from bench.tasks import DataSpec, TaskSpec, execute_task

    outside = tmp_path / "outside" / "escaped.txt"
    gen = probe["module"].Probe(outside=str(outside))
    work = tmp_path / "work"
    result = fit(gen, train_data(), work)
    probes = result.extra["probes"]
    assert probes["network"].startswith("blocked: ENETUNREACH") and probes["interfaces"] == ["lo"]
    assert probes["root_fs"].startswith("blocked: EROFS")
    assert probes["parent_of_work"].startswith("blocked: EROFS")  # /work/.. is the read-only root
    assert probes["outside"].startswith("blocked: ENOENT") and not outside.parent.exists()  # not mounted
    assert probes["input"].startswith("blocked")  # train.h5ad is mounted read-only
    assert probes["chown"].startswith("blocked: EPERM")  # no capabilities
    assert probes["tmp"] == "allowed" and probes["uid"] != 0
    assert all(p.stat().st_uid == os.getuid() for p in work.rglob("*"))  # outputs stay the caller's
    assert len(gen.generate(25, seed=1)) == 25  # and the model still works

    # the task succeeds or fails as the plugin decides: one that needs the network fails cleanly
    data = tmp_path / "d.h5ad"
    make_counts(n_cells=90, n_genes=40).write_h5ad(data)
    dspec = DataSpec(str(data), "cell_type", 0, 0.2, None)
    prepared = dspec.prepare()
    registry.register("generators", "sandbox_probe", probe["module"].Probe)
    try:
        for params, status in (({}, "done"), ({"require_network": True}, "failed")):
            spec = TaskSpec(dataset="d", data=dspec, data_hash=prepared.hash, model="sandbox_probe",
                            params={**probe["module"].Probe.parameters, **params}, seed=0, experiment="main",
                            metrics={"mean_corr": {}}, profile="quick")  # fmt: skip
            rec = execute_task(spec, tmp_path / spec.key, data=prepared)
            assert rec.status == status, rec.error
            if status == "failed":
                assert "exited with code 4" in rec.error
                assert "this model needs the network: blocked: ENETUNREACH" in rec.log_tail
    finally:
        del registry._EXTRA["generators"]["sandbox_probe"]

    # a declared relaxation is applied: the networked probe has an interface besides lo
    gen = probe["module"].NetworkedProbe()
    work = tmp_path / "networked"
    assert fit(gen, train_data(), work).extra["probes"]["interfaces"] != ["lo"]


@pytest.mark.docker
def test_memory_limit_is_enforced(probe, engine, tmp_path):
    Probe = probe["module"].Probe  # resources: 0.25 GB
    gen = Probe(allocate_mb=400)
    work = tmp_path / "a"
    with pytest.raises(
        TaskFailed, match=r"out of memory: killed at its memory limit \(256m, from resources\)"
    ) as err:
        fit(gen, train_data(), work)
    assert "allocating 400 MB" in err.value.log_tail and "allocated" not in err.value.log_tail
    gen = Probe(allocate_mb=100, mem_limit="64m")  # overridden per run
    work = tmp_path / "b"
    with pytest.raises(TaskFailed, match=r"\(64m, from mem_limit\)"):
        fit(gen, train_data(), work)
    gen = Probe(allocate_mb=100)  # within the declared limit
    work = tmp_path / "c"
    fit(gen, train_data(), work)
    assert "allocated 100 MB" in (work / "container.log").read_text()
    assert not engine.containers.list(all=True, filters={"ancestor": probe["image"]})


@pytest.mark.docker
def test_container_stops_on_a_signal_to_another_thread(probe, engine, tmp_path):
    from bench.interrupt import Interrupted, interruptible

    work = tmp_path / "work"
    signal_from_another_thread(work / "container.log")
    start = time.monotonic()
    with pytest.raises(Interrupted), interruptible():
        fit(probe["module"].Probe(sleep_s=300), train_data(), work)
    assert time.monotonic() - start < 120
    assert labelled(engine, **{S.LABEL_OWNER: S.owner_label()}) == []
    assert "interrupted by SIGTERM: container stopped and removed" in (work / "container.log").read_text()


def _bench_run(probe, tmp_path: Path, *extra: str, toml: str = "") -> tuple[subprocess.Popen, Path]:
    data = tmp_path / "d.h5ad"
    make_counts(n_cells=90, n_genes=40).write_h5ad(data)
    (tmp_path / "run.toml").write_text("[models.sandbox_probe]\nsleep_s = 300\n" + toml)
    out = (tmp_path / "run").resolve()
    cmd = [sys.executable, "-m", "bench.cli", "run", "--config", str(tmp_path / "run.toml"), "--models",
           "sandbox_probe", "--dataset", str(data), "--label-key", "cell_type", "--metrics", "mean_corr",
           "--experiments", "main", "--no-control", "--out", str(out), "--allow-relaxed-sandbox",
           "sandbox_probe", *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, env=probe["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)  # fmt: skip
    return proc, out


def _wait_running(engine, proc, out: Path, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [c for c in labelled(engine, **{S.LABEL_RUN_DIR: out}) if c.status == "running"]
        if running and "sleeping" in running[0].logs().decode():
            return running[0]
        if proc.poll() is not None:
            pytest.fail(f"bench run ended early ({proc.returncode}): {proc.communicate()[1][-3000:]}")
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"no running container labelled {out} after {timeout}s")


@pytest.mark.docker
def test_sigterm_removes_the_container_and_fails_the_task(probe, engine, tmp_path):
    from bench.store import Store

    proc, out = _bench_run(probe, tmp_path)
    try:
        container = _wait_running(engine, proc, out)
        # the hardened defaults, as the engine sees them
        host, config = container.attrs["HostConfig"], container.attrs["Config"]
        assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"]
        assert host["SecurityOpt"] == ["no-new-privileges"] and host["PidsLimit"] == 2048
        assert host["Memory"] == host["MemorySwap"] == 256 * MB and host["NanoCpus"] == 10**9  # resources
        assert "/tmp" in host["Tmpfs"] and not host.get("DeviceRequests")
        assert config["User"] == ("10001:10001" if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}")
        mounts = {m["Destination"]: m["RW"] for m in container.attrs["Mounts"]}
        assert mounts == {"/work": True, "/work/train.h5ad": False, "/work/spec.json": False}
        labels = config["Labels"]
        assert (
            labels[S.LABEL_RUN_DIR] == str(out)
            and labels[S.LABEL_RUN_ID] == "1"
            and len(labels[S.LABEL_TASK]) == 20
        )

        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # a failed assertion above: leave no driver or container behind
            proc.kill()
            for c in labelled(engine, **{S.LABEL_RUN_DIR: out}):
                c.remove(force=True)
    assert proc.returncode == 143, err[-3000:]
    assert "interrupted by SIGTERM" in err
    assert labelled(engine, **{S.LABEL_RUN_DIR: out}) == []  # docker ps -a --filter label=... is empty
    with Store(out, create=False) as store:
        row = store.task_row(labels[S.LABEL_TASK])
    assert row["status"] == "failed" and row["error"].startswith("interrupted by SIGTERM")
    assert "sleeping 300 s" in row["log_tail"] and "container stopped and removed" in row["log_tail"]


@pytest.mark.docker
def test_sigterm_with_a_task_limit_stops_the_child_and_removes_the_container(probe, engine, tmp_path):
    """With --timeout the task runs in a child process (bench.executors.isolated): SIGTERM to bench
    still removes the container and records the task as interrupted (issue 32, finding 4)."""
    from bench.store import Store

    proc, out = _bench_run(probe, tmp_path, "--timeout", "600")
    try:
        container = _wait_running(engine, proc, out)
        task = container.attrs["Config"]["Labels"][S.LABEL_TASK]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            for c in labelled(engine, **{S.LABEL_RUN_DIR: out}):
                c.remove(force=True)
    assert proc.returncode == 143, err[-3000:]
    assert labelled(engine, **{S.LABEL_RUN_DIR: out}) == []
    with Store(out, create=False) as store:
        row = store.task_row(task)
    assert row["status"] == "failed" and row["error"].startswith("interrupted by SIGTERM"), row["error"]


@pytest.mark.docker
def test_bench_run_removes_leftovers_of_crashed_runs(probe, engine, tmp_path, capsys):
    from bench.cli import main

    out = (tmp_path / "run").resolve()
    dead = subprocess.Popen(["true"])
    dead.wait()
    common = {"image": probe["image"], "entrypoint": ["sleep", "300"], "detach": True, "network_mode": "none"}
    crashed = engine.containers.run(**common, labels={S.LABEL_RUN_DIR: str(out), S.LABEL_TASK: "k",
                                                      S.LABEL_OWNER: f"{socket.gethostname()}:{dead.pid}:1"})  # fmt: skip
    live = engine.containers.run(**common, labels={S.LABEL_RUN_DIR: str(out), S.LABEL_OWNER: S.owner_label()})
    other = engine.containers.run(**common, labels={S.LABEL_RUN_DIR: str((tmp_path / "elsewhere").resolve()),
                                                    S.LABEL_OWNER: f"{socket.gethostname()}:{dead.pid}:1"})  # fmt: skip
    try:
        make_counts(n_cells=90, n_genes=40).write_h5ad(tmp_path / "d.h5ad")
        assert main(["run", "--models", "nb", "--dataset", str(tmp_path / "d.h5ad"), "--label-key", "cell_type",
                     "--metrics", "mean_corr", "--experiments", "main", "--no-control", "--out", str(out)]) == 0  # fmt: skip
        printed = capsys.readouterr().out
        assert f"removed 1 leftover container(s) of an earlier run of {out}: {crashed.name}" in printed
        names = {c.name for c in labelled(engine, **{S.LABEL_RUN_DIR: out})}
        assert names == {live.name}  # a live owner's container stays
        # issue 32, finding 3e: a dead run's container of another run dir goes at the next start of any run
        assert f"of an earlier run of {(tmp_path / 'elsewhere').resolve()}: {other.name}" in printed
        assert not labelled(engine, **{S.LABEL_RUN_DIR: (tmp_path / "elsewhere").resolve()})
    finally:
        for c in (crashed, live, other):
            with contextlib.suppress(Exception):
                c.remove(force=True)


@pytest.mark.docker
@pytest.mark.slurm
def test_scancel_in_slurm_removes_the_container_and_fails_the_task(probe, engine, tmp_path, require_slurm):
    from bench.executors.slurm.ledger import load_ledger
    from bench.store import Store

    proc, out = _bench_run(probe, tmp_path, "--executor", "slurm",
                           toml="[executor]\npoll_s = 1\nrecord_grace_s = 20\n")  # fmt: skip
    try:
        container = _wait_running(engine, proc, out)
        host = container.attrs["HostConfig"]
        # inside the job: the limits of the Slurm allocation (the probe's resources: 1 CPU, 256 MB)
        assert (host["Memory"], host["NanoCpus"]) == (256 * MB, 10**9)
        deadline = time.monotonic() + 30
        while not (entries := load_ledger(out)["tasks"]) and time.monotonic() < deadline:
            time.sleep(0.2)  # the driver writes the ledger right after sbatch answers
        (entry,) = entries.values()
        subprocess.run(["scancel", entry["job_id"]], check=True)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:  # a failed assertion above: leave no job, driver or container behind
            for e in load_ledger(out)["tasks"].values():
                subprocess.run(["scancel", e["job_id"]], check=False)
            proc.kill()
            for c in labelled(engine, **{S.LABEL_RUN_DIR: out}):
                c.remove(force=True)
    assert proc.returncode == 1, err[-3000:]  # one task failed
    assert labelled(engine, **{S.LABEL_RUN_DIR: out}) == []
    with Store(out, create=False) as store:
        (row,) = store.tasks().itertuples()
        error = store.task_row(row.key)["error"]
    assert row.status == "failed" and error.startswith("interrupted by SIGTERM (Slurm: scancel"), error


@pytest.mark.parametrize("rel", ["/etc/passwd", "../outside.txt", "a/../../outside.txt", ""])
def test_a_declared_input_outside_the_work_dir_is_refused(tmp_path, rel):
    """Issue 32, finding 3a: an absolute path (or one with '..') in command_inputs was bind-mounted,
    so a container could read any host file; only paths inside the work dir are mounted."""
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "outside.txt").write_text("host secret")
    with pytest.raises(TaskFailed, match="not a path inside the work dir"):
        S.docker_options(S.Sandbox(), S.Limits(MB, 1), work, inputs=(rel,), user=(1, 1), labels={})


def test_a_declared_input_may_not_escape_through_a_symlink(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "outside.txt").write_text("host secret")
    (work / "train.h5ad").symlink_to(tmp_path / "outside.txt")
    with pytest.raises(TaskFailed, match="resolves outside the work dir"):
        S.docker_options(S.Sandbox(), S.Limits(MB, 1), work, inputs=("train.h5ad",), user=(1, 1), labels={})
    (work / "spec.json").write_text("{}")
    opts = S.docker_options(S.Sandbox(), S.Limits(MB, 1), work, inputs=("spec.json",), user=(1, 1), labels={})
    assert [m["Target"] for m in opts["mounts"]] == ["/work", "/work/spec.json"]


def _h5ad(path: Path) -> Path:
    import anndata as ad
    import numpy as np

    ad.AnnData(np.ones((3, 2), dtype=np.float32)).write_h5ad(path)
    return path


@pytest.mark.parametrize("kind", ["external_link", "soft_link", "external_storage"])
def test_a_container_h5ad_that_would_read_host_files_is_refused(tmp_path, kind):
    """Issue 32, finding 3c: an h5ad with HDF5 external storage made read_h5ad read a host file.
    What a container wrote is read only as a self-contained HDF5 file."""
    import h5py
    import numpy as np

    secret = tmp_path / "host-secret.bin"
    secret.write_bytes(np.arange(6, dtype=np.float32).tobytes())
    out = _h5ad(tmp_path / "generated.h5ad")
    with h5py.File(out, "a") as f:
        if kind == "external_link":
            f["obsm_x"] = h5py.ExternalLink(str(_h5ad(tmp_path / "other.h5ad")), "/X")
        elif kind == "soft_link":
            f["alias"] = h5py.SoftLink("/X")
        else:
            del f["X"]
            f.create_dataset("X", shape=(3, 2), dtype="f4", external=[(str(secret), 0, 24)])
    with pytest.raises(TaskFailed, match="generated.h5ad refused"):
        S.read_container_h5ad(out)
    assert S.read_container_h5ad(_h5ad(tmp_path / "plain.h5ad")).shape == (3, 2)


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a/b.h5ad", "", None, ".hidden/x"])
def test_snapshot_index_names_must_be_plain_file_names(tmp_path, name):
    with pytest.raises(TaskFailed, match="only a plain file name is read"):
        S.container_file(tmp_path, name)
    assert S.container_file(tmp_path, "snap-00010.h5ad") == tmp_path / "snap-00010.h5ad"


@pytest.mark.docker
def test_bench_clean_removes_dead_runs_containers_and_keeps_live_ones(probe, engine, tmp_path, capsys):
    from bench.cli import main

    dead = subprocess.Popen(["true"])
    dead.wait()
    common = {"image": probe["image"], "entrypoint": ["sleep", "300"], "detach": True, "network_mode": "none"}
    run_dir = str((tmp_path / "run").resolve())
    crashed = engine.containers.run(**common, labels={S.LABEL_RUN_DIR: run_dir,
                                                      S.LABEL_OWNER: f"{socket.gethostname()}:{dead.pid}:1"})  # fmt: skip
    live = engine.containers.run(**common, labels={S.LABEL_RUN_DIR: run_dir, S.LABEL_OWNER: S.owner_label()})
    try:
        assert main(["clean"]) == 0
        assert f"removed 1 leftover container(s) of {run_dir}: {crashed.name}" in capsys.readouterr().out
        assert {c.name for c in labelled(engine, **{S.LABEL_RUN_DIR: run_dir})} == {live.name}
        assert main(["clean", run_dir]) == 0
        assert "no leftover containers" in capsys.readouterr().out
    finally:
        for c in (crashed, live):
            with contextlib.suppress(Exception):
                c.remove(force=True)
