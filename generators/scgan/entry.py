"""scGAN / cscGAN (Marouf et al. 2020) in TensorFlow 2: the entry point that runs inside the image.

Commands (WORKDIR holds the run's files; nothing else is read or written)::

    python entry.py fit WORKDIR        # train.h5ad + spec.json  -> model/ + fit.json (+ snapshots/)
    python entry.py generate WORKDIR   # model/ + spec.json      -> generated.h5ad

``spec.json``: ``{"conditional": bool, "params": {...}, "label_key": str, "seed": int,
"device": "cpu" | "cuda", "progress": bool, "n_cells": int | {label: int}, "generate_seed": int,
"chunk": int, "snapshots": {"fractions": [...], "n_cells": int} | null}``. With ``snapshots``, fit
writes ``snapshots/step-<k>.h5ad`` (``n_cells`` generated cells after step k, for k at each
fraction of ``max_steps``) and ``snapshots/index.json``; the harness scores them (convergence).
``generated.h5ad`` carries the generation time measured here in ``uns['scgenbench']``.

Dependencies: TensorFlow 2, anndata, numpy, h5py (scipy comes with anndata). This module must not
import the harness (``bench``): the image does not install it.

Faithfulness notes (reference: imsb-uke/scGAN, TF 1.8; see docs/models/scgan.md):

* generator z(128) -> [256, 512, 1024] bias-free linear (Xavier) + custom batch norm (batch moments,
  eps 1e-5, moving averages with decay 0.999 updated on every training-mode pass) + ReLU -> dense ReLU
  -> library-size normalisation (LSN) of every cell to 20,000; cscGAN: conditional BN (per-class
  scale and offset, shared batch statistics);
* critic [1024, 512, 256] dense + ReLU -> 1; cscGAN: per-class head h.W[c] + b[c] without a shared term
  (the original), or Miyato's projection (shared linear + h.W[c]) as an option;
* WGAN-GP (lambda 10), the interpolate built from a second generator pass on the same z conditioned on
  the real labels; AMSGrad (beta1 0.5, beta2 0.9, eps 1e-8) for both nets; learning rate
  1e-4 * (1e-5/1e-4)^(step/max_steps) (continuous); batch 128; 5 critic updates per step plus the
  original's extra critic update on the generator's batch (6:1, step 0 does 1:1);
* cscGAN training labels drawn from the class ratios keyed by label (the original sorted the ratios by
  value and assigned them to label indices 0..K-1: ``label_ratios="legacy"``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

LIBRARY_SIZE = 20_000.0
FLOAT_EPS = float(np.finfo(np.float32).eps)

DEFAULTS: dict[str, Any] = {
    "latent_dim": 128,
    "gen_layers": [256, 512, 1024],
    "critic_layers": [1024, 512, 256],
    "output_lsn": LIBRARY_SIZE,  # None: no library-size normalisation of the generator output
    "lambd": 10.0,
    "lr_initial": 1e-4,
    "lr_final": 1e-5,
    "beta1": 0.5,
    "beta2": 0.9,
    "epsilon": 1e-8,
    "batch_size": 128,
    "critic_iters": 5,
    "max_steps": 1_000_000,
    # None: max_steps; "N steps" sets max_steps; "N epochs" = N passes of the training cells through
    # the critic (each step reads (critic_iters + 1) batches); "N minutes" stops training after that
    # much time (max_steps then only sets the learning-rate decay's horizon)
    "budget": None,
    "extra_critic_update": True,  # the original: one more critic update per step (6:1)
    "bn_decay": 0.999,
    "bn_eps": 1e-5,
    "critic_head": "per_class",  # cscGAN: "per_class" (the original) | "projection" (Miyato & Koyama)
    "label_ratios": "keyed",  # cscGAN: "keyed" (fixed) | "legacy" (the original's ordering bug)
    "log_every": 10,  # loss history every N steps
    "progress_every": 100,  # a progress line every N steps
    "xla": True,  # compile the critic and generator updates with XLA (~15-25 % faster on CPU)
}


# -- small pieces (pure, unit-tested) -------------------------------------------------------------
def natural_key(s: str) -> list[Any]:
    """Sort key that orders '2' before '10' (the original's natsorted cluster categories)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(s))]


def resolve_budget(p: dict[str, Any], n_cells: int) -> tuple[int, float | None]:
    """(max_steps, time limit in seconds or None) of the params' ``budget`` for ``n_cells`` cells."""
    budget = p.get("budget")
    if not budget:
        return int(p["max_steps"]), None
    amount, unit = str(budget).split()
    amount = float(amount)
    if unit == "steps":
        return max(1, round(amount)), None
    if unit == "epochs":
        per_step = (int(p["critic_iters"]) + 1) * int(p["batch_size"])
        return max(1, math.ceil(amount * n_cells / per_step)), None
    if unit == "minutes":
        return int(p["max_steps"]), amount * 60.0
    raise ValueError(f"unknown budget unit {unit!r}")


def learning_rate(step: int | tf.Tensor, max_steps: int, lr_initial: float, lr_final: float):
    """lr(step) = lr_initial * (lr_final / lr_initial) ** (step / max_steps), continuous decay."""
    rate = lr_final / lr_initial
    if tf.is_tensor(step) or isinstance(step, tf.Variable):
        return lr_initial * tf.pow(rate, tf.cast(step, tf.float32) / float(max_steps))
    return lr_initial * rate ** (step / max_steps)


def class_ratios(labels: np.ndarray, classes: list[str], mode: str = "keyed") -> np.ndarray:
    """Probability of drawing each class index (order of ``classes``) as a generated label.

    ``keyed``: the fraction of training cells with that label. ``legacy``: the original scGAN code,
    which sorted the fractions by value (descending) and gave them to indices 0..K-1 regardless of
    which label each fraction belonged to.
    """
    labels = np.asarray(labels).astype(str)
    frac = np.array([np.mean(labels == c) for c in classes], dtype=np.float64)
    if mode == "keyed":
        return frac
    if mode == "legacy":
        return np.sort(frac)[::-1].copy()
    raise ValueError(f"label_ratios must be 'keyed' or 'legacy', not {mode!r}")


def glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int, shape=None) -> np.ndarray:
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape or (fan_in, fan_out)).astype(np.float32)


