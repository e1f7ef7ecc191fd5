"""scGAN / cscGAN (Marouf et al. 2020) in TensorFlow 2: the entry point that runs inside the image.
The port itself is the package beside it, ``scgan_tf/``; this module holds the two commands.

Commands (WORKDIR holds the run's files; nothing else is read or written)::

    python entry.py fit WORKDIR        # train.h5ad + spec.json  -> model/ + fit.json (+ snapshots/)
    python entry.py generate WORKDIR   # model/ + spec.json      -> generated.h5ad

``spec.json``: ``{"conditional": bool, "params": {...}, "label_key": str, "seed": int,
"device": "cpu" | "cuda", "progress": bool, "n_cells": int | {label: int}, "generate_seed": int,
"chunk": int, "snapshots": {"fractions": [...], "n_cells": int} | null}``. With ``snapshots``, fit
writes ``snapshots/step-<k>.h5ad`` (``n_cells`` generated cells after step k, for k at each
fraction of ``max_steps``) and ``snapshots/index.json``; the harness scores them (convergence).
``generated.h5ad`` carries the generation time measured here in ``uns['scgenbench']``.

Dependencies: TensorFlow 2, anndata, numpy, h5py (scipy comes with anndata). Neither this module
nor the port may import the harness (``bench``): the image does not install it.

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
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

if __package__:  # imported as bench.generators.scgan.entry (the tests)
    from .scgan_tf.config import DEFAULTS, natural_key, resolve_budget
    from .scgan_tf.model import generation_plan, load_model, save_model
    from .scgan_tf.runtime import USER_ERROR_EXIT, USER_ERROR_FILE, UserMistake, configure_device, log
    from .scgan_tf.train import fit
else:  # run as a script: /opt/scgan/entry.py in the image, generators/scgan/entry.py as a process
    from scgan_tf.config import DEFAULTS, natural_key, resolve_budget
    from scgan_tf.model import generation_plan, load_model, save_model
    from scgan_tf.runtime import USER_ERROR_EXIT, USER_ERROR_FILE, UserMistake, configure_device, log
    from scgan_tf.train import fit


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
    log(
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
    log(f"fit done: {record['steps']} steps in {record['train_seconds']:.1f}s")


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
    log(f"generated {n} cells in {seconds:.2f}s")


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
        log(f"error: {exc.message}; {exc.fix}")
        return USER_ERROR_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
