"""RunSpec: what a run does. CLI flags go over an optional TOML file, which goes over the profile.

A TOML file (``bench run --config run.toml``) names the models in one of two ways. TOML forbids
a key ``models`` next to ``[models.X]`` tables, so a file uses one or the other:

* a list, with optional ``[model_params.X]`` tables of parameters::

    models = ["activa", "scgan", "nb"]
    datasets = ["pbmc3k"]
    seeds = [0, 1, 2]
    profile = "quick"

    [model_params.activa]    # generator parameters over the profile's
    epochs = 40

    [metrics.auc]            # metric options over the profile's
    space = "pca50"

    [executor]
    name = "slurm"
    partition = "gpu"

* or one ``[models.X]`` table per model in the run (its parameters; an empty table for none; a
  ``manifest`` key adds a generator from its manifest, docs/plugins.md)::

    [models.activa]
    epochs = 40

    [models.nb]

    [models.r-nb]
    manifest = "examples/r-nb"
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from bench.api.errors import UserError

PROFILES: dict[str, dict[str, Any]] = {
    # CPU-friendly: 2,000 highly variable genes, short training; a smoke test for CI and laptops
    "quick": {"n_top_genes": 2000},
    # 2,000 HVGs, every model trained to convergence on the bundled data on a 2-core CPU (about 30
    # minutes per model and seed), settings chosen by `bench tune` (docs/tuning.md)
    "standard": {"n_top_genes": 2000},
    # the paper's settings: all genes, the published training lengths
    "paper": {"n_top_genes": None},
}
# the experiment of every metric that scores the main fit; the others are the experiments the metrics
# declare (Metric.experiment: a task of its own per model and seed), see :func:`known_experiments`
MAIN_EXPERIMENT = "main"
# How the main experiment asks for cells: "unconditional" (every model samples as many cells as the
# test set from its own distribution: the ACTIVA paper's protocol for Fig. 3-5 / Table 2, its
# tutorial decodes z ~ N(0, I) for N = test-set size) or "per-label" (conditional models make exactly
# the test set's count of each label; unconditional models still sample freely).
MAIN_GENERATION = ("unconditional", "per-label")
# added to every run unless control = false (--no-control): the positive control (real training
# cells, the noise floor; scaled score 1) and the negative control (each gene permuted across cells;
# scaled score 0), see bench.report.scaling
CONTROLS = ("real", "shuffled")
# the evaluation protocol every run scores in (the main experiment's own; bench.protocols.genes); the
# others (--protocol) are added to it (docs/metrics.md, "Evaluation protocols")
DEFAULT_PROTOCOL = "genes"
# where preprocessing computes the library size of 20,000 when the profile selects genes
# (--normalisation; the dataset stage's NORMALISATIONS, docs/datasets.md): 'hvg' over the selected
# genes (the default), 'all-genes' over all genes before selection (scanpy's convention, the paper's)
NORMALISATIONS = ("hvg", "all-genes")


@dataclass
class RunSpec:
    models: list[str]
    datasets: list[str] = field(default_factory=lambda: ["pbmc3k"])
    seeds: list[int] = field(default_factory=lambda: [0])
    profile: str = "quick"
    label_key: str | None = None
    metrics: list[str] | None = None  # None: every registered metric
    experiments: list[str] = field(default_factory=lambda: known_experiments())
    rare_class: str | None = None
    split_seed: int = 0
    test_fraction: float = 0.1
    n_top_genes: int | None = -1  # -1: the profile's value
    normalisation: str = NORMALISATIONS[0]
    device: str = "auto"
    control: bool = True  # add the controls (CONTROLS)
    main_generation: str = "unconditional"
    # evaluation protocols (bench.protocols): keys such as "pca-real", "paper:joint"; a bare "paper" or
    # "harmony" means both groupings; "genes" is always scored (the main experiment's own)
    protocols: list[str] = field(default_factory=lambda: [DEFAULT_PROTOCOL])
    timeout_s: float | None = None
    # models allowed to run with the sandbox relaxations their plugin declares (docs/docker.md)
    allow_relaxed_sandbox: list[str] = field(default_factory=list)
    # a memory cap per task in GB (--memory-limit; default and enforcement: bench.executors.memory, isolated)
    memory_gb: float | None = None
    check_orientation: bool = True  # refuse files that look genes x cells (--no-orientation-check)
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    metric_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    executor: dict[str, Any] = field(default_factory=lambda: {"name": "local"})

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise UserError(f"unknown profile '{self.profile}'", f"use one of: {', '.join(PROFILES)}")
        if self.n_top_genes == -1:
            self.n_top_genes = PROFILES[self.profile]["n_top_genes"]
        if not self.models:
            raise UserError("no models given", "pass --models, e.g. --models activa,nb")
        if self.control:
            self.models = [*self.models, *CONTROLS]
        self.models = list(dict.fromkeys(self.models))
        self._check_types()
        self.seeds = list(dict.fromkeys(int(s) for s in self.seeds))
        check_experiments(self.experiments)
        if self.main_generation not in MAIN_GENERATION:
            raise UserError(
                f"unknown main generation mode '{self.main_generation}'",
                f"use one of: {', '.join(MAIN_GENERATION)}",
            )
        if self.normalisation not in NORMALISATIONS:
            raise UserError(
                f"unknown normalisation {self.normalisation!r}",
                'use --normalisation hvg or all-genes (in a TOML file: normalisation = "all-genes")',
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise UserError(f"unknown device '{self.device}'", "use --device auto, cpu or cuda")
        self.protocols = resolve_protocols(self.protocols)

    def _check_types(self) -> None:
        """Types and ranges of the settings a TOML file or a flag can get wrong (UserError)."""
        if not isinstance(self.seeds, list | tuple) or not all(_is_int(s) and s >= 0 for s in self.seeds):
            raise UserError(
                f"seeds must be a list of non-negative integers, got {self.seeds!r}",
                "use e.g. --seeds 0,1,2 or seeds = [0, 1, 2]",
            )
        if not self.seeds:
            raise UserError("no seeds given", "use e.g. --seeds 0,1,2 or seeds = [0, 1, 2]")
        if not (_is_int(self.split_seed) and self.split_seed >= 0):
            raise UserError(
                f"split_seed must be a non-negative integer, got {self.split_seed!r}",
                "use e.g. split_seed = 0",
            )
        if not (_is_number(self.test_fraction) and 0 < self.test_fraction < 1):
            raise UserError(
                f"test_fraction must be a number between 0 and 1, got {self.test_fraction!r}",
                "use e.g. test_fraction = 0.1",
            )
        if self.n_top_genes is not None and not (_is_int(self.n_top_genes) and self.n_top_genes >= 1):
            raise UserError(
                f"n_top_genes must be a positive integer, got {self.n_top_genes!r}",
                "use e.g. n_top_genes = 2000",
            )
        if self.timeout_s is not None and not (
            _is_number(self.timeout_s) and math.isfinite(self.timeout_s) and self.timeout_s > 0
        ):
            raise UserError(
                f"the task timeout must be a positive number of seconds, got {self.timeout_s!r}",
                "use e.g. --timeout 3600 or timeout_s = 3600, or leave it out for no limit",
            )
        if self.memory_gb is not None and not (
            _is_number(self.memory_gb) and math.isfinite(self.memory_gb) and self.memory_gb > 0
        ):
            raise UserError(
                f"the task memory limit must be a positive number of GB, got {self.memory_gb!r}",
                "use e.g. --memory-limit 16 or memory_gb = 16, or leave it out for the default",
            )
        if self.memory_gb is not None and isinstance(self.executor, dict) and self.executor.get("in_process"):
            why = "--memory-limit needs each task in a child process, and --in-process runs them in bench"
            raise UserError(why, "leave out --memory-limit (memory_gb) or --in-process (in_process)")
        for key in ("label_key", "rare_class"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise UserError(f"{key} must be a string, got {value!r}", f'use e.g. {key} = "cell_type"')
        for key in ("models", "datasets", "experiments", "protocols", "allow_relaxed_sandbox") + (
            ("metrics",) if self.metrics is not None else ()
        ):
            value = getattr(self, key)
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise UserError(
                    f"{key} must be a list of names, got {value!r}", f'use e.g. {key} = ["a", "b"]'
                )
        for key in ("control", "check_orientation"):
            if not isinstance(getattr(self, key), bool):
                raise UserError(
                    f"{key} must be true or false, got {getattr(self, key)!r}", f"use {key} = false"
                )
        if not isinstance(self.executor, dict):
            raise UserError(
                f"executor must be a table, got {self.executor!r}", 'use [executor] name = "slurm"'
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def known_experiments() -> list[str]:
    """The experiments a run can have: the main one, then each one an installed metric declares
    (``Metric.experiment``), in registry order."""
    from bench.registry import available

    declared = (m.experiment for m in available("metrics").values())
    return list(dict.fromkeys([MAIN_EXPERIMENT, *declared]))


def check_experiments(experiments: list[str] | None) -> None:
    """UserError naming the known experiments for one that no installed metric declares."""
    known = known_experiments()
    bad = sorted(set(experiments or []) - set(known))
    if bad:
        raise UserError(f"unknown experiment(s) {bad}", f"use: {', '.join(known)}")


def flag_options(cli: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The metric options that command-line flags set (``Metric.flags``: ``--fractions`` sets the
    option its metric declares for it), each flag taken out of ``cli``; a list becomes a tuple where
    the option's default is one."""
    from bench.registry import available

    out: dict[str, dict[str, Any]] = {}
    for metric in available("metrics").values():
        for flag, option in metric.flags.items():
            value = cli.pop(flag, None)
            if value is None:
                continue
            if isinstance(metric.options.get(option), tuple) and isinstance(value, list):
                value = tuple(value)
            out.setdefault(metric.name, {})[option] = value
    return out


