"""scGAN's parameters with their defaults, the training budget, the learning-rate decay and the
class ratios of cscGAN's generated labels (small pure pieces, unit-tested)."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import tensorflow as tf

LIBRARY_SIZE = 20_000.0

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
