"""Every mistake a new user makes ends the same way: exit code 2, one line on stderr, nothing written.

Each case runs the real CLI (``bench.cli.main``) in an empty working directory with an empty
dataset cache (``BENCH_DATA``); afterwards neither may hold anything (no run dir, no prepared
data), and stderr (captured at the file-descriptor level, so library output counts too) must be
exactly one line. The inputs are small AnnData files with one defect each.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from bench.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from datasets_fixtures import make_counts  # noqa: E402


def _write(adata: ad.AnnData, path: Path) -> str:
    adata.write_h5ad(path)
    return str(path)


def _inputs(folder: Path) -> dict[str, str]:
    """One file per defect (and a good one), written once per test into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    good = make_counts(sizes=(60, 45, 30), n_genes=60)
    out = {"good": _write(good, folder / "good.h5ad")}
    lognorm = good.copy()
    X = sp.csr_matrix(sp.diags(1e4 / np.asarray(good.X.sum(axis=1)).ravel()) @ good.X, dtype=np.float32)
    X.data = np.log1p(X.data)
    lognorm.X = X
    out["lognorm"] = _write(lognorm, folder / "lognorm.h5ad")
    scaled = good.copy()
    dense = good.X.toarray()
    scaled.X = (dense - dense.mean(axis=0)) / (dense.std(axis=0) + 1e-6)
    out["scaled"] = _write(scaled, folder / "scaled.h5ad")
    nan = good.copy()
    nan.X = good.X.toarray()
    nan.X[3, 4] = np.nan
    out["nan"] = _write(nan, folder / "nan.h5ad")
    lonely = good.copy()
    lonely.obs["cell_type"] = lonely.obs["cell_type"].astype(str)
    lonely.obs.iloc[0, lonely.obs.columns.get_loc("cell_type")] = "lonely"
    out["lonely"] = _write(lonely, folder / "lonely.h5ad")
    (folder / "empty.h5ad").write_bytes(b"")
    out["empty"] = str(folder / "empty.h5ad")
    # genes as obs, cells as var (issue 32): gene symbols over barcodes, every value a count
    transposed = ad.AnnData(sp.csr_matrix(good.X.T))
    transposed.obs_names = [("MT-CO1", "MT-ND1", "RPL3", "RPS6", "ACTB", "CD3E")[i] if i < 6 else f"GENE{i}"
                            for i in range(transposed.n_obs)]  # fmt: skip
    rng = np.random.default_rng(0)
    transposed.var_names = ["".join(rng.choice(list("ACGT"), 16)) + "-1" for _ in range(transposed.n_vars)]
    out["transposed"] = _write(transposed, folder / "transposed.h5ad")
    # cell ids as labels (issue 32): 67 labels of 2 cells each
    tiny = make_counts(sizes=(2,) * 67, n_genes=60)
    out["tiny_labels"] = _write(tiny, folder / "tiny_labels.h5ad")
    (folder / "not_a_dir").write_text("a file where the run dir should go\n")
    out["a_file"] = str(folder / "not_a_dir")
    (folder / "corrupt_run").mkdir()
    (folder / "corrupt_run" / "bench.sqlite").write_bytes(b"this is not an SQLite database" * 100)
    out["corrupt_run"] = str(folder / "corrupt_run")
    (folder / "cells.csv").write_text("gene,cell\n1,2\n")
    out["csv"] = str(folder / "cells.csv")
    configs = {
        "bad_toml": 'models = ["nb"\n',
        "old_doc_form": 'models = ["nb"]\n[models.nb]\n',
        "unknown_key": 'modles = ["nb"]\n',
        "unknown_param": "[models.nb]\nbogus = 1\n",
        "params_not_in_run": 'models = ["nb"]\n[model_params.activa]\nepochs = 3\n',
        "bad_executor": 'models = ["nb"]\n[executor]\nname = "kubernetes"\n',
        # the metric suite's options and the newer models' parameters (issue 17, 16, 19)
        "metric_option_unknown": 'models = ["nb"]\n[metrics.auc]\nbogus = 1\n',
        "metric_option_out_of_range": 'models = ["nb"]\n[metrics.prdc]\nk = 0\n',
        "metric_option_wrong_type": 'models = ["nb"]\n[metrics.sinkhorn]\nblur_factor = "small"\n',
        "metric_option_not_a_choice": 'models = ["nb"]\n[metrics.per_type]\nmetrics = ["mmd", "fid"]\n',
        "metric_option_item_out_of_range": 'models = ["nb"]\n[metrics.mmd]\nscale_factors = [0.5, -1.0]\n',
        "metric_options_unknown_metric": 'models = ["nb"]\n[metrics.nosuch]\nk = 1\n',
        "metric_options_not_in_run": 'models = ["nb"]\n[metrics]\nselect = ["mean_corr"]\n[metrics.prdc]\nk = 3\n',
        "metric_plain_value": 'models = ["nb"]\n[metrics]\nauc = 3\n',
        "scvi_out_of_range": "[models.scvi]\nn_latent = 0\n",
        "scvi_not_a_choice": '[models.scvi]\nmode = "posterior"\n',
        "copula_wrong_type": '[models.copula]\nzp_cutoff = "high"\n',
        "copula_out_of_range": "[models.copula]\nmin_nonzero = 0\n",
        "activa_wrong_type": '[models.activa]\nepochs = "ten"\n',
        "cscgan_not_a_choice": '[models.cscgan]\ncritic_head = "mlp"\n',
        "scgan_memory_limit": '[models.scgan]\nmem_limit = "lots"\n',
        "scgan_layer_out_of_range": "[models.scgan]\ngen_layers = [256, 0]\n",
        # issue 32: wrong types and ranges of run settings
        "seeds_a_string": 'models = ["nb"]\nseeds = "a"\n',
        "seeds_not_a_list": 'models = ["nb"]\nseeds = 1\n',
        "negative_split_seed": 'models = ["nb"]\nsplit_seed = -1\n',
        "timeout_a_string": 'models = ["nb"]\ntimeout_s = "abc"\n',
        "slurm_poll_a_string": 'models = ["nb"]\n[executor]\nname = "slurm"\npoll_s = "x"\n',
        "local_executor_unknown_key": 'models = ["nb"]\n[executor]\npartitoin = "gpu"\n',
    }
    for name, text in configs.items():
        (folder / f"{name}.toml").write_text(text)
        out[name] = str(folder / f"{name}.toml")
    return out


