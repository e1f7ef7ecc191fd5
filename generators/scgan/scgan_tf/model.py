"""The scGAN / cscGAN model: both networks, their optimisers and update steps (the critic's and the
generator's, each a tf.function compiled by XLA where it can be), generation, save and load, and the
class of each generated cell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from .config import DEFAULTS, learning_rate
from .nets import AMSGrad, CriticNet, GeneratorNet, gradient_penalty
from .runtime import XlaFunction


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