def variance_scaling_fan_avg(rng: np.random.Generator, fan_in: int, fan_out: int, factor: float = 2.0):
    """tf.contrib variance_scaling_initializer(factor=2.0, mode='FAN_AVG', uniform=False): truncated
    normal (cut at 2 sd) with sd sqrt(1.3 * factor / n), n = (fan_in + fan_out) / 2."""
    sd = math.sqrt(1.3 * factor / ((fan_in + fan_out) / 2.0))
    out = rng.standard_normal((fan_in, fan_out))
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2
    return (out * sd).astype(np.float32)


def library_size_normalise(x: tf.Tensor, target: float = LIBRARY_SIZE) -> tf.Tensor:
    """Scale every row to sum to ``target`` (rows summing to 0 stay 0): x * target / (sum + eps)."""
    return x * (target / (tf.reduce_sum(x, axis=1, keepdims=True) + FLOAT_EPS))


# -- layers -----------------------------------------------------------------------------------
class BatchNorm(tf.Module):
    """The original's batch norm: batch moments over axis 0 in training mode (and moving averages
    updated with ``decay`` on every training pass), moving statistics at inference. With
    ``n_classes`` > 0 it is conditional: scale and offset are looked up per class (Dumoulin et al.)."""

    def __init__(self, dim: int, n_classes: int = 0, decay: float = 0.999, eps: float = 1e-5, name=None):
        super().__init__(name=name)
        shape = (n_classes, dim) if n_classes else (dim,)
        self.conditional = n_classes > 0
        self.decay, self.eps = decay, eps
        self.gamma = tf.Variable(tf.ones(shape), name="gamma")
        self.beta = tf.Variable(tf.zeros(shape), name="beta")
        self.moving_mean = tf.Variable(tf.zeros(dim), trainable=False, name="moving_mean")
        self.moving_var = tf.Variable(tf.ones(dim), trainable=False, name="moving_var")

    def __call__(self, x, training: bool, labels=None):
        if training:
            mean, var = tf.nn.moments(x, axes=[0])
            self.moving_mean.assign(self.decay * self.moving_mean + (1.0 - self.decay) * mean)
            self.moving_var.assign(self.decay * self.moving_var + (1.0 - self.decay) * var)
        else:
            mean, var = self.moving_mean, self.moving_var
        xhat = (x - mean) * tf.math.rsqrt(var + self.eps)
        if self.conditional:
            return xhat * tf.gather(self.gamma, labels) + tf.gather(self.beta, labels)
        return xhat * self.gamma + self.beta


