"""bench.pipeline is the one place that instantiates, fits, generates, validates and scores a
generator: no other module of the core, no script and no test helper calls a generator's ``fit``
or ``generate`` or a metric's ``func``; every output it hands on is validated and carries its
output scale (and nothing else does: no ``ctx.cache['output_scale']``)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from bench.api.errors import TaskFailed
from bench.generators.baselines import NegativeBinomial
from bench.pipeline import Pipeline, fit, score
from tests.conftest import make_counts

ROOT = Path(__file__).resolve().parents[1]
VERBS = {"fit", "generate", "func"}


def direct_calls(path: Path) -> list[str]:
    """``x.fit(...)``, ``x.generate(...)``, ``x.func(...)`` calls on a name or attribute (a
    generator or metric object) in a source file, as ``line: source``. Calls on a fresh object
    (``PCA(...).fit(X)``, a forest) are scikit-learn's, not a generator's."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in VERBS
            and not isinstance(node.func.value, ast.Call)
            and ast.unparse(node.func) != "args.func"  # argparse's sub-command dispatch
        ):
            found.append(f"{node.lineno}: {ast.unparse(node.func)}")
    return found


def test_the_scan_finds_direct_calls(tmp_path):
    src = tmp_path / "x.py"
    src.write_text(
        "gen.fit(train, ctx)\nPCA(2).fit(X)\nm = metric.func(ctx, cells)\nself.gen.generate(3, seed=1)\n"
    )
    assert direct_calls(src) == ["1: gen.fit", "3: metric.func", "4: self.gen.generate"]


def test_only_the_pipeline_calls_fit_generate_or_a_metric():
    files = [p for p in (ROOT / "bench").rglob("*.py") if p.name != "pipeline.py" and "api" not in p.parts]
    files += [*(ROOT / "scripts").rglob("*.py"), ROOT / "tests" / "conftest.py"]
    assert len(files) > 40
    offenders = {str(p.relative_to(ROOT)): direct_calls(p) for p in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_module_carries_the_output_scale_in_the_eval_cache():
    for path in (ROOT / "bench").rglob("*.py"):
        assert 'cache["output_scale"]' not in path.read_text(), path


@pytest.fixture(scope="module")
def train():
    import scipy.sparse as sp

    from bench.api.generator import to_library_size

    a = make_counts(n_cells=200, n_genes=40, n_types=3, seed=0)
    a.layers["counts"] = a.X.copy()
    a.X = sp.csr_matrix(to_library_size(a.X))
    return a


def test_a_pipeline_fits_and_hands_on_validated_cells_with_their_scale(train, tmp_path):
    pipe = Pipeline("nb", {}, train, "cell_type", work_dir=tmp_path / "model")
    fitted = pipe.fit_model(train, 0)
    assert fitted.generator.var_names == list(map(str, train.var_names)) and fitted.seconds >= 0
    assert (tmp_path / "model").is_dir()
    cells = pipe.generate_cells(fitted, 50, seed=1)
    assert cells.n_obs == 50 and cells.uns["scgenbench"]["output_scale"] == NegativeBinomial.output_scale
    per_label = pipe.generate_cells(fitted, {"t0": 5, "t1": 7}, seed=2)
    assert per_label.obs["cell_type"].astype(str).value_counts().to_dict() == {"t0": 5, "t1": 7}
    again = pipe.fit_generate(train, 50, 0)  # a fresh fit with seed 0, cells with seed 1: the same
    np.testing.assert_array_equal(again.X.toarray(), cells.X.toarray())
    with pytest.raises(TaskFailed, match="requested"):
        pipe.validate(cells, 49)


def test_fit_records_the_training_data_and_measures(train):
    from bench.api.generator import FitContext

    gen = NegativeBinomial()
    fitted = fit(gen, train, FitContext(label_key="cell_type", seed=0))
    assert gen.label_key == "cell_type" and gen.labels == sorted(train.obs["cell_type"].astype(str).unique())
    assert fitted.generator is gen and fitted.peak_rss_mb is not None


def test_score_runs_a_metric_by_name(train):
    from bench.evaluation import EvalContext

    ctx = EvalContext(dataset="toy", train=train[:150], test=train[150:], label_key="cell_type", seed=0)
    out = score("mean_corr", ctx, ctx.test.copy(), seed=0)
    assert set(out.values) == {"mean_corr"}


def test_the_speed_probe_trains_and_samples_on_tensors():
    """The torch-only path (the GPU check's): a model by name, trained and sampled on tensors; a
    model without one says so."""
    import torch

    from bench.api.errors import UserError
    from bench.pipeline import speed_probe

    probe = speed_probe("activa", 12, 3, seed=0, device="cpu", batch_size=16, precision="fp32", mode="eager")
    X = torch.rand((40, 12)) * 100
    y = torch.arange(40) % 3
    logs = probe.train_epoch(X, y)
    assert probe.steps == 3 and probe.cells_seen == 40 and probe.graphed_steps == 0 and logs
    assert probe.n_genes == 12 and probe.device == torch.device("cpu")
    chunk, decode = probe.sampler()
    cells = decode(5, torch.Generator().manual_seed(0))
    assert chunk == 10_000 and cells.shape == (5, 12) and cells.dtype == torch.float32
    with pytest.raises(UserError, match="no torch-only speed probe"):
        speed_probe(
            NegativeBinomial, 12, 3, seed=0, device="cpu", batch_size=16, precision="fp32", mode="eager"
        )
