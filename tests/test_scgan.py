"""Unit tests of the scGAN / cscGAN TensorFlow 2 port (run on the host, need TensorFlow)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.conftest import import_tensorflow_lazily

tf = E = port = None  # set when a test runs, not at collection (tests/conftest.py)


@pytest.fixture(autouse=True)
def _tensorflow():
    import_tensorflow_lazily(globals())


TINY = {
    "latent_dim": 8,
    "gen_layers": [16, 32],
    "critic_layers": [32, 16],
    "batch_size": 16,
    "critic_iters": 5,
    "log_every": 1,
    "progress_every": 1000,
    "xla": False,  # fast unit tests; test_update_counts covers the XLA path
}


def tiny_data(n=64, g=20, seed=0, labels=("a", "b", "c")):
    rng = np.random.default_rng(seed)
    X = rng.gamma(0.5, 1.0, (n, g)).astype(np.float32)
    X = X / X.sum(1, keepdims=True) * 20_000
    lab = np.asarray(labels)[rng.integers(0, len(labels), n)]
    return X, lab


def test_plugin_defaults_match_entry_point():
    from bench.generators.scgan.plugin import MODEL_DEFAULTS

    assert MODEL_DEFAULTS == E.DEFAULTS


def test_layer_shapes_and_lsn():
    p = {**E.DEFAULTS}
    rng = np.random.default_rng(0)
    gen = port.nets.GeneratorNet(300, 4, p, rng)
    critic = port.nets.CriticNet(300, 4, p, rng)
    assert [tuple(w.shape) for w in gen.kernels] == [(128, 256), (256, 512), (512, 1024)]
    assert tuple(gen.out_w.shape) == (1024, 300) and tuple(gen.norms[0].gamma.shape) == (4, 256)
    assert [tuple(w.shape) for w in critic.ws] == [(300, 1024), (1024, 512), (512, 256)]
    assert tuple(critic.class_w.shape) == (4, 256) and tuple(critic.class_b.shape) == (4,)
    assert not hasattr(critic, "out_w")  # the original's per-class head has no shared term
    z = tf.random.normal((10, 128), seed=1)
    lab = tf.constant([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    x = gen(z, True, lab)
    assert x.shape == (10, 300)
    np.testing.assert_allclose(x.numpy().sum(1), 20_000, rtol=1e-5)
    assert critic(x, lab).shape == (10,)
    proj = port.nets.CriticNet(300, 4, {**p, "critic_head": "projection"}, rng)
    assert tuple(proj.out_w.shape) == (256, 1) and not hasattr(proj, "class_b")
    uncond = port.nets.CriticNet(300, 0, p, rng)
    assert uncond(x).shape == (10,)


def test_lsn_known_answer_and_zero_rows():
    x = tf.constant([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0], [2.0, 2.0, 4.0]])
    out = port.nets.library_size_normalise(x).numpy()
    np.testing.assert_allclose(out[0], [5000, 15000, 0], rtol=1e-6)
    np.testing.assert_array_equal(out[1], [0, 0, 0])
    np.testing.assert_allclose(out[2], [5000, 5000, 10000], rtol=1e-6)


def test_gradient_penalty_matches_hand_computation():
    rng = np.random.default_rng(3)
    p = {**E.DEFAULTS, "critic_layers": [3]}
    critic = port.nets.CriticNet(2, 0, p, rng)
    W0 = np.array([[1.0, -2.0, 0.5], [0.5, 1.0, -1.0]], np.float32)
    b0 = np.array([0.1, -0.2, 0.0], np.float32)
    w = np.array([[2.0], [-1.0], [3.0]], np.float32)
    critic.ws[0].assign(W0)
    critic.bs[0].assign(b0)
    critic.out_w.assign(w)
    real = np.array([[1.0, 2.0], [0.0, -1.0]], np.float32)
    fake = np.array([[3.0, 0.0], [2.0, 1.0]], np.float32)
    alpha = np.array([[0.25], [0.5]], np.float32)
    gp = float(port.nets.gradient_penalty(critic, tf.constant(real), tf.constant(fake), tf.constant(alpha)))
    xhat = real + alpha * (fake - real)
    expected = []
    for x in xhat:  # d/dx relu(x W0 + b0) . w = W0 @ (1[pre > 0] * w)
        mask = (x @ W0 + b0 > 0).astype(np.float32)
        grad = W0 @ (mask * w[:, 0])
        expected.append((np.linalg.norm(grad) - 1.0) ** 2)
    assert gp == pytest.approx(float(np.mean(expected)), rel=1e-5)


def test_learning_rate_schedule():
    f = lambda s: port.config.learning_rate(s, 1000, 1e-4, 1e-5)  # noqa: E731
    assert f(0) == pytest.approx(1e-4)
    assert f(500) == pytest.approx(math.sqrt(1e-4 * 1e-5))
    assert f(1000) == pytest.approx(1e-5)
    assert f(250) == pytest.approx(1e-4 * 0.1**0.25)
    assert float(
        port.config.learning_rate(tf.Variable(500, dtype=tf.int64), 1000, 1e-4, 1e-5)
    ) == pytest.approx(math.sqrt(1e-9), rel=1e-5)


def test_amsgrad_matches_numpy():
    var = tf.Variable([0.5, -1.0, 2.0])
    opt = port.nets.AMSGrad([var], beta1=0.5, beta2=0.9, epsilon=1e-8)
    grads = [np.array([1.0, -2.0, 0.1]), np.array([0.1, 3.0, -0.5]), np.array([-0.2, 0.1, 0.1])]
    x, m, v, vh = np.array([0.5, -1.0, 2.0]), np.zeros(3), np.zeros(3), np.zeros(3)
    for t, (g, lr) in enumerate(zip(grads, [1e-2, 5e-3, 1e-3], strict=True), start=1):
        opt.apply([tf.constant(g, tf.float32)], tf.constant(lr, tf.float32))
        m = 0.5 * m + 0.5 * g
        v = 0.9 * v + 0.1 * g**2
        vh = np.maximum(vh, v)
        x = x - lr * math.sqrt(1 - 0.9**t) / (1 - 0.5**t) * m / (np.sqrt(vh) + 1e-8)
        np.testing.assert_allclose(var.numpy(), x, rtol=1e-5, atol=1e-7)
    # v_hat kept the maximum: the third step's v is smaller than the second's in coordinate 1
    assert vh[1] > v[1]


def test_class_ratios_keyed_and_legacy_bug():
    labels = np.array(["a"] * 10 + ["b"] * 60 + ["c"] * 30)
    classes = ["a", "b", "c"]
    np.testing.assert_allclose(port.config.class_ratios(labels, classes, "keyed"), [0.1, 0.6, 0.3])
    # the original sorted ratios by value and gave them to indices 0..K-1: 'a' (10 %) gets 60 %
    np.testing.assert_allclose(port.config.class_ratios(labels, classes, "legacy"), [0.6, 0.3, 0.1])
    with pytest.raises(ValueError):
        port.config.class_ratios(labels, classes, "other")


def test_sampled_training_labels_follow_keyed_ratios():
    X, _ = tiny_data(100, 10)
    lab = np.array(["a"] * 10 + ["b"] * 60 + ["c"] * 30)
    _, rec = E.fit(X, lab, {**TINY, "max_steps": 1}, 0, progress=False)
    assert rec["classes"] == ["a", "b", "c"]
    np.testing.assert_allclose(rec["class_ratios"], [0.1, 0.6, 0.3])
    _, rec = E.fit(X, lab, {**TINY, "max_steps": 1, "label_ratios": "legacy"}, 0, progress=False)
    np.testing.assert_allclose(rec["class_ratios"], [0.6, 0.3, 0.1])


def test_batchnorm_moving_average_update():
    bn = port.nets.BatchNorm(2, decay=0.999, eps=1e-5)
    x = tf.constant([[1.0, 2.0], [3.0, 6.0], [5.0, 4.0]])
    out = bn(x, True).numpy()
    mean, var = np.array([3.0, 4.0]), np.array([8 / 3, 8 / 3])
    np.testing.assert_allclose(out, (x.numpy() - mean) / np.sqrt(var + 1e-5), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.001 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.moving_var.numpy(), 0.999 + 0.001 * var, rtol=1e-5)
    bn(x, True)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.999 * 0.001 * mean + 0.001 * mean, rtol=1e-5)
    mm, mv = bn.moving_mean.numpy(), bn.moving_var.numpy()
    inf = bn(x, False).numpy()  # inference: moving statistics, no update
    np.testing.assert_allclose(inf, (x.numpy() - mm) / np.sqrt(mv + 1e-5), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_mean.numpy(), mm)
    cbn = port.nets.BatchNorm(2, n_classes=2)
    cbn.gamma.assign([[1.0, 1.0], [2.0, 3.0]])
    cbn.beta.assign([[0.0, 0.0], [1.0, -1.0]])
    c = cbn(x, True, tf.constant([0, 1, 1])).numpy()
    xhat = (x.numpy() - mean) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(c[0], xhat[0], rtol=1e-5)
    np.testing.assert_allclose(c[1:], xhat[1:] * [2.0, 3.0] + [1.0, -1.0], rtol=1e-5)


def test_update_counts_with_and_without_extra_critic_update():
    X, lab = tiny_data()
    _, rec = E.fit(X, lab, {**TINY, "max_steps": 3, "xla": True}, 0, progress=False)
    assert (rec["critic_updates"], rec["generator_updates"]) == (1 + 6 + 6, 3)
    _, rec = E.fit(X, None, {**TINY, "max_steps": 3, "extra_critic_update": False}, 0, progress=False)
    assert (rec["critic_updates"], rec["generator_updates"]) == (15, 3)
    assert rec["history"]["step"] == [0, 1, 2]
    assert rec["history"]["lr"][0] == pytest.approx(1e-4)


def _workdir(tmp_path, conditional, n_cells, steps=3, labels=("a", "b", "c")):
    import anndata as ad

    X, lab = tiny_data(labels=labels)
    a = ad.AnnData(X=X)
    a.var_names = [f"g{i}" for i in range(X.shape[1])]
    a.obs["cell_type"] = lab
    a.write_h5ad(tmp_path / "train.h5ad")
    spec = {
        "conditional": conditional,
        "params": {**TINY, "max_steps": steps},
        "label_key": "cell_type",
        "seed": 5,
        "progress": False,
        "n_cells": n_cells,
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    return spec


def test_cscgan_generates_exact_counts_per_label(tmp_path):
    import anndata as ad

    _workdir(tmp_path, True, {"a": 7, "c": 130, "b": 0})
    E.main(["fit", str(tmp_path)])
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["steps"] == 3 and fit["train_seconds"] > 0
    E.main(["generate", str(tmp_path)])
    out = ad.read_h5ad(tmp_path / "generated.h5ad")
    assert out.n_obs == 137 and list(out.var_names) == [f"g{i}" for i in range(20)]
    assert out.obs["cell_type"].value_counts().to_dict() == {"a": 7, "b": 0, "c": 130}
    assert out.X.dtype == np.float32 and out.X.format == "csr"
    sums = np.asarray(out.X.sum(1)).ravel()
    assert np.all((np.abs(sums - 20_000) < 1) | (sums == 0))
    # the generation time measured in the entry point travels with the cells
    assert out.uns["scgenbench"]["generate_seconds"] > 0
    # same seed, same cells
    first = out.X.toarray()
    E.main(["generate", str(tmp_path)])
    np.testing.assert_array_equal(ad.read_h5ad(tmp_path / "generated.h5ad").X.toarray(), first)


def test_scgan_rejects_per_label_request_and_is_seeded(tmp_path):
    import anndata as ad

    _workdir(tmp_path, False, 50)
    E.main(["fit", str(tmp_path)])
    E.main(["generate", str(tmp_path)])
    out = ad.read_h5ad(tmp_path / "generated.h5ad")
    assert out.n_obs == 50 and "cell_type" not in out.obs
    model, cfg = E.load_model(tmp_path / "model")
    with pytest.raises(ValueError, match="unconditional"):
        E.generation_plan(model, {"a": 3}, 0, None)
    # training twice with the same seed gives the same weights
    m1, _ = E.fit(*tiny_data(), {**TINY, "max_steps": 2}, 11, progress=False)
    m2, _ = E.fit(*tiny_data(), {**TINY, "max_steps": 2}, 11, progress=False)
    np.testing.assert_array_equal(m1.gen.out_w.numpy(), m2.gen.out_w.numpy())


def test_budget_in_steps_epochs_and_minutes():
    X, lab = tiny_data(64)  # 64 cells; a step reads (5 + 1) batches of 16 = 96 cells
    assert E.resolve_budget({**E.DEFAULTS, "budget": "7 steps"}, 64) == (7, None)
    assert E.resolve_budget({**E.DEFAULTS, **TINY, "budget": "3 epochs"}, 64) == (2, None)  # ceil(192/96)
    assert E.resolve_budget({**E.DEFAULTS, "max_steps": 50}, 64) == (50, None)
    assert E.resolve_budget({**E.DEFAULTS, "budget": "0.5 minutes"}, 64) == (1_000_000, 30.0)
    _, rec = E.fit(X, lab, {**TINY, "budget": "3 epochs"}, 0, progress=False)
    assert rec["steps"] == 2 and rec["cells_seen"] == (1 + 6) * 16
    # a minutes budget stops training on time; max_steps only sets the learning-rate horizon
    _, rec = E.fit(X, lab, {**TINY, "max_steps": 10**6, "budget": "0.02 minutes"}, 0, progress=False)
    assert (
        1 <= rec["steps"] < 10**6 and rec["train_seconds"] < 30 and rec["time_limit_s"] == pytest.approx(1.2)
    )


def test_fit_writes_convergence_snapshots(tmp_path):
    import anndata as ad

    spec = _workdir(tmp_path, True, 10, steps=8)
    spec["snapshots"] = {"fractions": [0.125, 0.25, 0.5, 1.0], "n_cells": 30}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    E.main(["fit", str(tmp_path)])
    index = json.loads((tmp_path / "snapshots" / "index.json").read_text())
    assert [s["step"] for s in index] == [1, 2, 4, 8]
    assert [s["cells_seen"] for s in index] == [16, 16 * 7, 16 * 19, 16 * 43]
    first = ad.read_h5ad(tmp_path / "snapshots" / index[0]["file"])
    assert first.n_obs == 30 and list(first.var_names) == [f"g{i}" for i in range(20)]
    assert set(first.obs["cell_type"]) <= {"a", "b", "c"}
    # snapshots leave training untouched: the same fit without them ends in the same model
    fit = json.loads((tmp_path / "fit.json").read_text())
    spec["snapshots"] = None
    other = tmp_path / "other"
    other.mkdir()
    (other / "spec.json").write_text(json.dumps(spec))
    (other / "train.h5ad").write_bytes((tmp_path / "train.h5ad").read_bytes())
    E.main(["fit", str(other)])
    assert json.loads((other / "fit.json").read_text())["history"] == fit["history"]
    assert not (other / "snapshots").exists()


def test_the_image_gets_every_file_of_the_port():
    """The build files (what the image's tag hashes and the build is sent) and the Dockerfile's COPY
    hold every module of the port, and entry.py runs as a script outside the package (as in the
    image and as backend 'process'): its imports resolve beside it."""
    import subprocess
    import sys
    from pathlib import Path

    from bench.generators.scgan.plugin import ScGAN

    here = Path(ScGAN.build_context)
    port = sorted(str(p.relative_to(here)) for p in (here / "scgan_tf").glob("*.py"))
    assert len(port) >= 6 and set(port) <= set(ScGAN.build_files)
    dockerfile = (here / "Dockerfile").read_text().replace("\\\n", " ")
    copy = next(line for line in dockerfile.splitlines() if line.startswith("COPY scgan_tf/"))
    assert sorted(copy.split()[1:-1]) == port and copy.split()[-1] == "/opt/scgan/scgan_tf/"
    proc = subprocess.run([sys.executable, str(here / ScGAN.entry_point), "--help"], capture_output=True,
                          text=True, timeout=120, cwd=str(here.parent))  # fmt: skip
    assert proc.returncode == 0 and "fit" in proc.stdout, proc.stderr
