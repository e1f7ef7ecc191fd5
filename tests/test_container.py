"""The container backend: backend choice, the process runner, and (marked docker) the scGAN image
end to end with its failure paths. Docker tests skip without an engine but FAIL when
BENCH_REQUIRE_DOCKER=1."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path
from typing import ClassVar

import anndata as ad
import numpy as np
import pytest

from bench.api.errors import TaskFailed, UserError
from bench.api.generator import validate_output
from bench.generators import container as C
from tests.conftest import fit_generator

PBMC = Path(__file__).resolve().parents[1] / "datasets" / "data" / "pbmc3k.h5ad"
TINY = {
    "latent_dim": 8,
    "gen_layers": [16, 32],
    "critic_layers": [32, 16],
    "batch_size": 32,
    "log_every": 1,
    "xla": False,
}


@pytest.fixture
def docker_engine():
    """A docker client, or skip (FAIL when BENCH_REQUIRE_DOCKER=1)."""
    client = C.docker_client()
    if client is None:
        if os.environ.get("BENCH_REQUIRE_DOCKER") == "1":
            pytest.fail("a Docker engine is required (BENCH_REQUIRE_DOCKER=1) but none answers")
        pytest.skip("no Docker engine answers")
    return client


def small_pbmc(n_cells=300, n_genes=500, key="cell_type") -> ad.AnnData:
    """300 pbmc3k cells x the 500 most expressed genes, library-size normalised to 20,000."""
    a = ad.read_h5ad(PBMC)[:n_cells]
    X = a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X)
    top = np.argsort(-X.sum(0), kind="stable")[:n_genes]
    X = X[:, np.sort(top)].astype(np.float32)
    X = X / X.sum(1, keepdims=True) * 20_000
    out = ad.AnnData(X=X)
    out.var_names = a.var_names[np.sort(top)].astype(str)
    out.obs_names = a.obs_names.astype(str)
    out.obs[key] = a.obs[key].astype(str).to_numpy()
    return out


def fake_generator(tmp_path: Path, script: str) -> type[C.ContainerGenerator]:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "entry.py").write_text(textwrap.dedent(script))

    class Fake(C.ContainerGenerator):
        name: ClassVar[str] = "fake"
        image_name: ClassVar[str] = ""
        build_context: ClassVar[Path] = ctx
        parameters: ClassVar[dict] = {**C.ContainerGenerator.parameters, "backend": "process"}

    return Fake


# -- no engine needed ---------------------------------------------------------------------------------
def test_select_backend_errors(monkeypatch):
    with pytest.raises(UserError, match="unknown backend"):
        C.select_backend("kubernetes")
    with pytest.raises(UserError, match="pip install tensorflow-cpu"):
        C.select_backend("process", ("surely_not_a_module_xyz",))
    monkeypatch.setattr(C.images, "docker_client", lambda timeout=10: None)
    with pytest.raises(UserError) as err:
        C.select_backend("auto", ("surely_not_a_module_xyz",))
    assert "start Docker" in str(err.value) and "pip install tensorflow-cpu" in str(err.value)
    with pytest.raises(UserError, match="no Docker engine"):
        C.select_backend("docker")


def test_auto_never_falls_back_to_an_unsandboxed_process_without_the_opt_in(monkeypatch, capsys):
    """Issue 32, finding 3d: backend auto without a Docker engine used to run the entry point as a
    local process, silently; it now needs --allow-unsandboxed and says so in one line."""
    monkeypatch.setattr(C.images, "docker_client", lambda timeout=10: None)
    monkeypatch.delenv("SCGENBENCH_ALLOW_UNSANDBOXED", raising=False)
    with pytest.raises(UserError) as err:
        C.select_backend("auto", ("json",), name="scgan")
    assert "does not run scgan outside its container sandbox" in str(err.value)
    assert "--allow-unsandboxed" in err.value.fix and "start Docker" in err.value.fix
    assert capsys.readouterr().err == ""
    assert C.select_backend("process", ("json",)) == "process"  # the model's own backend: explicit
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("SCGENBENCH_ALLOW_UNSANDBOXED", "1")
    assert C.select_backend("auto", ("json",), name="scgan") == "process"
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        "warning: scgan: no Docker engine answers; running its entry point as a local process WITHOUT "
        "the container sandbox (--allow-unsandboxed)"
    )


def test_allow_unsandboxed_flag_sets_the_opt_in(monkeypatch, tmp_path):
    from bench import cli

    monkeypatch.delenv("SCGENBENCH_ALLOW_UNSANDBOXED", raising=False)
    monkeypatch.setattr("bench.runner.dry_run", lambda *a, **k: None)
    assert cli.main(["run", "--models", "nb", "--dry-run", "--out", str(tmp_path / "r")]) == 0
    assert "SCGENBENCH_ALLOW_UNSANDBOXED" not in os.environ
    try:
        assert (
            cli.main(
                ["run", "--models", "nb", "--dry-run", "--allow-unsandboxed", "--out", str(tmp_path / "r")]
            )
            == 0
        )
        assert os.environ["SCGENBENCH_ALLOW_UNSANDBOXED"] == "1"
    finally:
        os.environ.pop("SCGENBENCH_ALLOW_UNSANDBOXED", None)


def test_process_failure_has_log_tail(tmp_path):
    gen = fake_generator(
        tmp_path,
        """
        import sys
        for i in range(80):
            print("line", i)
        sys.exit(3)
        """,
    )()
    with pytest.raises(TaskFailed, match="exited with code 3") as err:
        fit_generator(gen, small_pbmc(40, 20), work_dir=tmp_path / "work")
    tail = err.value.log_tail.splitlines()
    assert len(tail) == C.LOG_TAIL_LINES and tail[-1] == "line 79" and tail[0] == "line 30"
    assert "line 0" in (tmp_path / "work" / "container.log").read_text()


def test_process_timeout_kills(tmp_path):
    gen = fake_generator(tmp_path, "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n")()
    with pytest.raises(TaskFailed, match="timed out after 2s") as err:
        fit_generator(gen, small_pbmc(40, 20), deadline=time.monotonic() + 2)
    assert "sleeping" in err.value.log_tail


def test_context_hash_tracks_build_files_and_base_image(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "entry.py").write_text("print(1)\n")
    h1 = C.context_hash(tmp_path, ("Dockerfile", "entry.py"), "sha256:aaa")
    (tmp_path / "plugin.py").write_text("x = 1\n")
    assert C.context_hash(tmp_path, ("Dockerfile", "entry.py"), "sha256:aaa") == h1
    assert C.context_hash(tmp_path, ("Dockerfile", "entry.py"), "sha256:bbb") != h1  # another base image
    (tmp_path / "entry.py").write_text("print(2)\n")
    assert C.context_hash(tmp_path, ("Dockerfile", "entry.py"), "sha256:aaa") != h1


@pytest.mark.slow
def test_process_backend_end_to_end(tmp_path):
    pytest.importorskip("tensorflow")
    from bench.generators.scgan import CscGAN

    train = small_pbmc()
    gen = CscGAN(backend="process", max_steps=3, **TINY)
    fit = fit_generator(gen, train, work_dir=tmp_path)
    assert fit.steps == 3 and fit.extra["backend"] == "process" and len(fit.history["critic_loss"]) == 3
    request = {"B": 5, "NK": 12}
    out = gen.generate(request, seed=1)
    validate_output(
        gen, out, var_names=list(train.var_names), label_key="cell_type",
        known_labels=sorted(set(train.obs["cell_type"])), requested=request,
    )  # fmt: skip
    gen.save(tmp_path / "saved")
    again = CscGAN.load(tmp_path / "saved")
    np.testing.assert_array_equal(again.generate(request, seed=1).X.toarray(), out.X.toarray())


# -- docker --------------------------------------------------------------------------------------
def _leftovers(client, image: str) -> int:
    return len(client.containers.list(all=True, filters={"ancestor": image}))


@pytest.mark.docker
def test_image_build_and_end_to_end(docker_engine, tmp_path):
    from bench.generators.scgan import ScGAN

    tag = C.ensure_image(ScGAN, docker_engine, progress=False)  # built here when missing (CI builds it)
    base_id = docker_engine.images.get(C.default_base_image()).id
    assert tag == ScGAN.image_tag(base_id) and tag.startswith("scgenbench/scgan:")
    image = docker_engine.images.get(tag)
    assert image.labels["org.scgenbench.base_image_id"] == base_id
    assert image.attrs["Config"]["User"] == "10001:10001"  # a non-root user in the image
    before = _leftovers(docker_engine, tag)
    train = small_pbmc()
    gen = ScGAN(backend="docker", max_steps=4, **TINY)
    fit = fit_generator(gen, train, work_dir=tmp_path)
    assert fit.extra["backend"] == "docker" and fit.steps == 4 and fit.train_seconds > 0
    assert (tmp_path / "model" / "config.json").exists() and "fit done" in (
        tmp_path / "container.log"
    ).read_text()
    out = gen.generate(250, seed=3)
    validate_output(
        gen, out, var_names=list(train.var_names), label_key="cell_type", known_labels=[], requested=250
    )
    assert out.uns["scgenbench"]["generate_seconds"] > 0  # measured inside the container
    assert _leftovers(docker_engine, tag) == before
    # files written in the bind mount belong to the calling user
    assert (tmp_path / "generated.h5ad").stat().st_uid == os.getuid()


@pytest.mark.docker
def test_docker_nonzero_exit_timeout_and_oom(docker_engine, tmp_path):
    from bench.generators.scgan import ScGAN

    image = C.ensure_image(ScGAN, docker_engine, progress=False)
    before = _leftovers(docker_engine, image)
    with pytest.raises(TaskFailed, match="exited with code 2") as err:
        C.run_docker(image, "bogus", tmp_path, client=docker_engine)
    assert "invalid choice" in err.value.log_tail
    gen = ScGAN(backend="docker", max_steps=10**6, **TINY)
    with pytest.raises(TaskFailed, match="timed out"):
        fit_generator(gen, small_pbmc(), work_dir=tmp_path / "t", deadline=time.monotonic() + 8)
    gen = ScGAN(backend="docker", max_steps=10, mem_limit="48m", **TINY)
    with pytest.raises(
        TaskFailed, match=r"out of memory: killed at its memory limit \(48m, from mem_limit\)"
    ):
        fit_generator(gen, small_pbmc(), work_dir=tmp_path / "m")
    assert _leftovers(docker_engine, image) == before