RUN = ["run", "--out", "{out}", "--models"]
CASES: dict[str, list[str]] = {
    "unknown model": [*RUN, "nosuch"],
    "no models": ["run", "--out", "{out}"],
    "unknown dataset": [*RUN, "nb", "--dataset", "nosuch"],
    "missing file": [*RUN, "nb", "--dataset", "{in}/missing.h5ad"],
    "empty file": [*RUN, "nb", "--dataset", "{empty}"],
    "unsupported file type": [*RUN, "nb", "--dataset", "{csv}"],
    "log-normalised X": [*RUN, "nb", "--dataset", "{lognorm}", "--label-key", "cell_type"],
    "scaled X": [*RUN, "nb", "--dataset", "{scaled}", "--label-key", "cell_type"],
    "NaN in X": [*RUN, "nb", "--dataset", "{nan}", "--label-key", "cell_type"],
    "missing label column": [*RUN, "nb", "--dataset", "{good}", "--label-key", "celltype"],
    "a label with one cell": [*RUN, "nb", "--dataset", "{lonely}", "--label-key", "cell_type"],
    "rare class not a label": [
        *RUN,
        "nb",
        "--dataset",
        "{good}",
        "--label-key",
        "cell_type",
        "--rare-class",
        "Z",
    ],  # fmt: skip
    "unparsable seeds": [*RUN, "nb", "--seeds", "0,one"],
    "unknown metric": [*RUN, "nb", "--metrics", "nosuch"],
    "unknown experiment": [*RUN, "nb", "--experiments", "mian"],
    "missing config": ["run", "--out", "{out}", "--config", "{in}/missing.toml"],
    "invalid TOML": ["run", "--out", "{out}", "--config", "{bad_toml}"],
    "models list and [models.X]": ["run", "--out", "{out}", "--config", "{old_doc_form}"],
    "unknown config key": ["run", "--out", "{out}", "--config", "{unknown_key}"],
    "unknown model parameter": ["run", "--out", "{out}", "--config", "{unknown_param}"],
    "parameters for a model not in the run": ["run", "--out", "{out}", "--config", "{params_not_in_run}"],
    "unknown executor": ["run", "--out", "{out}", "--config", "{bad_executor}"],
    "--device cuda without a GPU": [
        *RUN,
        "nb",
        "--dataset",
        "{good}",
        "--label-key",
        "cell_type",
        "--device",
        "cuda",
    ],  # fmt: skip
    "--fractions without the augmentation metric": [*RUN, "nb", "--metrics", "auc", "--fractions", "0.1"],
    "--fractions outside (0, 1]": [*RUN, "nb", "--fractions", "0.1,2"],
    **{
        f"config: {name.replace('_', ' ')}": ["run", "--out", "{out}", "--config", f"{{{name}}}"]
        for name in (
            "metric_option_unknown",
            "metric_option_out_of_range",
            "metric_option_wrong_type",
            "metric_option_not_a_choice",
            "metric_option_item_out_of_range",
            "metric_options_unknown_metric",
            "metric_options_not_in_run",
            "metric_plain_value",
            "scvi_out_of_range",
            "scvi_not_a_choice",
            "copula_wrong_type",
            "copula_out_of_range",
            "activa_wrong_type",
            "cscgan_not_a_choice",
            "scgan_memory_limit",
            "scgan_layer_out_of_range",
        )
    },  # fmt: skip
    # issue 32, finding 7
    "--seeds -1": [*RUN, "nb", "--seeds", "-1"],
    "--timeout nan": [*RUN, "nb", "--timeout", "nan"],
    "--timeout -1": [*RUN, "nb", "--timeout", "-1"],
    "--partition without --executor slurm": [*RUN, "nb", "--partition", "gpu"],
    "--out is a file": [
        "run",
        "--out",
        "{a_file}",
        "--models",
        "nb",
        "--dataset",
        "{good}",
        "--label-key",
        "cell_type",
    ],  # fmt: skip
    "--out under a file": [
        "run",
        "--out",
        "{a_file}/run",
        "--models",
        "nb",
        "--dataset",
        "{good}",
        "--label-key",
        "cell_type",
    ],  # fmt: skip
    "corrupt bench.sqlite in run": [
        "run",
        "--out",
        "{corrupt_run}",
        "--models",
        "nb",
        "--dataset",
        "{good}",
        "--label-key",
        "cell_type",
    ],  # fmt: skip
    "corrupt bench.sqlite in report": ["report", "{corrupt_run}"],
    "transposed matrix (genes as obs)": [*RUN, "nb", "--dataset", "{transposed}"],
    "67 labels of 2 cells": [*RUN, "nb", "--dataset", "{tiny_labels}", "--label-key", "cell_type"],
    **{
        f"config: {name.replace('_', ' ')}": ["run", "--out", "{out}", "--config", f"{{{name}}}"]
        for name in (
            "seeds_a_string",
            "seeds_not_a_list",
            "negative_split_seed",
            "timeout_a_string",
            "slurm_poll_a_string",
            "local_executor_unknown_key",
        )
    },  # fmt: skip
    "report of a missing run dir": ["report", "{out}"],
    "check of a missing run dir": ["check", "{out}", "--baseline", "{in}/missing.json"],
    "info of an unknown dataset": ["datasets", "info", "nosuch"],
    "add a missing file": ["datasets", "add", "brain_small", "{in}/missing.h5"],
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("inputs")
    return folder, _inputs(folder)


def _cuda_visible() -> bool:
    """Whether this process already sees a GPU (then hiding it with CUDA_VISIBLE_DEVICES is too late)."""
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized() and torch.cuda.device_count())


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, inputs, tmp_path, monkeypatch, capfd):
    folder, files = inputs
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("BENCH_DATA", str(cache))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU, also on a GPU machine
    if "cuda" in case and _cuda_visible():
        pytest.skip("CUDA was initialised in this process before the test could hide the GPU")
    argv = [a.format(out=work / "run", **{"in": folder}, **files) for a in CASES[case]]
    rc = main(argv)
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert rc == 2, f"exit {rc}; stderr: {err}; stdout: {out}"
    assert len(lines) == 1, f"stderr has {len(lines)} lines:\n{err}"
    assert lines[0].startswith("error: ")
    assert list(work.iterdir()) == [], f"written: {sorted(p.name for p in work.iterdir())}"
    assert not cache.exists() or list(cache.rglob("*")) == [], f"cache: {list(cache.rglob('*'))}"
    assert sorted(p.name for p in Path(files["corrupt_run"]).iterdir()) == ["bench.sqlite"]
    assert Path(files["a_file"]).read_text() == "a file where the run dir should go\n"