class GeneratorNet(tf.Module):
    def __init__(self, n_genes: int, n_classes: int, p: dict[str, Any], rng: np.random.Generator):
        super().__init__(name="gen")
        self.lsn = p["output_lsn"]
        self.kernels, self.norms = [], []
        fan_in = p["latent_dim"]
        for i, width in enumerate(p["gen_layers"]):
            self.kernels.append(tf.Variable(glorot_uniform(rng, fan_in, width), name=f"W{i}"))
            self.norms.append(BatchNorm(width, n_classes, p["bn_decay"], p["bn_eps"], name=f"bn{i}"))
            fan_in = width
        self.out_w = tf.Variable(variance_scaling_fan_avg(rng, fan_in, n_genes), name="W_out")
        self.out_b = tf.Variable(tf.zeros(n_genes), name="b_out")

    def __call__(self, z, training: bool, labels=None):
        h = z
        for w, bn in zip(self.kernels, self.norms, strict=True):
            h = tf.nn.relu(bn(tf.matmul(h, w), training, labels))
        x = tf.nn.relu(tf.matmul(h, self.out_w) + self.out_b)
        return library_size_normalise(x, self.lsn) if self.lsn else x


class CriticNet(tf.Module):
    def __init__(self, n_genes: int, n_classes: int, p: dict[str, Any], rng: np.random.Generator):
        super().__init__(name="critic")
        self.head = p["critic_head"] if n_classes else "unconditional"
        if self.head not in ("unconditional", "per_class", "projection"):
            raise ValueError(f"critic_head must be 'per_class' or 'projection', not {self.head!r}")
        self.ws, self.bs = [], []
        fan_in = n_genes
        for i, width in enumerate(p["critic_layers"]):
            self.ws.append(tf.Variable(variance_scaling_fan_avg(rng, fan_in, width), name=f"W{i}"))
            self.bs.append(tf.Variable(tf.zeros(width), name=f"b{i}"))
            fan_in = width
        if self.head in ("unconditional", "projection"):
            self.out_w = tf.Variable(glorot_uniform(rng, fan_in, 1), name="W_out")
            self.out_b = tf.Variable(tf.zeros(1), name="b_out")
        if self.head in ("per_class", "projection"):
            self.class_w = tf.Variable(
                glorot_uniform(rng, fan_in, 1, shape=(n_classes, fan_in)), name="W_class"
            )
        if self.head == "per_class":
            self.class_b = tf.Variable(tf.zeros(n_classes), name="b_class")

    def __call__(self, x, labels=None):
        h = x
        for w, b in zip(self.ws, self.bs, strict=True):
            h = tf.nn.relu(tf.matmul(h, w) + b)
        if self.head == "unconditional":
            return tf.squeeze(tf.matmul(h, self.out_w) + self.out_b, axis=1)
        proj = tf.reduce_sum(h * tf.gather(self.class_w, labels), axis=1)
        if self.head == "per_class":
            return proj + tf.gather(self.class_b, labels)
        return tf.squeeze(tf.matmul(h, self.out_w) + self.out_b, axis=1) + proj


class AMSGrad(tf.Module):
    """AMSGrad (Reddi et al. 2018) as the original used it: m, v as Adam, v_hat = max(v_hat, v),
    step lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v_hat) + eps)."""

    def __init__(self, variables, beta1=0.5, beta2=0.9, epsilon=1e-8, name=None):
        super().__init__(name=name)
        self.variables_ = list(variables)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.t = tf.Variable(0.0, trainable=False, name="t")
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables_]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables_]
        self.vhat = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables_]

    def apply(self, grads, lr):
        t = self.t.assign_add(1.0)
        lr_t = lr * tf.sqrt(1.0 - tf.pow(self.beta2, t)) / (1.0 - tf.pow(self.beta1, t))
        for var, g, m, v, vh in zip(self.variables_, grads, self.m, self.v, self.vhat, strict=True):
            g = tf.convert_to_tensor(g)
            m.assign(self.beta1 * m + (1.0 - self.beta1) * g)
            v.assign(self.beta2 * v + (1.0 - self.beta2) * tf.square(g))
            vh.assign(tf.maximum(vh, v))
            var.assign_sub(lr_t * m / (tf.sqrt(vh) + self.epsilon))