def resolve_protocols(requested: list[str]) -> list[str]:
    """The protocol keys of a run: ``genes`` first, then each requested key once; a bare name with
    groupings (``paper``, ``harmony``) stands for every grouping. UserError names the known keys."""
    from bench.protocols import PROTOCOLS, protocol_keys

    keys = protocol_keys()
    out = [DEFAULT_PROTOCOL]
    for item in requested:
        name, _, grouping = str(item).partition(":")
        cls = PROTOCOLS.get(name)
        if cls is None or (grouping and grouping not in cls.groupings) or (grouping and not cls.groupings):
            raise UserError(
                f"unknown evaluation protocol '{item}'",
                f"use one or more of: {', '.join(keys)} (a bare paper or harmony means both groupings)",
            )
        expanded = [item] if grouping or not cls.groupings else [f"{name}:{g}" for g in cls.groupings]
        out += [k for k in expanded if k not in out]
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_list(value: str | None, cast=str) -> list | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    try:
        return [cast(v) for v in items]
    except ValueError as exc:
        raise UserError(f"cannot parse '{value}': {exc}", "give a comma-separated list, e.g. 0,1,2") from None


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}", "give the path of a TOML file with --config")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"invalid TOML in {path}: {exc}", "fix the syntax of the config file") from None


_KNOWN_KEYS = {
    "models",
    "datasets",
    "seeds",
    "profile",
    "label_key",
    "metrics",
    "experiments",
    "rare_class",
    "split_seed",
    "test_fraction",
    "n_top_genes",
    "normalisation",
    "device",
    "control",
    "timeout_s",
    "memory_gb",
    "check_orientation",
    "executor",
    "main_generation",
    "protocols",
    "allow_relaxed_sandbox",
    "model_params",
}