def test_device_cuda_without_gpu_in_a_fresh_process(tmp_path):
    """The same check as the parametrised case, where no earlier test can have touched CUDA."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "BENCH_DATA": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "bench.cli", "run", "--models", "nb", "--device", "cuda", "--out",
           str(tmp_path / "run")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: --device cuda was asked for but no CUDA GPU is visible (use --device auto or cpu)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_orientation_check_spares_cells_as_rows_and_can_be_skipped(inputs, tmp_path):
    """The transposed-matrix heuristics (issue 32): barcodes as obs and genes as var pass, names that
    say nothing pass, and ``check_orientation=False`` (``--no-orientation-check``) accepts the
    transposed file."""
    from bench.api.errors import UserError
    from bench.datasets import prepare
    from bench.datasets.readers import check_orientation

    _, files = inputs
    transposed = ad.read_h5ad(files["transposed"])
    with pytest.raises(UserError, match="looks transposed.*var names look like cell barcodes and obs names"):
        check_orientation(transposed, "t.h5ad")
    check_orientation(transposed.T, "t.h5ad")  # cells as rows: fine
    check_orientation(ad.read_h5ad(files["good"]), "good.h5ad")  # cell0.. / gene0..: says nothing
    ensembl = ad.AnnData(np.ones((3, 2)), obs=pd.DataFrame(index=["ENSG00000141510", "ENSG00000012048",
                                                                   "ENSG00000139618"]))  # fmt: skip
    with pytest.raises(UserError, match="obs names look like genes"):
        check_orientation(ensembl, "e.h5ad")
    data = prepare(files["transposed"], cache_dir=tmp_path, check_orientation=False, write_cache=False)
    assert data.train.n_obs + data.test.n_obs <= transposed.n_obs


def test_label_sizes_threshold():
    from bench.api.errors import UserError
    from bench.datasets.preprocess import MIN_MEDIAN_LABEL_CELLS, check_label_sizes

    with pytest.raises(UserError, match=f"median of 2 cells .*at least {MIN_MEDIAN_LABEL_CELLS}"):
        check_label_sizes(np.repeat(np.arange(67), 2), "cell_type")
    check_label_sizes(np.repeat(np.arange(4), MIN_MEDIAN_LABEL_CELLS), "cell_type")  # at the threshold
    check_label_sizes(np.array(["A"] * 50 + ["rare"] * 2 + ["B"] * 40), "cell_type")  # one rare type is fine