def gradient_penalty(critic: CriticNet, real, fake, alpha, labels=None):
    """mean((||grad_xhat D(xhat)||_2 - 1)^2) at xhat = real + alpha * (fake - real)."""
    xhat = real + alpha * (fake - real)
    with tf.GradientTape() as tape:
        tape.watch(xhat)
        d = critic(xhat, labels)
    g = tape.gradient(d, xhat)
    slopes = tf.sqrt(tf.reduce_sum(tf.square(g), axis=1))
    return tf.reduce_mean(tf.square(slopes - 1.0))


# -- the model ----------------------------------------------------------------------------------
class ScGANModel(tf.Module):
    def __init__(self, n_genes: int, classes: list[str] | None, params: dict[str, Any], seed: int):
        super().__init__(name="scgan")
        self.p = {**DEFAULTS, **params}
        self.classes = list(classes) if classes else []
        self.conditional = bool(self.classes)
        self.n_genes = n_genes
        rng = np.random.default_rng(seed)
        k = len(self.classes)
        self.gen = GeneratorNet(n_genes, k, self.p, rng)
        self.critic = CriticNet(n_genes, k, self.p, rng)
        p = self.p
        self.opt_d = AMSGrad(
            self.critic.trainable_variables, p["beta1"], p["beta2"], p["epsilon"], name="opt_d"
        )
        self.opt_g = AMSGrad(self.gen.trainable_variables, p["beta1"], p["beta2"], p["epsilon"], name="opt_g")
        self.rng = tf.random.Generator.from_seed(seed + 1)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        jit = bool(self.p.get("xla", True))
        self._critic_fn = XlaFunction(self.critic_update, jit, "critic update")
        self._gen_fn = XlaFunction(self.generator_update, jit, "generator update")
        self._generate = tf.function(self._generate_impl)

    def _labels(self, labels):
        return labels if self.conditional else None

    def critic_update(self, real, real_lab, fake_lab, z, lr):
        p = self.p
        fake = self.gen(z, True, self._labels(fake_lab))
        fake_for_gp = self.gen(z, True, self._labels(real_lab))  # the original's second generator pass
        alpha = self.rng.uniform((tf.shape(real)[0], 1))
        with tf.GradientTape() as tape:
            d_real = self.critic(real, self._labels(real_lab))
            d_fake = self.critic(fake, self._labels(fake_lab))
            gp = gradient_penalty(self.critic, real, fake_for_gp, alpha, self._labels(real_lab))
            wdist = tf.reduce_mean(d_real) - tf.reduce_mean(d_fake)
            loss = -wdist + p["lambd"] * gp
        grads = tape.gradient(loss, self.critic.trainable_variables)
        self.opt_d.apply(grads, lr)
        return loss, gp, wdist

    def generator_update(self, z, fake_lab, lr):
        with tf.GradientTape() as tape:
            fake = self.gen(z, True, self._labels(fake_lab))
            loss = -tf.reduce_mean(self.critic(fake, self._labels(fake_lab)))
        grads = tape.gradient(loss, self.gen.trainable_variables)
        self.opt_g.apply(grads, lr)
        return loss

    def train_step(self, real, real_lab, fake_lab, gen_lab):
        """One outer step: ``real.shape[0]`` critic updates, then one generator update. With the
        extra critic update, the generator reuses the last critic update's z and labels. The two
        updates are separate tf.functions (traced once each; a Python loop drives them)."""
        p = self.p
        lr = learning_rate(self.step, p["max_steps"], p["lr_initial"], p["lr_final"])
        batch = real.shape[1]
        z = None
        for i in range(real.shape[0]):
            z = self.rng.normal((batch, p["latent_dim"]))
            d_loss, gp, wdist = self._critic_fn(real[i], real_lab[i], fake_lab[i], z, lr)
        if not p["extra_critic_update"]:
            z = self.rng.normal((batch, p["latent_dim"]))
        g_loss = self._gen_fn(z, gen_lab, lr)
        self.step.assign_add(1)
        return d_loss, g_loss, gp, wdist, lr

    def _generate_impl(self, z, labels):
        return self.gen(z, False, self._labels(labels))

    def generate(self, n: int, labels: np.ndarray | None, rng: tf.random.Generator, chunk: int = 10_000):
        """``n`` cells (dense float32), ``labels`` class indices per cell for cscGAN."""
        out = []
        for start in range(0, n, chunk):
            k = min(chunk, n - start)
            z = rng.normal((k, self.p["latent_dim"]))
            lab = tf.constant(labels[start : start + k] if labels is not None else np.zeros(k, np.int32))
            out.append(self._generate(z, tf.cast(lab, tf.int32)).numpy())
        return np.concatenate(out, axis=0) if out else np.zeros((0, self.n_genes), np.float32)

    def checkpoint(self) -> tf.train.Checkpoint:
        return tf.train.Checkpoint(
            gen=self.gen, critic=self.critic, opt_g=self.opt_g, opt_d=self.opt_d, rng=self.rng, step=self.step
        )


