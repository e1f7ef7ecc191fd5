"""How a failing plugin is reported: one line that names the problem and where to read more.

The plugins here are real modules written to a temporary folder and registered with the harness,
so the file and line numbers in the messages are those a plugin author would see.
"""

from __future__ import annotations

import importlib
import re
import sys
import textwrap
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from bench import registry
from bench.api.errors import TaskFailed
from bench.api.generator import validate_output
from bench.cli import main
from bench.evaluation import EvalContext
from bench.store import Store
from tests.conftest import make_counts

PLUGIN = textwrap.dedent(
    '''\
    import numpy as np
    from bench.api.generator import FitResult, Generator, make_output


    def _inner_step(x):
        raise ValueError(f"learning rate {x} is too large")  # line 6


    class Broken(Generator):
        name = "broken"
        output_scale = "counts"

        def fit(self, train, *args, **kwargs):
            _inner_step(3.0)  # line 14
            return FitResult(train_seconds=0.0)

        def generate(self, n_cells, *, seed):
            raise AssertionError("never called")


    class Swapped(Generator):
        """Returns the training genes with genes 2 and 3 swapped."""

        name = "swapped"
        output_scale = "counts"

        def fit(self, train, *args, **kwargs):
            self.var_names = [str(v) for v in train.var_names]
            return FitResult(train_seconds=0.0)

        def generate(self, n_cells, *, seed):
            names = list(self.var_names)
            names[2], names[3] = names[3], names[2]
            X = np.random.default_rng(seed).poisson(2.0, size=(n_cells, len(names)))
            return make_output(X, names)
    '''
)


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "my_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module("my_plugin")
    monkeypatch.setitem(registry._EXTRA["generators"], "broken", module.Broken)
    monkeypatch.setitem(registry._EXTRA["generators"], "swapped", module.Swapped)
    yield module
    sys.modules.pop("my_plugin", None)


def _run(tmp_path, model):
    data = tmp_path / "cells.h5ad"
    make_counts(n_cells=120, n_genes=60, n_types=3, seed=2).write_h5ad(data)
    run_dir = tmp_path / "run"
    rc = main(["run", "--models", model, "--no-control", "--dataset", str(data), "--label-key", "cell_type",
               "--metrics", "mean_corr", "--experiments", "main", "--out", str(run_dir)])  # fmt: skip
    return rc, run_dir


def test_plugin_exception_in_fit_is_one_line_with_file_line_and_log(plugin, tmp_path, capfd):
    rc, run_dir = _run(tmp_path, "broken")
    out, err = capfd.readouterr()
    assert rc == 1
    assert "Traceback" not in out + err
    failed = [line for line in out.splitlines() if "FAILED" in line]
    assert len(failed) == 1, out
    m = re.fullmatch(
        r"FAILED \S+/broken/seed0/main: ValueError: learning rate 3\.0 is too large "
        r"\(my_plugin\.py:6\); traceback in (\S+task\.log)",
        failed[0],
    )
    assert m, failed[0]
    assert not any(line.startswith("    ") for line in out.splitlines())  # no indented log tail
    log = Path(m.group(1))
    assert log.parent.parent == run_dir / "tasks"
    text = log.read_text()
    assert "Traceback (most recent call last)" in text
    assert 'my_plugin.py", line 14, in fit' in text and 'my_plugin.py", line 6, in _inner_step' in text
    assert text.rstrip().endswith("ValueError: learning rate 3.0 is too large")
    with Store(run_dir) as store:  # the store keeps the same line (bench status shows it)
        row = store.task_row(log.parent.name)
    assert row["status"] == "failed" and failed[0].endswith(row["error"]) and not row["log_tail"]


def test_gene_order_mismatch_names_first_position_and_both_genes(plugin):
    train = make_counts(n_cells=30, n_genes=8, n_types=2)
    names = [str(v) for v in train.var_names]
    gen = plugin.Swapped()
    gen.fit(train)
    out = gen.generate(5, seed=0)
    with pytest.raises(TaskFailed) as info:
        validate_output(
            gen, out, var_names=names, label_key="cell_type", known_labels=["t0", "t1"], requested=5
        )
    assert str(info.value) == (
        "swapped: generated var_names differ from the training genes: first at position 2, "
        "'g3' where the training data has 'g2'"
    )


def test_gene_count_mismatch_is_named_too(plugin):
    train = make_counts(n_cells=30, n_genes=8, n_types=2)
    names = [str(v) for v in train.var_names]
    gen = plugin.Swapped()
    gen.fit(train)
    out = gen.generate(5, seed=0)[:, :6]
    with pytest.raises(
        TaskFailed,
        match=r"6 genes, the training data has 8; first difference at position 2, 'g3' where the training data has 'g2'$",
    ):
        validate_output(
            gen, out, var_names=names, label_key="cell_type", known_labels=["t0", "t1"], requested=5
        )


def test_evaluation_names_the_first_mismatching_gene():
    train = make_counts(n_cells=40, n_genes=10, n_types=2)
    ctx = EvalContext(dataset="toy", train=train, test=train[:10].copy(), label_key="cell_type")
    gen = ad.AnnData(np.asarray(train.X[:5].toarray()), var=train.var.copy())
    names = list(map(str, train.var_names))
    names[7], names[9] = names[9], names[7]
    gen.var_names = names
    with pytest.raises(TaskFailed) as info:
        ctx.transform_generated(gen, scale="counts")
    assert "first at position 7, 'g9' where the training data has 'g7'" in str(info.value)
