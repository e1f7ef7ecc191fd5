"""What a task is: the unit of work (dataset x model x seed x experiment) as a :class:`TaskSpec`
whose key hashes everything its values depend on, the data it runs on (:class:`DataSpec`), and its
result, a :class:`TaskRecord` (with the record file a Slurm job writes). :mod:`bench.tasks` runs it.

A task is a pure function of (prepared data hash, model name + parameters + code version, seed,
experiment, metric options, scoring code version): its key is the hash of those, which makes
resume and caching safe; editing a model's or the scoring's code changes the key
(bench.codeversion).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class DataSpec:
    dataset: str
    label_key: str | None
    split_seed: int
    test_fraction: float
    n_top_genes: int | None
    normalisation: str = "hvg"  # bench.config.NORMALISATIONS

    def prepare(self, progress: bool = False, write_cache: bool = True, check_orientation: bool = True):
        """The prepared data, with torch's CPU thread count as it was: preparing runs scanpy's numba
        kernels, whose OpenMP layer sets the libgomp torch shares to every core (measured: 1 -> 2
        under ``OMP_NUM_THREADS=1``), so a fit after a fresh prepare ran on other threads than one
        after a cached prepare (and values of thread-dependent models such as ACTIVA differed)."""
        from bench import datasets
        from bench.pipeline import torch_threads_kept

        with torch_threads_kept():
            return datasets.prepare(
                self.dataset,
                label_key=self.label_key,
                split_seed=self.split_seed,
                test_fraction=self.test_fraction,
                n_top_genes=self.n_top_genes,
                normalisation=self.normalisation,
                progress=progress,
                write_cache=write_cache,
                check_orientation=check_orientation,
            )


def load_prepared(folder: str | Path):
    """The prepared data cached in ``folder`` (checked against its sha256): what a task's child
    process reads instead of preparing the data again (bench.executors.isolated)."""
    from bench import datasets

    return datasets.load_prepared(folder)


def task_label(dataset: str, model: str, seed: int, experiment: str) -> str:
    """How a task is named to users (progress lines, failures, `bench status`)."""
    return f"{dataset}/{model}/seed{seed}/{experiment}"


def protocol_experiment(protocol: str) -> str:
    """The experiment label of the main experiment scored in ``protocol``: ``main`` for ``genes`` (the
    main tasks' own protocol), ``main@pca-real``, ``main@paper:joint`` ... for the protocol tasks. The
    label keeps protocols apart in the store, the tables, the baselines and the gate; each value also
    records its protocol in its params."""
    return "main" if protocol == "genes" else f"main@{protocol}"


def kept_cells(kept_dir: str | Path, key: str) -> Path:
    """Where main task ``key`` keeps its generated cells for the protocol tasks (an .h5ad file)."""
    return Path(kept_dir) / f"{key}.h5ad"


@dataclass
class TaskSpec:
    dataset: str  # display name
    data: DataSpec
    data_hash: str
    model: str
    params: dict[str, Any]
    seed: int
    experiment: str  # "main" or the experiment metric's name
    metrics: dict[str, dict[str, Any]]  # metric name -> options
    profile: str
    rare_class: str | None = None
    device: str = "cpu"
    timeout_s: float | None = None
    # the memory cap in GB (--memory-limit; bench.executors.isolated); like timeout_s not in the key
    memory_gb: float | None = None
    generation: str = "unconditional"  # main experiment: "unconditional" or "per-label"
    # code versions (bench.codeversion): the generator's {distribution, version, code_hash, ...}
    # and the hash of the scoring code; both go into the key
    code: dict[str, Any] = field(default_factory=dict)
    scoring: str = ""
    # the evaluation protocol the task scores in (bench.protocols). "genes": the main experiment's own
    # task, which fits and generates. Any other: a protocol task of the main experiment, which fits
    # nothing: it reads the generated cells that the main tasks in ``inputs`` kept ({model: main task
    # key}: the task's own model, or for a joint grouping every model integrated together)
    protocol: str = "genes"
    inputs: dict[str, str] = field(default_factory=dict)
    # a main task keeps its generated cells in the run dir for the protocol tasks (not in the key:
    # keeping them does not change a value)
    keep_generated: bool = False
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            ident = {
                "data": self.data_hash,
                "model": self.model,
                "code": self.code,
                "params": self.params,
                "seed": self.seed,
                "experiment": self.experiment,
                "metrics": self.metrics,
                "rare_class": self.rare_class,
                "generation": self.generation,
                "scoring": self.scoring,
            }
            if self.protocol != "genes":  # the main tasks' keys stay what they were before protocols
                ident |= {"protocol": self.protocol, "inputs": self.inputs}
            blob = json.dumps(ident, sort_keys=True, default=str).encode()
            self.key = hashlib.sha256(blob).hexdigest()[:20]

    @property
    def label(self) -> str:
        return task_label(self.dataset, self.model, self.seed, self.experiment)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskSpec:
        d = dict(d)
        d["data"] = DataSpec(**d["data"])
        return cls(**d)


@dataclass
class TaskRecord:
    key: str
    status: str  # "done" | "failed"
    values: list[tuple[str, float]] = field(default_factory=list)  # (metric value name, value)
    # value name -> its parameters (MetricOutput.params: condition, fraction, cell type ...)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    artifacts: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0
    fit_seconds: float | None = None
    peak_rss_mb: float | None = None
    peak_gpu_mb: float | None = None
    error: str | None = None
    log_tail: str | None = None
    host: str = field(default_factory=lambda: os.uname().nodename)

    # -- record files (Slurm jobs write these; the driver merges them) -------------------------
    def save(self, path: str | Path) -> None:
        """Write atomically: the file appears complete or not at all."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {k: v for k, v in asdict(self).items() if k != "artifacts"}
        buf = io.BytesIO()
        np.savez_compressed(
            buf, __meta__=np.frombuffer(json.dumps(meta, default=str).encode(), np.uint8), **self.artifacts
        )
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> TaskRecord:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["__meta__"].tobytes().decode())
            arts = {k: z[k] for k in z.files if k != "__meta__"}
        meta["values"] = [tuple(v) for v in meta["values"]]
        return cls(**meta, artifacts=arts)