# -- training loop ----------------------------------------------------------------------------
def _log(msg: str) -> None:
    print(msg, flush=True)


USER_ERROR_FILE = "user_error.json"  # a mistake the user can fix: the harness reports it (exit 2)
USER_ERROR_EXIT = 2


class UserMistake(Exception):
    """A run the user asked for that cannot be done here (e.g. ``cuda`` where TensorFlow sees no
    GPU): ``main`` writes ``user_error.json`` ({"message", "fix"}) and exits 2; the harness turns it
    into its one-line UserError."""

    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.message, self.fix = message, fix


def configure_device(device: str) -> dict[str, Any]:
    """Make TensorFlow use what the task asked for and return what it uses: ``device`` ("cuda" or
    "cpu"), the GPUs' names, whether this TensorFlow is built with CUDA. On ``cuda``: every visible
    GPU (the harness passes only the task's) with memory growth on; no GPU is a UserMistake, never a
    silent CPU run. On ``cpu``: GPUs hidden from TensorFlow."""
    gpus = tf.config.list_physical_devices("GPU")
    info: dict[str, Any] = {
        "device": "cpu",
        "gpus": [],
        "tensorflow_cuda": bool(tf.test.is_built_with_cuda()),
    }
    if device == "cuda":
        if not gpus:
            built = "is built with CUDA" if info["tensorflow_cuda"] else "is a CPU-only build"
            raise UserMistake(
                f"device 'cuda' was asked for but TensorFlow {tf.__version__} in this image sees no GPU "
                f"(it {built}; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')})",
                "run on a machine with an NVIDIA GPU and the NVIDIA container toolkit (the GPU image "
                "variant is built for --device cuda), or use --device cpu",
            )
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)  # share the GPU; allocate as needed
        info["device"] = "cuda"
        info["gpus"] = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
        return info
    if gpus:
        tf.config.set_visible_devices([], "GPU")
    return info


# errors with which XLA refuses to compile a function (missing kernels, ptxas/libdevice on a GPU)
_XLA_ERRORS = (
    tf.errors.InvalidArgumentError,
    tf.errors.UnimplementedError,
    tf.errors.InternalError,
    tf.errors.UnknownError,
    tf.errors.NotFoundError,
)


class XlaFunction:
    """``tf.function(fn, jit_compile=jit)``; when the first call cannot be compiled by XLA, a
    warning is logged and ``fn`` runs (now and from then on) as a plain tf.function. Only the first
    call falls back: later errors are real errors. ``fallback`` holds the reason, if any."""

    def __init__(self, fn, jit: bool, what: str):
        self.fn, self.jit, self.what = fn, bool(jit), what
        self.compiled = tf.function(fn, jit_compile=self.jit)
        self.fallback: str | None = None
        self._first = True

    def __call__(self, *args):
        if not self._first:
            return self.compiled(*args)
        self._first = False
        try:
            return self.compiled(*args)
        except _XLA_ERRORS as exc:
            if not self.jit:
                raise
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            _log(f"warning: XLA cannot compile the {self.what} ({reason}); continuing without XLA")
            self.jit, self.fallback = False, reason
            self.compiled = tf.function(self.fn, jit_compile=False)
            return self.compiled(*args)


