"""scGAN's networks as the original builds them: the initialisers, library-size normalisation, the
(conditional) batch norm, the generator and critic, AMSGrad and the gradient penalty."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from .config import LIBRARY_SIZE

FLOAT_EPS = float(np.finfo(np.float32).eps)


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
