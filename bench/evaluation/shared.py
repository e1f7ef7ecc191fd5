"""Model-independent work on one dataset's real cells, computed once: :class:`SharedWork` (in memory,
per pair of AnnData objects, and on disk in the run dir's ``shared/``, read without pickle) and a
metric's own namespace in it, :class:`MetricWork`."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np

# the evaluation's real-data quantities worth keeping on disk (costly, small next to the data): the
# first element of their key in EvalContext.shared. A metric's own shared work (EvalContext.shared_for)
# is kept on disk too, under the metric's name.
PERSISTED = frozenset({"pca", "test_pcs", "train_pcs", "de_genes"})
# the first element of a key that a metric owns: (METRIC_WORK, metric name, *the metric's key)
METRIC_WORK = "metric"


class SharedWork:
    """Model-independent work on one dataset's real cells: a dict in memory and, once :meth:`attach`
    gives it a folder (the run dir's ``shared/``), a file per :data:`PERSISTED` entry.

    Files are .npz arrays read without pickle (nothing in a run dir, which users share, is
    code); a value that is not a number, an array, a list of strings, a dict of those or a fitted
    PCA stays in memory. A file is named by the sha256 of (the prepared data's content hash, the scoring code's hash, the
    entry's key), so it is reused by every task, process and Slurm job of the run on the same data,
    and never by other data or other scoring code. Files are written atomically (temp file, rename);
    an unreadable file is recomputed. Never holds generated cells.
    """

    def __init__(self) -> None:
        self._memory: dict[Any, Any] = {}
        self._folder: Path | None = None
        self._namespace = ""

    def attach(self, folder: str | Path | None, namespace: str) -> None:
        self._folder = Path(folder) if folder is not None else None
        self._namespace = namespace

    def _file(self, key) -> Path | None:
        if self._folder is None or not (isinstance(key, tuple) and key):
            return None
        if key[0] == METRIC_WORK and len(key) > 1:
            prefix = f"{METRIC_WORK}-{key[1]}"
        elif key[0] in PERSISTED:
            prefix = str(key[0])
        else:
            return None
        digest = hashlib.sha256(repr((self._namespace, key)).encode()).hexdigest()[:24]
        return self._folder / f"{prefix}-{digest}.npz"  # arrays only: nothing in a run dir is code

    def _load(self, key) -> bool:
        path = self._file(key)
        if path is None or not path.exists():
            return False
        try:
            self._memory[key] = _decode(path)
        except Exception:  # a damaged or foreign file is recomputed, never trusted
            return False
        return True

    def __len__(self) -> int:
        """Entries in memory (files of other processes count once read)."""
        return len(self._memory)

    def __contains__(self, key) -> bool:
        return key in self._memory or self._load(key)

    def __getitem__(self, key):
        if key not in self:
            raise KeyError(key)
        return self._memory[key]

    def get(self, key, default=None):
        if key in self:
            return self._memory[key]
        return default

    def __setitem__(self, key, value) -> None:
        self._memory[key] = value
        path = self._file(key)
        arrays = _encode(value) if path is not None else None
        if arrays is not None:  # a value of another type stays in memory
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from jobs of another user
            os.replace(tmp, path)


def _plain(value) -> np.ndarray | None:
    """A number or a numeric / string array as an array that loads without pickle; None otherwise."""
    if isinstance(value, bool | int | float | np.number | np.bool_):
        return np.asarray(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufcU":
        return value
    return None


def _encode(value) -> dict[str, np.ndarray] | None:
    """The arrays of an .npz file that :func:`_decode` turns back into ``value`` (a number, an
    array, a list of strings, a dict of those, or a fitted sklearn PCA); None for other types."""
    from sklearn.decomposition import PCA

    plain = _plain(value)
    if plain is not None:
        return {"__kind__": np.asarray("scalar" if plain.ndim == 0 and not isinstance(value, np.ndarray) else "array"),
                "value": plain}  # fmt: skip
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return {"__kind__": np.asarray("strings"), "value": np.asarray(value, dtype=str)}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        items = {f"d:{k}": _plain(v) for k, v in value.items()}
        return None if any(v is None for v in items.values()) else {"__kind__": np.asarray("dict"), **items}
    if type(value) is PCA:
        fitted = {k: _plain(v) for k, v in vars(value).items() if k.endswith("_") and v is not None}
        if any(v is None for v in fitted.values()):
            return None
        params = json.dumps(value.get_params())
        return {
            "__kind__": np.asarray("pca"),
            "params": np.asarray(params),
            **{f"a:{k}": v for k, v in fitted.items()},
        }
    return None


def _decode(path: Path):
    """The value :func:`_encode` wrote to ``path`` (read without pickle: an object array fails)."""
    from sklearn.decomposition import PCA

    with np.load(path, allow_pickle=False) as z:
        kind = str(z["__kind__"])
        if kind == "scalar":
            return z["value"].item()
        if kind == "array":
            return z["value"]
        if kind == "strings":
            return [str(v) for v in z["value"]]
        if kind == "dict":
            return {k[2:]: (z[k].item() if z[k].ndim == 0 else z[k]) for k in z.files if k.startswith("d:")}
        if kind == "pca":
            pca = PCA(**json.loads(str(z["params"])))
            for k in z.files:
                if k.startswith("a:"):
                    setattr(pca, k[2:], z[k].item() if z[k].ndim == 0 else z[k])
            return pca
    raise ValueError(f"{path}: unknown kind {kind!r}")


# one SharedWork per (train, test) pair of AnnData objects: the runner keeps one PreparedData per
# dataset in memory and builds one context per task. (id(train), id(test)) -> (weakrefs, work);
# entries die with the data.
_SHARED: dict[tuple[int, int], tuple[weakref.ref, weakref.ref, SharedWork]] = {}


def shared_cache(train: ad.AnnData, test: ad.AnnData) -> SharedWork:
    for key in [k for k, (tr, te, _) in _SHARED.items() if tr() is None or te() is None]:
        del _SHARED[key]
    key = (id(train), id(test))
    hit = _SHARED.get(key)
    if hit is None or hit[0]() is not train or hit[1]() is not test:
        hit = (weakref.ref(train), weakref.ref(test), SharedWork())
        _SHARED[key] = hit
    return hit[2]


class MetricWork:
    """A metric's view of :class:`SharedWork`: a mapping (``get``, ``[key]``, ``in``) whose keys are
    stored as ``(METRIC_WORK, metric, *key)``; ``work(key, compute)`` returns the stored value or
    computes and stores it. What a metric keeps here must not depend on generated cells."""

    def __init__(self, work: SharedWork, metric: str):
        self._work, self.metric = work, metric

    def _key(self, key) -> tuple:
        return (METRIC_WORK, self.metric, *(key if isinstance(key, tuple) else (key,)))

    def __contains__(self, key) -> bool:
        return self._key(key) in self._work

    def __getitem__(self, key):
        return self._work[self._key(key)]

    def __setitem__(self, key, value) -> None:
        self._work[self._key(key)] = value

    def get(self, key, default=None):
        return self._work.get(self._key(key), default)

    def __call__(self, key, compute: Callable[[], Any]) -> Any:
        full = self._key(key)
        if full not in self._work:
            self._work[full] = compute()
        return self._work[full]