def fit(
    X,
    labels: np.ndarray | None,
    params: dict[str, Any],
    seed: int,
    *,
    progress: bool = True,
    on_step=None,
) -> tuple[ScGANModel, dict[str, Any]]:
    """Train on ``X`` (cells x genes, CSR or dense, library-size normalised) and return the model and
    the fit record (train_seconds, steps, cells_seen, history). ``on_step(model, steps_done,
    cells_seen, train_seconds, last)``, when given, is called after every step and returns the
    seconds it spent (left out of ``train_seconds``)."""
    import scipy.sparse as sp

    tf.random.set_seed(seed)
    np.random.seed(seed % 2**32)
    p = {**DEFAULTS, **params}
    p["max_steps"], time_limit = resolve_budget(p, X.shape[0])
    classes = sorted({str(x) for x in labels}, key=natural_key) if labels is not None else None
    model = ScGANModel(X.shape[1], classes, p, seed)
    rng = np.random.default_rng(seed)
    n, B = X.shape[0], int(p["batch_size"])
    X = sp.csr_matrix(X, dtype=np.float32) if sp.issparse(X) else np.asarray(X, dtype=np.float32)
    if n < B:
        raise ValueError(f"{n} training cells, fewer than one batch of {B}; lower batch_size")
    lab_idx = None
    probs = None
    if classes:
        index = {c: i for i, c in enumerate(classes)}
        lab_idx = np.array([index[str(x)] for x in labels], dtype=np.int32)
        probs = class_ratios(labels, classes, p["label_ratios"])
    order, pos = rng.permutation(n), 0

    def next_rows(k: int) -> np.ndarray:
        nonlocal order, pos
        rows = []
        while k > 0:  # shuffled epochs, as the original's shuffling queue over infinite epochs
            take = min(k, n - pos)
            rows.append(order[pos : pos + take])
            pos += take
            k -= take
            if pos == n:
                order, pos = rng.permutation(n), 0
        return np.concatenate(rows)

    def sample_labels(shape) -> np.ndarray:
        if probs is None:
            return np.zeros(shape, np.int32)
        return rng.choice(len(probs), size=shape, p=probs / probs.sum()).astype(np.int32)

    history: dict[str, list[float]] = {
        k: [] for k in ("step", "critic_loss", "gen_loss", "gp", "wdist", "lr")
    }
    max_steps = int(p["max_steps"])
    n_critic = n_gen = 0
    paused = 0.0
    start = time.perf_counter()
    steps_done = 0
    for step in range(max_steps):
        k = (
            (int(p["critic_iters"]) + 1 if step > 0 else 1)
            if p["extra_critic_update"]
            else int(p["critic_iters"])
        )
        rows = next_rows(k * B)
        real = X[rows]
        real = real.toarray() if sp.issparse(real) else real
        real = real.reshape(k, B, -1)
        real_lab = (lab_idx[rows] if lab_idx is not None else np.zeros(k * B, np.int32)).reshape(k, B)
        fake_lab = sample_labels((k, B))
        gen_lab = fake_lab[-1] if p["extra_critic_update"] else sample_labels((B,))
        d_loss, g_loss, gp, wdist, lr = model.train_step(
            tf.constant(real), tf.constant(real_lab), tf.constant(fake_lab), tf.constant(gen_lab)
        )
        n_critic += k
        n_gen += 1
        steps_done = step + 1
        trained = time.perf_counter() - start - paused
        last = step == max_steps - 1 or (time_limit is not None and trained >= time_limit)
        if step % int(p["log_every"]) == 0 or last:
            vals = [float(v) for v in (d_loss, g_loss, gp, wdist, lr)]
            if not all(math.isfinite(v) for v in vals[:4]):
                raise FloatingPointError(f"non-finite loss at step {step}: {vals}")
            for key, v in zip(("critic_loss", "gen_loss", "gp", "wdist", "lr"), vals, strict=True):
                history[key].append(v)
            history["step"].append(step)
        if on_step is not None:
            paused += on_step(model, step + 1, n_critic * B, trained, last)
        if progress and (step % int(p["progress_every"]) == 0 or last):
            el = time.perf_counter() - start - paused
            _log(
                f"step {step + 1}/{max_steps}  critic {float(d_loss):.4f}  gen {float(g_loss):.4f}  "
                f"gp {float(gp):.4f}  lr {float(lr):.3g}  {(step + 1) / max(el, 1e-9):.2f} steps/s"
            )
        if last:
            break
    train_seconds = time.perf_counter() - start - paused
    record = {
        "train_seconds": train_seconds,
        "steps": steps_done,
        "cells_seen": n_critic * B,
        "max_steps": max_steps,
        "time_limit_s": time_limit,
        "critic_updates": n_critic,
        "generator_updates": n_gen,
        "history": history,
        "classes": classes,
        "class_ratios": probs.tolist() if probs is not None else None,
        "tensorflow": tf.__version__,
        # XLA as it ran: asked for and compiled, or fallen back (with the reason)
        "xla": model._critic_fn.jit and model._gen_fn.jit,
        "xla_fallback": model._critic_fn.fallback or model._gen_fn.fallback,
    }
    return model, record


