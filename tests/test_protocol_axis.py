"""The evaluation protocol as an axis of every run (issue 27, item 1): `--protocol`, the protocol
tasks and their keys, the kept generated cells, values that carry their protocol, and the tables
that keep protocols apart."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from bench.api import Metric, MetricOutput, UserError
from bench.cli import main
from bench.config import RunSpec, resolve_protocols
from bench.planning import plan
from bench.report.protocol_tables import PROTOCOLS_TITLE
from bench.report.tables import build
from bench.store import Store
from tests.conftest import make_counts

FAST = ["--metrics", "auc,mmd,mean_corr", "--experiments", "main"]


@pytest.fixture
def h5ad(tmp_path):
    path = tmp_path / "cells.h5ad"
    make_counts(n_cells=240, n_genes=300, n_types=3, seed=1).write_h5ad(path)
    return path


def _run(h5ad, out, *extra):
    return main(["run", "--models", "nb", "--dataset", str(h5ad), "--label-key", "cell_type",
                 "--out", str(out), *FAST, *extra])  # fmt: skip


def test_protocols_resolve_genes_first_and_bare_names_to_every_grouping():
    assert resolve_protocols([]) == ["genes"]
    assert resolve_protocols(["pca-real", "genes", "pca-real"]) == ["genes", "pca-real"]
    assert resolve_protocols(["paper"]) == ["genes", "paper:joint", "paper:pairwise"]
    assert resolve_protocols(["harmony:pairwise"]) == ["genes", "harmony:pairwise"]
    for bad in ("umap", "paper:both", "pca-real:joint"):
        with pytest.raises(UserError, match="unknown evaluation protocol") as exc:
            resolve_protocols([bad])
        assert "paper:pairwise" in exc.value.fix


def test_a_bad_protocol_on_the_command_line_is_one_line_and_exit_2(h5ad, tmp_path, capsys):
    assert _run(h5ad, tmp_path / "run", "--protocol", "umap") == 2
    err = capsys.readouterr().err
    assert "unknown evaluation protocol 'umap'" in err and "Traceback" not in err


def test_metrics_declare_their_protocols():
    def f(ctx, cells, *, seed):
        return MetricOutput(values={})

    assert Metric(name="x", func=f, protocols=("genes", "pca-real")).supports("pca-real")
    assert not Metric(name="x", func=f).supports("paper:joint")
    with pytest.raises(ValueError, match="must include 'genes'"):
        Metric(name="x", func=f, protocols=("pca-real",))
    with pytest.raises(ValueError, match="only a 'sample' metric"):
        Metric(name="x", func=f, kind="fit", protocols=("genes", "pca-real"))
    from bench.metrics import AUC, CD, MMD, TIMING

    assert AUC.supports("paper:joint") and MMD.supports("harmony:pairwise")
    assert not CD.supports("pca-real") and not TIMING.supports("pca-real")  # defined on named genes


def test_plan_adds_protocol_tasks_and_keeps_the_main_keys(h5ad):
    common = dict(models=["nb"], datasets=[str(h5ad)], label_key="cell_type", seeds=[0, 1],
                  metrics=["auc", "mmd", "correlation_discrepancy"], experiments=["main"])  # fmt: skip
    plain = plan(RunSpec(**common), write=False).tasks
    both = plan(RunSpec(**common, protocols=["pca-real", "harmony"]), write=False).tasks
    mains = [t for t in both if t.protocol == "genes"]
    assert [t.key for t in mains] == [t.key for t in plain]  # keys of the main tasks unchanged
    assert all(t.keep_generated for t in mains) and not any(t.keep_generated for t in plain)
    extra = [t for t in both if t.protocol != "genes"]
    assert len(extra) == 3 * 3 * 2  # (pca-real, harmony:joint, harmony:pairwise) x 3 models x 2 seeds
    assert {t.experiment for t in extra} == {"main@pca-real", "main@harmony:joint", "main@harmony:pairwise"}
    for t in extra:  # CD is defined on named genes: scored in genes only
        assert set(t.metrics) == {"auc", "mmd"}
        main_keys = {m.model: m.key for m in mains if m.seed == t.seed}
        if t.protocol.endswith(":joint"):
            assert t.inputs == main_keys  # integrated with every model of its seed
        else:
            assert t.inputs == {t.model: main_keys[t.model]}
    assert len({t.key for t in both}) == len(both)


def test_run_scores_each_protocol_and_keeps_them_apart(h5ad, tmp_path, capsys):
    run = tmp_path / "run"
    assert _run(h5ad, run, "--protocol", "pca-real") == 0
    out = capsys.readouterr().out
    assert "6 task(s)" in out and "headline (protocol genes)" in out and PROTOCOLS_TITLE in out
    assert len(list((run / "generated").glob("*.h5ad"))) == 3  # the main tasks' cells, kept
    with Store(run) as store:
        values = store.values()
        report = build(store)
    protocols = {(e, p.get("protocol")) for e, p in zip(values.experiment, values.params, strict=True)}
    assert protocols == {("main", "genes"), ("main@pca-real", "pca-real")}
    pca = values[values.experiment == "main@pca-real"]
    assert set(pca.metric) == {"auc", "auc_sd", "mmd"} and set(pca.model) == {"nb", "real", "shuffled"}
    genes = values[(values.experiment == "main") & (values.metric == "auc")].set_index("model").value
    pcs = pca[pca.metric == "auc"].set_index("model").value
    assert not np.allclose(genes.sort_index(), pcs.sort_index())  # another space, other values
    assert pcs["shuffled"] > 0.9  # the negative control is separated in the fair protocol too
    tables = report.datasets["cells"].protocols
    assert list(tables) == [PROTOCOLS_TITLE, "main experiment, protocol pca-real"]
    side = tables[PROTOCOLS_TITLE]
    assert {"auc · genes", "auc · pca-real", "mmd · pca-real"} <= set(side.columns)
    assert "mean_corr · genes" not in side.columns  # scored in one protocol only
    # the headline's scaled score is the genes protocol's alone
    assert set(report.scaled.summary.experiment) == {"main"}


def test_protocol_tasks_rerun_main_tasks_that_kept_no_cells(h5ad, tmp_path, capsys):
    run = tmp_path / "run"
    assert _run(h5ad, run) == 0  # no protocol: nothing kept
    assert not (run / "generated").exists()
    with Store(run) as store:
        before = store.values()
    capsys.readouterr()
    assert _run(h5ad, run, "--protocol", "pca-real") == 0
    assert "6 task(s): 0 reused" in capsys.readouterr().out  # the 3 main tasks again, for their cells
    assert len(list((run / "generated").glob("*.h5ad"))) == 3
    with Store(run) as store:
        after = store.values()
    main_after = after[after.experiment == "main"].reset_index(drop=True)
    np.testing.assert_allclose(main_after.value, before.value)  # a task is a function of its key
    shutil.rmtree(run / "generated")
    assert _run(h5ad, run, "--protocol", "pca-real") == 0
    assert "6 reused" in capsys.readouterr().out  # done protocol tasks need no cells


def test_a_joint_protocol_task_without_every_models_cells_fails_clearly(h5ad, tmp_path, capsys):
    run = tmp_path / "run"
    assert _run(h5ad, run, "--protocol", "harmony:joint") == 0
    with Store(run) as store:
        task = next(t for t in plan(RunSpec(models=["nb"], datasets=[str(h5ad)], label_key="cell_type",
                    metrics=["auc", "mmd", "mean_corr"], experiments=["main"], protocols=["harmony:joint"]),
                    write=False).tasks if t.protocol != "genes")  # fmt: skip
        assert store.task_row(task.key)["status"] == "done"
    from bench.tasks import execute_task

    other = next(iter(task.inputs.values()))
    (run / "generated" / f"{other}.h5ad").unlink()
    rec = execute_task(task, tmp_path / "work", kept_dir=run / "generated")
    assert rec.status == "failed"
    assert "no generated cells of" in rec.error and "joint grouping needs every model's cells" in rec.error


def test_baseline_and_gate_keep_protocols_apart(h5ad, tmp_path, capsys):
    """A value of one protocol is never compared with another protocol's: the baseline holds each
    (experiment = main or main@<protocol>, value) once, and a run whose pca-real values moved fails
    the gate on those values alone."""
    from bench.regression import load_baseline

    run = tmp_path / "run"
    assert _run(h5ad, run, "--protocol", "pca-real", "--seeds", "0,1") == 0
    assert main(["baseline", str(run), "-o", str(tmp_path / "baseline.json")]) == 0
    doc = load_baseline(tmp_path / "baseline.json")
    cells = {(v["model"], v["experiment"], v["metric"]) for v in doc["values"]}
    assert ("nb", "main", "auc") in cells and ("nb", "main@pca-real", "auc") in cells
    capsys.readouterr()
    assert main(["check", str(run), "--baseline", str(tmp_path / "baseline.json")]) == 0
    # the pca-real AUC of nb made far worse in the baseline's eyes: only that value regresses
    for v in doc["values"]:
        if (v["model"], v["experiment"], v["metric"]) == ("nb", "main@pca-real", "auc"):
            v["mean"], v["sd"] = 0.5, 0.0
    import json

    (tmp_path / "moved.json").write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["check", str(run), "--baseline", str(tmp_path / "moved.json")]) == 1
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "regressed" in line and "nb" in line]
    assert lines and all("main@pca-real" in line for line in lines), out


def test_a_main_tasks_key_is_the_same_with_and_without_the_augmentation_experiment(h5ad):
    """A main task is scored without the rare class: adding the augmentation experiment to a run
    (which chooses one) reuses the main tasks a main-only run stored, and only the experiment's
    tasks carry the rare class."""
    common = dict(models=["nb"], datasets=[str(h5ad)], label_key="cell_type", seeds=[0],
                  metrics=["auc", "augmentation"])  # fmt: skip
    main_only = plan(RunSpec(**common, experiments=["main"]), write=False).tasks
    both = plan(RunSpec(**common, experiments=["main", "augmentation"]), write=False).tasks
    assert {t.key for t in main_only} == {t.key for t in both if t.experiment == "main"}
    aug = [t for t in both if t.experiment == "augmentation"]
    assert aug and all(t.rare_class is not None for t in aug)
    assert all(t.rare_class is None for t in both if t.experiment == "main")
