"""The embedding of a protocol task (bench.tasks: the main experiment's sample metrics scored in an
evaluation protocol other than ``genes``), shared by the tasks of one group.

A protocol task fits nothing: it reads the generated cells its input main tasks kept in the run dir,
has them embedded here with the real test cells (a ``joint`` grouping integrates every input model at
once), and scores each metric that supports the protocol on its own model's embedding.

The embedding of a group is computed once per run: in memory for the tasks of one process, and in the
run dir's ``shared/`` as an .npz file (arrays and a JSON record; no pickle), named by the hash of
(protocol, seed, data hash, input task keys, scoring code), for the tasks of other processes and Slurm
jobs. The real side is the real test cells; ``pca-real`` fits on the real training cells outside the
seed's control reserve (the cells the ``real`` control draws from), as the ``genes`` protocol's PCA does.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np

from bench.protocols import get_protocol
from bench.protocols.base import Embedded

# group embeddings of this process: cache key -> Embedded (a run's joint group is embedded once)
_MEMORY: dict[str, Embedded] = {}
_MEMORY_SIZE = 4


def embedding(spec, ctx, data, cells: dict[str, ad.AnnData], shared_dir, work_dir: Path) -> Embedded:
    """The protocol's embedding of the real test cells and ``cells`` (model -> its kept cells; the
    task's inputs) for protocol task ``spec``: from this process's memory, else from the run dir's
    ``shared/``, else computed (and kept in both)."""
    from bench.codeversion import scoring_version

    ident = [spec.protocol, spec.seed, spec.data_hash, sorted(spec.inputs.items()), scoring_version()]
    key = hashlib.sha256(json.dumps(ident, default=str).encode()).hexdigest()[:24]
    hit = _MEMORY.get(key)
    if hit is not None:
        return hit
    path = None if shared_dir is None else Path(shared_dir) / f"protocol-{key}.npz"
    embedded = _load(path, spec.protocol, list(cells)) if path is not None else None
    if embedded is None:
        embedded = _apply(spec, ctx, data, cells, work_dir)
        if path is not None:
            _save(path, embedded)
    if len(_MEMORY) >= _MEMORY_SIZE:
        _MEMORY.pop(next(iter(_MEMORY)))
    _MEMORY[key] = embedded
    return embedded


def _apply(spec, ctx, data, cells, work_dir: Path) -> Embedded:
    name = spec.protocol.partition(":")[0]
    options: dict[str, Any] = {}
    if name == "paper":  # the integration's input and output files, for whoever wants to look
        options["work_dir"] = work_dir / "seurat"
    protocol = get_protocol(spec.protocol, **options)
    real_train = data.train[ctx.fit_cells]
    return protocol.apply(real_train, data.test, cells, spec.seed)


def _save(path: Path, embedded: Embedded) -> None:
    arrays: dict[str, np.ndarray] = {"__record__": np.asarray(json.dumps(embedded.record, default=str))}
    for i, (model, (real, fake)) in enumerate(embedded.pairs.items()):
        arrays[f"model{i}"] = np.asarray(model)
        arrays[f"real{i}"] = _dense(real)
        arrays[f"fake{i}"] = _dense(fake)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as fh:
        np.savez(fh, **arrays)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _load(path: Path, protocol: str, models: list[str]) -> Embedded | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            record = json.loads(str(z["__record__"]))
            pairs = {}
            i = 0
            while f"model{i}" in z.files:
                pairs[str(z[f"model{i}"])] = (z[f"real{i}"], z[f"fake{i}"])
                i += 1
    except Exception:  # a damaged or foreign file is recomputed, never trusted
        return None
    if sorted(pairs) != sorted(models):
        return None
    return Embedded(protocol, pairs, record)


def _dense(X) -> np.ndarray:
    return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float32)