def save_model(model: ScGANModel, path: Path, extra: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    model.checkpoint().write(str(path / "ckpt"))
    params = json.loads(json.dumps(dict(model.p), default=list))  # tf.Module wraps dicts and lists
    config = {"n_genes": model.n_genes, "classes": list(model.classes), "params": params, **extra}
    (path / "config.json").write_text(json.dumps(config))


def load_model(path: Path) -> tuple[ScGANModel, dict[str, Any]]:
    config = json.loads((path / "config.json").read_text())
    model = ScGANModel(config["n_genes"], config["classes"] or None, config["params"], config.get("seed", 0))
    model.checkpoint().read(str(path / "ckpt")).expect_partial()
    return model, config


def generation_plan(model: ScGANModel, n_cells, seed: int, ratios: list[float] | None) -> np.ndarray | None:
    """Class index per generated cell: exactly the requested count per label for a dict request;
    drawn by the training class ratios for an integer request to a conditional model."""
    if not model.conditional:
        if isinstance(n_cells, dict):
            raise ValueError("scGAN is unconditional: request an integer number of cells")
        return None
    index = {c: i for i, c in enumerate(model.classes)}
    if isinstance(n_cells, dict):
        unknown = sorted(set(map(str, n_cells)) - set(index))
        if unknown:
            raise ValueError(f"labels {unknown} were not in the training data ({model.classes})")
        return np.concatenate(
            [np.full(int(v), index[str(k)], np.int32) for k, v in n_cells.items()] + [np.zeros(0, np.int32)]
        )
    probs = np.asarray(ratios if ratios is not None else np.ones(len(model.classes)), dtype=np.float64)
    return (
        np.random.default_rng(seed)
        .choice(len(probs), size=int(n_cells), p=probs / probs.sum())
        .astype(np.int32)
    )


# -- commands ---------------------------------------------------------------------------------------
def _read_spec(workdir: Path) -> dict[str, Any]:
    return json.loads((workdir / "spec.json").read_text())


def cmd_fit(workdir: Path) -> None:
    import anndata as ad

    spec = _read_spec(workdir)
    device = configure_device(spec.get("device", "cpu"))
    adata = ad.read_h5ad(workdir / "train.h5ad")
    label_key = spec.get("label_key")
    labels = None
    if spec.get("conditional"):
        if not label_key or label_key not in adata.obs:
            raise SystemExit(f"cscGAN needs labels: obs[{label_key!r}] is missing from train.h5ad")
        labels = adata.obs[label_key].astype(str).to_numpy()
    _log(
        f"scGAN fit: {adata.n_obs} cells x {adata.n_vars} genes, conditional={bool(labels is not None)}, "
        f"device {device['device']} {device['gpus'] or ''}, tensorflow {tf.__version__}"
    )
    seed = int(spec.get("seed", 0))
    params = spec.get("params", {})
    max_steps, time_limit = resolve_budget({**DEFAULTS, **params}, adata.n_obs)
    on_step = snapshot_writer(workdir, spec, adata, labels, max_steps, time_limit, seed)
    model, record = fit(adata.X, labels, params, seed, progress=spec.get("progress", True), on_step=on_step)
    save_model(
        model,
        workdir / "model",
        {
            "seed": seed,
            "label_key": label_key,
            "var_names": [str(v) for v in adata.var_names],
            "class_ratios": record["class_ratios"],
        },
    )
    record.update(device)  # the device actually used, its GPUs, whether TensorFlow has CUDA
    (workdir / "fit.json").write_text(json.dumps(record))
    _log(f"fit done: {record['steps']} steps in {record['train_seconds']:.1f}s")


def snapshot_steps(fractions, max_steps: int) -> list[int]:
    """Steps (1-based) at the given fractions of the budget, as the harness's FitContext does."""
    return sorted({min(max_steps, max(1, round(f * max_steps))) for f in fractions}) if max_steps > 0 else []


def snapshot_writer(
    workdir: Path, spec: dict[str, Any], adata, labels, max_steps: int, time_limit: float | None, seed: int
):
    """The ``on_step`` hook that writes the snapshots the harness asked for (None when it asked none):
    at fractions of ``max_steps``, or of ``time_limit`` seconds under a minutes budget, and always
    at the last step."""
    snap = spec.get("snapshots")
    if not snap or not snap.get("fractions") or int(snap.get("n_cells", 0)) < 1:
        return None
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    if time_limit is None:
        todo = snapshot_steps(snap["fractions"], int(max_steps))
    else:
        todo = sorted(f * time_limit for f in snap["fractions"])
    folder = workdir / "snapshots"
    folder.mkdir(parents=True, exist_ok=True)
    index: list[dict[str, Any]] = []
    ratios = None
    if labels is not None:
        classes = sorted({str(x) for x in labels}, key=natural_key)
        ratios = [float(np.mean(labels == c)) for c in classes]

    def on_step(model, steps_done: int, cells_seen: int, train_seconds: float, last: bool) -> float:
        reached = steps_done if time_limit is None else train_seconds
        if not todo or not (reached >= todo[0] or last):
            return 0.0
        while todo and (reached >= todo[0] or last):  # one snapshot, however many fractions passed
            todo.pop(0)
        start = time.perf_counter()
        n = int(snap["n_cells"])
        lab = generation_plan(model, n, seed + steps_done, ratios)
        X = model.generate(n, lab, tf.random.Generator.from_seed(seed + 7919 * steps_done))
        out = ad.AnnData(X=sp.csr_matrix(X, dtype=np.float32))
        out.obs_names = [f"snap-{i}" for i in range(n)]
        out.var_names = [str(v) for v in adata.var_names]
        if lab is not None:
            key = spec.get("label_key") or "label"
            out.obs[key] = pd.Categorical(np.asarray(model.classes, dtype=object)[lab].astype(str))
        name = f"step-{steps_done}.h5ad"
        out.write_h5ad(folder / name)
        index.append(
            {"step": steps_done, "cells_seen": cells_seen, "train_seconds": train_seconds, "file": name}
        )
        (folder / "index.json").write_text(json.dumps(index))
        return time.perf_counter() - start

    return on_step


def cmd_generate(workdir: Path) -> None:
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    spec = _read_spec(workdir)
    configure_device(spec.get("device", "cpu"))
    model, config = load_model(workdir / "model")
    seed = int(spec.get("generate_seed", spec.get("seed", 0)))
    n_cells = spec["n_cells"]
    chunk = int(spec.get("chunk", 10_000))
    rng = tf.random.Generator.from_seed(seed)
    start = time.perf_counter()
    lab = generation_plan(model, n_cells, seed, config.get("class_ratios"))
    n = int(sum(n_cells.values())) if isinstance(n_cells, dict) else int(n_cells)
    X = sp.csr_matrix(model.generate(n, lab, rng, chunk), dtype=np.float32)
    seconds = time.perf_counter() - start
    out = ad.AnnData(X=X)
    out.obs_names = [f"gen-{i}" for i in range(n)]
    out.var_names = config["var_names"]
    if lab is not None:
        key = spec.get("label_key") or config.get("label_key") or "label"
        names = np.asarray(model.classes, dtype=object)[lab] if n else np.array([], dtype=object)
        out.obs[key] = pd.Categorical(names.astype(str), categories=model.classes)
    out.uns["scgenbench"] = {"generate_seconds": seconds}
    out.write_h5ad(workdir / "generated.h5ad")
    _log(f"generated {n} cells in {seconds:.2f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["fit", "generate"])
    parser.add_argument("workdir", type=Path)
    args = parser.parse_args(argv)
    (args.workdir / USER_ERROR_FILE).unlink(missing_ok=True)
    try:
        if args.command == "fit":
            cmd_fit(args.workdir)
        else:
            cmd_generate(args.workdir)
    except UserMistake as exc:
        (args.workdir / USER_ERROR_FILE).write_text(json.dumps({"message": exc.message, "fix": exc.fix}))
        _log(f"error: {exc.message}; {exc.fix}")
        return USER_ERROR_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