def _tables(value: Any, key: str) -> dict[str, dict[str, Any]]:
    """``{name: {param: value}}`` from ``[key.name]`` tables; UserError for anything else."""
    bad = [k for k, v in value.items() if not isinstance(v, dict)] if isinstance(value, dict) else [key]
    if bad:
        raise UserError(
            f"config key '{key}' must hold one table per model, e.g. [{key}.activa]; got a plain value for {bad}",
            f"write [{key}.NAME] tables with parameter = value lines",
        )
    return {k: dict(v) for k, v in value.items()}


def _manifest_models(models: Any) -> Any:
    """Models given by the path of a manifest plugin (``--models path/to/dir``) replaced by their
    names, the manifests made available to the run (bench.registry.use_manifest)."""
    if not isinstance(models, list | tuple):
        return models  # RunSpec names the mistake
    from bench.registry import looks_like_path, use_manifest

    return [use_manifest(m) if isinstance(m, str) and looks_like_path(m) else m for m in models]


def _use_manifest_table(name: str, path: Any) -> None:
    from bench.registry import use_manifest

    if not isinstance(path, str):
        raise UserError(
            f"[models.{name}] manifest = {path!r} is not a path",
            f'write manifest = "path/to/dir" (the directory holding scgenbench.toml) in [models.{name}]',
        )
    got = use_manifest(path)
    if got != name:
        raise UserError(
            f"[models.{name}] manifest = {path!r} names a generator '{got}', not '{name}'",
            f"call the table [models.{got}]",
        )


