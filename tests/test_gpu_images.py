"""scGAN/cscGAN on a GPU (issue 15): the image variant in the tag, the Dockerfile's variant logic, the
entry point's refusal to train a `cuda` run on the CPU (exit 2 -> the harness's UserError), the device
it records and the XLA fallback. The GPU image itself is not built here (a CUDA TensorFlow is
gigabytes); which GPUs a container gets is tested in tests/test_sandbox.py (test_gpus_only_as_allocated)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.api.errors import UserError
from bench.generators import container as C
from bench.generators.scgan.plugin import CscGAN, ScGAN
from tests.conftest import fit_generator, import_tensorflow_lazily
from tests.test_scgan import TINY

SCGAN_DIR = Path(C.__file__).resolve().parent.parent / "scgan"
tf = E = port = None  # set when a test that needs TensorFlow runs (tests/conftest.py)


@pytest.fixture
def tensorflow():
    import_tensorflow_lazily(globals())


def test_tag_names_the_variant_and_a_gpu_run_never_gets_the_cpu_image():
    cpu, gpu = ScGAN.image_tag("sha256:base", "cpu"), ScGAN.image_tag("sha256:base", "gpu")
    assert cpu.startswith("scgenbench/scgan:cpu-") and gpu.startswith("scgenbench/scgan:gpu-")
    assert cpu.split("-", 1)[1] != gpu.split("-", 1)[1]  # the hash covers the VARIANT build arg, too
    assert ScGAN.image_tag("sha256:other", "gpu") != gpu  # and the base image
    assert (
        ScGAN.image_variant("cuda") == ScGAN.image_variant("cuda:1") == CscGAN.image_variant("cuda") == "gpu"
    )
    assert ScGAN.image_variant("cpu") == "cpu"
    assert ScGAN.build_args("gpu") == {"VARIANT": "gpu"} and ScGAN.build_args("cpu") == {"VARIANT": "cpu"}


def test_an_image_without_a_gpu_variant_runs_its_cpu_image_and_gets_no_variant_arg():
    class CpuOnly(C.ContainerGenerator):
        name = "cpu-only-test"
        image_name = ""  # not registered as a buildable image

    assert CpuOnly.image_variant("cuda") == "cpu" and CpuOnly.build_args("cpu") == {}


def test_unknown_variant_is_a_user_error_before_any_docker_call():
    with pytest.raises(UserError, match="no 'tpu' image"):
        C.build_image("scgan", variant="tpu")


def test_gpu_base_image_can_be_set_apart(monkeypatch):
    monkeypatch.setenv("BENCH_BASE_IMAGE", "base:cpu")
    monkeypatch.delenv("BENCH_GPU_BASE_IMAGE", raising=False)
    assert C.default_base_image("gpu") == C.default_base_image("cpu") == "base:cpu"
    monkeypatch.setenv("BENCH_GPU_BASE_IMAGE", "tensorflow/tensorflow:2.21.0-gpu")
    assert C.default_base_image("gpu") == "tensorflow/tensorflow:2.21.0-gpu"
    assert C.default_base_image("cpu") == "base:cpu"


def _dockerfile() -> str:
    return (SCGAN_DIR / "Dockerfile").read_text()


def test_dockerfile_declares_the_variant_after_from_and_copies_every_build_file():
    text = _dockerfile()
    assert re.search(r"^FROM \$\{BASE_IMAGE\}\n(?:#.*\n)*ARG VARIANT=cpu$", text, re.M), (
        "ARG VARIANT after FROM"
    )
    assert "LABEL org.scgenbench.variant=${VARIANT}" in text
    copied = set(re.search(r"^COPY (requirements[^\n]*) /opt/scgan/$", text, re.M).group(1).split())
    assert copied == {f for f in ScGAN.build_files if f.startswith("requirements")}
    for f in ScGAN.build_files:
        assert (SCGAN_DIR / f).is_file(), f


def test_gpu_requirements_pin_the_cuda_build_of_the_cpu_images_version():
    cpu = (SCGAN_DIR / "requirements-tf.txt").read_text().split()
    gpu = (SCGAN_DIR / "requirements-tf-gpu.txt").read_text().split()
    (cpu_pin,), (gpu_pin,) = cpu, gpu
    assert cpu_pin.startswith("tensorflow-cpu==") and gpu_pin.startswith("tensorflow[and-cuda]==")
    assert cpu_pin.split("==")[1] == gpu_pin.split("==")[1]


@pytest.mark.parametrize(
    ("variant", "req", "check"),
    [
        ("cpu", "requirements-tf.txt", "import tensorflow"),
        ("gpu", "requirements-tf-gpu.txt", "is_built_with_cuda()"),
        ("tpu", None, None),
    ],
)
def test_dockerfile_variant_selection_runs_in_a_shell(variant, req, check):
    """The RUN step's `case` on VARIANT, executed by sh as docker would run it."""
    block = re.search(r'^\s*case "\$VARIANT" in.*?esac;', _dockerfile(), re.S | re.M).group(0)
    script = block.replace("\\\n", "\n") + '\necho "$tf_req|$tf_ok"\n'
    proc = subprocess.run(["sh", "-c", script], env={"VARIANT": variant, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)  # fmt: skip
    if req is None:
        assert proc.returncode == 2 and "use cpu or gpu" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    got_req, got_check = proc.stdout.strip().split("|")
    assert got_req == req and check in got_check


# -- the entry point (TensorFlow on the host) -------------------------------------------------------


def _no_gpu_for_tf() -> bool:
    return not torch.cuda.is_available()


@pytest.mark.skipif(not _no_gpu_for_tf(), reason="checks the refusal on a machine without a GPU")
def test_entry_refuses_cuda_without_a_gpu_and_writes_the_user_error(tensorflow, tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps({"device": "cuda", "params": {}, "conditional": False}))
    assert E.main(["fit", str(tmp_path)]) == E.USER_ERROR_EXIT == 2
    err = json.loads((tmp_path / E.USER_ERROR_FILE).read_text())
    assert "TensorFlow" in err["message"] and "sees no GPU" in err["message"] and "--device cpu" in err["fix"]
    assert not (tmp_path / "fit.json").exists()


def test_entry_on_cpu_records_the_device_it_used(tensorflow):
    info = E.configure_device("cpu")
    assert info["device"] == "cpu" and info["gpus"] == [] and isinstance(info["tensorflow_cuda"], bool)
    assert tf.config.get_visible_devices("GPU") == []


@pytest.mark.skipif(_no_gpu_for_tf(), reason="needs a GPU")
def test_entry_on_cuda_uses_the_gpus_with_memory_growth(tensorflow):
    info = E.configure_device("cuda")
    assert info["device"] == "cuda" and info["gpus"] and info["tensorflow_cuda"]
    for gpu in tf.config.list_physical_devices("GPU"):
        assert tf.config.experimental.get_memory_growth(gpu)


@pytest.mark.skipif(not _no_gpu_for_tf(), reason="checks the refusal on a machine without a GPU")
def test_harness_turns_the_refusal_into_a_user_error(tmp_path, monkeypatch):
    """End to end through a real entry-point process: `--device cuda` where TensorFlow sees no GPU is
    the user's one-line error (exit 2), not a CPU run recorded as cuda. (The docker backend maps the
    same file the same way; it would need the GPU image, not built here.)"""
    import anndata as ad

    pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    X = rng.gamma(0.5, 1.0, (64, 20)).astype(np.float32)
    train = ad.AnnData(X / X.sum(1, keepdims=True) * 20_000)
    train.var_names = [f"g{i}" for i in range(20)]
    train.obs["cell_type"] = ["a", "b"] * 32
    gen = ScGAN(backend="process", **TINY, max_steps=2)
    with pytest.raises(UserError, match="sees no GPU") as info:
        fit_generator(gen, train, device="cuda", work_dir=tmp_path)
    assert "--device cpu" in info.value.fix


def test_xla_falls_back_with_a_warning_when_it_cannot_compile(tensorflow, capsys):
    def needs_python(x):  # numpy_function cannot be compiled by XLA
        return tf.numpy_function(lambda a: (a * 2).astype(np.float32), [x], tf.float32) + 1.0

    fn = port.runtime.XlaFunction(needs_python, True, "test update")
    assert float(fn(tf.constant(3.0))) == 7.0
    assert fn.jit is False and fn.fallback
    assert "warning: XLA cannot compile the test update" in capsys.readouterr().out
    assert float(fn(tf.constant(1.0))) == 3.0
    plain = port.runtime.XlaFunction(needs_python, False, "test update")
    assert float(plain(tf.constant(3.0))) == 7.0 and plain.fallback is None


def test_xla_compiles_where_it_can_and_records_it(tensorflow):
    X, _ = (np.random.default_rng(0).gamma(0.5, 1.0, (64, 20)).astype(np.float32), None)
    X = X / X.sum(1, keepdims=True) * 20_000
    _, record = E.fit(X, None, {**TINY, "xla": True, "max_steps": 2}, 0, progress=False)
    assert record["xla"] is True and record["xla_fallback"] is None
