"""scGAN's training loop: shuffled batches of real cells, cscGAN's generated labels drawn by the
class ratios, the critic and generator updates, the loss history and the fit record."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import tensorflow as tf

from .config import DEFAULTS, class_ratios, natural_key, resolve_budget
from .model import ScGANModel
from .runtime import log


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
            log(
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