def build_spec(file_cfg: dict[str, Any] | None, **cli: Any) -> RunSpec:
    """Merge a TOML config (may be None) and CLI values (None = not given) into a RunSpec."""
    cfg = dict(file_cfg or {})
    model_params = _tables(cfg.pop("model_params", None) or {}, "model_params")
    models = cfg.get("models")
    if isinstance(models, dict):  # [models.activa] tables: names and parameters in one place
        if model_params:
            raise UserError(
                "model parameters are given both in [models.X] and in [model_params.X] tables",
                "use one form: either [models.X] tables alone or a models list with [model_params.X]",
            )
        model_params = _tables(models, "models")
        cfg["models"] = list(models)
        for name, params in model_params.items():  # [models.NAME] manifest = "path": a manifest plugin
            if "manifest" in params:
                _use_manifest_table(name, params.pop("manifest"))
    metric_cfg = cfg.get("metrics")
    metric_options: dict[str, dict[str, Any]] = {}
    if isinstance(metric_cfg, dict):
        metric_options = {k: dict(v) for k, v in metric_cfg.items() if isinstance(v, dict)}
        stray = sorted(k for k, v in metric_cfg.items() if k != "select" and not isinstance(v, dict))
        if stray:
            raise UserError(
                f"[metrics] holds plain value(s) {stray}; it takes `select = [...]` and [metrics.NAME] tables",
                'write metric options as [metrics.NAME] tables, e.g. [metrics.auc] space = "pca50"',
            )
        cfg["metrics"] = metric_cfg.get("select")
    if isinstance(cfg.get("executor"), str):
        cfg["executor"] = {"name": cfg["executor"]}
    unknown = sorted(set(cfg) - _KNOWN_KEYS)
    if unknown:
        raise UserError(f"unknown config key(s) {unknown}", f"known keys: {', '.join(sorted(_KNOWN_KEYS))}")
    for name, options in flag_options(cli).items():  # flags that set a metric's option (Metric.flags)
        metric_options.setdefault(name, {}).update(options)
    stray = sorted(k for k, v in cli.items() if v is not None and k not in {f.name for f in fields(RunSpec)})
    if stray:  # a metric's flag whose metric is not installed (or failed to import)
        flag = "--" + stray[0].replace("_", "-")
        raise UserError(
            f"{flag} sets an option of no installed metric", "leave it out; see `bench list metrics`"
        )
    for key, value in cli.items():
        if value is None:
            continue
        if key == "executor":
            cfg["executor"] = {**(cfg.get("executor") or {}), **value}
        else:
            cfg[key] = value
    if "models" not in cfg:
        raise UserError("no models given", "pass --models, e.g. --models activa,nb, or list them in --config")
    for key in ("datasets", "models", "metrics", "experiments", "protocols", "allow_relaxed_sandbox"):
        if isinstance(cfg.get(key), str):
            cfg[key] = parse_list(cfg[key])
    cfg["models"] = _manifest_models(cfg["models"])
    cfg.setdefault("executor", {"name": "local"})
    cfg["executor"].setdefault("name", "local")
    return RunSpec(**cfg, model_params=model_params, metric_options=metric_options)
