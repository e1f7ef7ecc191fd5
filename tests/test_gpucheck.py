"""The GPU check script (issue 15): its CPU path end to end (what CI runs), its imports (PyTorch and this
package only: no AnnData, no scanpy), its JSON and the target bookkeeping; the CUDA path where a GPU is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.gpucheck import PBMC68K, TARGETS, Report, Sizes, TrainRun, _targets, main, run_check, summary

ROOT = Path(__file__).resolve().parents[1]
# one thread: on a loaded shared CI machine, two spinning OpenMP threads made a step 30x slower.
# 50 generated cells: scDiffusion's default generation is 1,000 reverse steps of its denoiser, and 500
# cells (twice: on the device, then to host memory) took 85 of the check's 136 s on one CPU thread
TINY = ["--cells", "300", "--genes", "48,24", "--types", "3", "--gen-cells", "50", "--mmd-cells", "200",
        "--batch-size", "64", "--threads", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def cpu_check(tmp_path_factory):
    """One tiny CPU run of the check, in a fresh interpreter, as gpu-check.sh runs it (``python -m
    bench.gpucheck``, whose ``main`` this calls); after it, the child prints the anndata, scanpy and h5py
    modules it has loaded. The two tests below read the same run (each ran its own: 45 s apiece)."""
    out = tmp_path_factory.mktemp("gpu") / "check.json"
    code = (
        "import sys\n"
        "from bench.gpucheck import main\n"
        f"rc = main(['--device', 'cpu', *{TINY!r}, '--out', {str(out)!r}])\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('anndata', 'scanpy', 'h5py'))\n"
        "print('LOADED', bad)\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_cpu_run_of_the_check_writes_the_json_and_a_summary(cpu_check):
    out, proc = cpu_check
    # one file per generator with a speed probe (found, not named): ACTIVA's and CFGen's
    files = {f.name for f in out.parent.glob("*.json")}
    assert {"check-activa.json", "check-cfgen.json"} <= files, files
    other = json.loads((out.parent / "check-cfgen.json").read_text())
    assert other["model"] == "cfgen" and other["generation"]["cells"] == 50
    assert all(
        r["cells_per_s"] > 0 for r in other["train"] if r["mode"] == "eager" and r["precision"] == "fp32"
    )
    rep = json.loads((out.parent / "check-activa.json").read_text())
    for key in (
        "device",
        "device_name",
        "torch",
        "cuda",
        "sizes",
        "train",
        "generation",
        "model",
        "metrics",
        "peak_gpu_mb",
    ):
        assert key in rep, key
    assert rep["device"] == "cpu" and rep["torch"] == torch.__version__ and rep["cuda"] is None
    assert rep["cpu_threads"] == 1
    assert rep["sizes"]["cells"] == 300 and rep["sizes"]["genes"] == [48, 24]
    combos = {(r["genes"], r["precision"], r["mode"]) for r in rep["train"]}
    assert combos == {(g, p, m) for g in (48, 24) for p in ("fp32", "bf16") for m in ("eager", "graphed")}
    for r in rep["train"]:
        if (r["precision"], r["mode"]) == ("fp32", "eager"):
            assert r["cells_per_s"] > 0 and r["steps"] == 5 and r["error"] is None  # 300 cells, batch 64
        else:
            assert r["skipped"] == "CUDA only" and r["cells_per_s"] is None
    gen = rep["generation"]
    assert gen["cells"] == 50 and gen["seconds_on_device"] > 0 and gen["seconds_to_host"] > 0
    assert rep["model"] == "activa"  # the built-in generator with a speed probe (found, not named)
    mmd = rep["metrics"]["mmd"]  # the built-in metric with a speed probe
    assert mmd["cells_per_side"] == 200 and mmd["seconds"] > 0 and mmd["value"] > 0
    assert rep["targets"]["checked"] is False
    assert "eager cells/s" in proc.stdout and f"written: {out.parent / 'check-activa.json'}" in proc.stdout
    assert len(proc.stdout.splitlines()) < 40 * len(files)  # one screen per model


def test_the_check_imports_neither_anndata_nor_scanpy(cpu_check):
    """Import inspection: after importing and running the check (tiny CPU run) in a fresh
    interpreter, no module of anndata or scanpy (nor h5py, which only AnnData files need) is loaded."""
    assert "LOADED []" in cpu_check[1].stdout


def test_the_script_runs_the_check_module():
    """scripts/gpu-check.sh is ``python -m bench.gpucheck`` from the repository root, its arguments
    passed on ($PYTHON picks the interpreter)."""
    proc = subprocess.run(
        [str(ROOT / "scripts" / "gpu-check.sh"), "--help"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHON": sys.executable}, cwd="/",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: gpu-check") and "--device" in proc.stdout


def test_the_check_finds_what_provides_a_speed_probe_and_names_none():
    """The generators and metrics the check times are those that provide a speed probe (found through
    the registry in a child interpreter); a named one without one is a user error (exit 2)."""
    from bench.registry import providing

    assert "activa" in providing("generators", "speed_probe") and "nb" not in providing(
        "generators", "speed_probe"
    )
    assert "mmd" in providing("metrics", "speed_probe") and "auc" not in providing("metrics", "speed_probe")
    assert main(["--device", "cpu", *TINY, "--models", "activa", "--metrics", "auc"]) == 2


def test_bad_arguments_and_missing_gpu_exit_2(capsys):
    assert main(["--device", "tpu"]) == 2
    assert main(["--device", "cpu", "--cells", "10"]) == 2
    if not torch.cuda.is_available():
        assert main(["--device", "cuda"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err


def _report(**over) -> Report:
    wide, narrow = PBMC68K["genes"]
    rep = Report(device="cuda", device_name="X", torch="t", cuda="c", cudnn=1, python="p", host="h", cpu_threads=1,
                 sizes={"cells": PBMC68K["cells"], "genes": [wide, narrow], "types": 10, "batch_size": 128})  # fmt: skip
    rep.train = [
        TrainRun(wide, "bf16", "graphed", cells_per_s=120_000.0, steps=482, epoch_seconds=0.5),
        TrainRun(wide, "fp32", "eager", cells_per_s=30_000.0, steps=482, epoch_seconds=2.0),
        TrainRun(narrow, "bf16", "graphed", cells_per_s=140_000.0, steps=482, epoch_seconds=0.4),
        TrainRun(narrow, "fp32", "graphed", error="out of GPU memory"),
    ]
    rep.generation = {
        "cells": 100_000,
        "seconds_on_device": 0.5,
        "seconds_to_host": 2.0,
        "cells_per_s_on_device": 2e5,
    }
    rep.metrics = {"mmd": {"cells_per_side": 70_000, "seconds": 12.0}}
    rep.peak_gpu_mb, rep.seconds = 9000.0, 100.0
    for k, v in over.items():
        setattr(rep, k, v)
    return rep


def test_targets_take_the_best_measured_rate_and_compare_the_right_way():
    t = _targets(_report())
    assert t["checked"] is True and set(t) - {"checked"} == set(TARGETS) | {"mmd_70000_s"}
    assert t["train_cells_per_s_17789_genes"] == {"target": 100_000, "measured": 120_000.0, "met": True}
    assert t["train_cells_per_s_2000_genes"]["met"] is False  # 140,000 < 150,000; the failed run is ignored
    assert t["generate_100000_cells_s"]["met"] is True  # seconds: lower is better
    assert t["mmd_70000_s"]["met"] is False
    assert _targets(_report(device="cpu"))["checked"] is False
    text = summary(_report(targets=t))
    assert "NOT met" in text and "failed" in text and "9,000 MiB" in text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_path_measures_every_combination():
    sizes = Sizes(cells=1_000, genes=(256, 64), types=4, gen_cells=5_000, metric_cells=2_000)
    rep = run_check(torch.device("cuda"), sizes, model="activa", log=lambda _: None)
    assert len(rep.train) == 8 and all(r.error is None and r.skipped is None for r in rep.train)
    for r in rep.train:
        assert r.cells_per_s > 0 and r.peak_gpu_mb > 0
        assert (r.graphed_steps > 0) == (r.mode == "graphed")
    assert rep.cuda == torch.version.cuda and rep.peak_gpu_mb > 0
