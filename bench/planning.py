"""Planning a run: validate everything a user can get wrong, prepare the datasets, and list the
tasks (dataset x model x seed x experiment, then the protocol tasks), with the :class:`ResolvedRun`
that says what the run will do, every default resolved (``bench run --dry-run`` prints it). The
experiments' plan-time decisions (a rare class) are their metrics' hooks (``Metric.plan``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from bench.api.errors import UserError
from bench.codeversion import code_version, scoring_version
from bench.config import CONTROLS, DEFAULT_PROTOCOL, RunSpec
from bench.registry import get_generator, get_metric, names
from bench.tasks import DataSpec, TaskSpec, protocol_experiment


@dataclass(frozen=True)
class ResolvedRun:
    """What a run will do, every default resolved: the profile; per dataset its hash, sizes, label
    key, rare class and the experiments' options there; per model its parameters (profile's and
    user's over the defaults), budget, code version and whether it is a control; per metric its
    experiment and options; the seeds, device, main generation, time limit and executor. ``bench
    run --dry-run`` prints it and provenance stores it (``resolved``)."""

    profile: str
    datasets: dict[str, dict[str, Any]]
    models: dict[str, dict[str, Any]]
    metrics: dict[str, dict[str, Any]]
    controls: list[str]
    seeds: list[int]
    device: str
    main_generation: str
    timeout_s: float | None
    executor: dict[str, Any]
    protocols: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The run in a few lines of plain text."""
        out = [
            f"profile {self.profile}; seeds {', '.join(map(str, self.seeds))}; device {self.device}; "
            f"main generation {self.main_generation}; executor {self.executor.get('name', 'local')}"
            + (f"; timeout {self.timeout_s:g} s per task" if self.timeout_s is not None else "")
            + f"; evaluation protocols {', '.join(self.protocols)}"
        ]
        for name, d in self.datasets.items():
            out.append(
                f"dataset {name}: {d['train_cells']:,} training / {d['test_cells']:,} test cells x "
                f"{d['genes']:,} genes, labels obs['{d['label_key']}'], data hash {d['hash']}"
                + (f", rare class '{d['rare_class']}'" if d.get("rare_class") is not None else "")
            )
            for ename, options in d["experiments"].items():
                out.append(f"  {ename} there: {_items(options)}")
        for name, m in self.models.items():
            role = " (control)" if m["control"] else ""
            budget = f"; budget {m['budget']}" if m.get("budget") is not None else ""
            sandbox = f"; sandbox relaxed: {', '.join(m['sandbox'])}" if m.get("sandbox") else ""
            out.append(
                f"model {name}{role}: {_items(m['params'])}{budget}; code {m['code']['code_hash']}{sandbox}"
            )
        for name, m in self.metrics.items():
            out.append(f"metric {name} ({m['experiment']}): {_items(m['options'])}")
        return out


def _items(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "-"


@dataclass
class Plan:
    tasks: list[TaskSpec]
    data: dict[str, Any]  # the prepared data's content hash -> PreparedData (never keyed by name)
    skipped: list[str]  # notes on what was not planned and why (e.g. unconditional models)
    header: list[str]  # what was decided for the user, per dataset: labels and the rare class, with the rule
    code: dict[str, Any]  # {"generators": {model: code version}, "scoring": hash}: for provenance
    resolved: ResolvedRun | None = None


def plan(spec: RunSpec, *, progress: bool = False, write: bool = True) -> Plan:
    """Validate everything a user can get wrong, prepare datasets, and list the tasks. ``write``:
    keep the prepared datasets in the dataset cache (False: a dry run writes nothing)."""
    gens = {m: get_generator(m) for m in spec.models}
    # every registered metric, broken ones included: get_metric names why one cannot run
    metric_names = spec.metrics if spec.metrics is not None else names("metrics")
    metrics = {n: get_metric(n) for n in metric_names}
    for name, options in spec.metric_options.items():  # names, option names, types and ranges
        if name not in metrics:
            flags = get_metric(name).flags  # an unknown metric: the error names the installed ones
            raise UserError(
                f"options given for metric '{name}', which is not in the run",
                f"add it to --metrics, or remove [metrics.{name}]"
                + "".join(f" and --{flag.replace('_', '-')}" for flag in flags),
            )
        metrics[name].options_for(spec.profile, options)
    check_protocols([p for p in spec.protocols if p != DEFAULT_PROTOCOL])
    relaxed = {name: cls.sandbox_relaxations() for name, cls in gens.items()}
    refused = {name: r for name, r in relaxed.items() if r and name not in spec.allow_relaxed_sandbox}
    if refused:
        listed = "; ".join(f"{n}: {', '.join(r)}" for n, r in refused.items())
        raise UserError(
            f"model(s) declare a relaxed container sandbox ({listed})",
            f"allow it for this run with --allow-relaxed-sandbox {','.join(refused)} "
            "(or allow_relaxed_sandbox = [...] in the TOML), or leave the model(s) out",
        )
    model_params: dict[str, dict[str, Any]] = {}
    for name, cls in gens.items():
        params = cls.params_for_profile(spec.profile, spec.model_params.get(name))
        cls(**params)  # rejects unknown parameters with a clear message
        model_params[name] = params
    # the code versions go into every task key: editing a model's or the scoring's code reruns
    versions = {name: code_version(cls) for name, cls in gens.items()}
    model_code = {
        n: {"distribution": v.distribution, "version": v.version, "code_hash": v.code_hash}
        for n, v in versions.items()
    }
    scoring: dict[tuple[str, ...], str] = {}

    def scoring_of(names) -> str:
        key = tuple(sorted(names))
        if key not in scoring:
            scoring[key] = scoring_version({n: metrics[n] for n in key})
        return scoring[key]

    unknown = sorted(set(spec.model_params) - set(gens))
    if unknown:
        raise UserError(f"parameters given for model(s) not in the run: {unknown}", "add them to --models")
    tasks: list[TaskSpec] = []
    data: dict[str, Any] = {}
    skipped: list[str] = []
    header: list[str] = []
    per_dataset: dict[str, dict[str, Any]] = {}
    sources: dict[str, tuple[str, str]] = {}  # dataset name -> (what the user gave, content hash)
    for ds in spec.datasets:
        dspec = DataSpec(
            ds, spec.label_key, spec.split_seed, spec.test_fraction, spec.n_top_genes, spec.normalisation
        )
        prepared = dspec.prepare(  # written to the cache once all is valid
            progress=progress, write_cache=False, check_orientation=spec.check_orientation
        )
        name = prepared.name
        if prepared.hash in data:  # the same input twice: one dataset
            continue
        if name in sources:  # same name, other data: tables and labels would mix them up
            raise UserError(
                f"two datasets are named '{name}' ({sources[name][0]} and {ds}); a dataset given by path "
                "is named by its file name without extension",
                "rename one of the files, or link it under another name, and pass the new path",
            )
        sources[name] = (ds, prepared.hash)
        data[prepared.hash] = prepared
        labels = set(prepared.train.obs[prepared.label_key].astype(str))
        experiments = {
            n: m for n, m in metrics.items() if m.main_input is None and m.experiment in spec.experiments
        }
        rare = spec.rare_class if spec.rare_class is not None else prepared.default_rare_class
        if experiments and rare is not None and rare not in labels:
            raise UserError(
                f"rare class '{rare}' is not a label of dataset {name}",
                f"pass --rare-class with one of: {', '.join(sorted(labels))}",
            )
        experiment_options = {
            n: m.options_for(spec.profile, spec.metric_options.get(n)) for n, m in experiments.items()
        }
        header += describe_labels(prepared, spec.label_key)
        for ename, metric in experiments.items():  # the experiments' plan-time hooks (Metric.plan)
            if metric.plan is None:
                continue
            planned = metric.plan(
                label_counts(prepared),
                experiment_options[ename],
                rare=rare,
                chosen_by="--rare-class" if spec.rare_class is not None else "the dataset recipe's choice",
                clustered=bool(prepared.info.get("clustering")),
            )
            experiment_options[ename], rare = dict(planned.options), planned.label
            header += [f"  {planned.header}"] if planned.header else []
            skipped += list(planned.notes)
        main_metrics = {
            n: m.options_for(spec.profile, spec.metric_options.get(n))
            for n, m in metrics.items()
            if m.main_input is not None
        }
        # per protocol other than genes, the main experiment's metrics it supports (Metric.protocols)
        protocol_metrics = {
            p: {
                n: o
                for n, o in main_metrics.items()
                if metrics[n].kind == "sample" and metrics[n].supports(p)
            }
            for p in spec.protocols
            if p != DEFAULT_PROTOCOL
        }
        protocol_metrics = {p: m for p, m in protocol_metrics.items() if m}
        per_dataset[name] = {
            "hash": prepared.hash,
            "train_cells": int(prepared.train.n_obs),
            "test_cells": int(prepared.test.n_obs),
            "genes": int(prepared.train.n_vars),
            "label_key": prepared.label_key,
            "rare_class": rare if experiments else None,
            "experiments": {n: dict(o) for n, o in experiment_options.items()},
        }
        for model, cls in gens.items():
            for seed in spec.seeds:
                common = dict(
                    dataset=name,
                    data=dspec,
                    data_hash=prepared.hash,
                    model=model,
                    params=model_params[model],
                    seed=seed,
                    profile=spec.profile,
                    device=spec.device,
                    timeout_s=spec.timeout_s,
                    memory_gb=spec.memory_gb,
                    generation=spec.main_generation,
                    code=model_code[model],
                )
                if "main" in spec.experiments and main_metrics:
                    tasks.append(
                        TaskSpec(
                            **common,
                            experiment="main",
                            metrics=main_metrics,
                            scoring=scoring_of(main_metrics),
                            keep_generated=bool(protocol_metrics),
                        )
                    )
                for ename, metric in experiments.items():
                    if metric.requires_conditional and not cls.conditional:
                        note = f"{ename}: n/a for {model} (unconditional)"
                        if note not in skipped:
                            skipped.append(note)
                        continue
                    tasks.append(
                        TaskSpec(
                            **common,
                            experiment=ename,
                            metrics={ename: experiment_options[ename]},
                            # only an experiment's task carries the rare class: a main task's key
                            # is the same with and without the experiment in the run
                            rare_class=rare,
                            scoring=scoring_of([ename]),
                        )
                    )
        tasks += protocol_tasks([t for t in tasks if t.dataset == name], protocol_metrics, scoring_of)
    if write:
        from bench.datasets import save_prepared

        for prepared in data.values():
            save_prepared(prepared)
    code = {"generators": {n: v.to_dict() for n, v in versions.items()}, "scoring": scoring_of(metrics)}
    resolved = ResolvedRun(
        profile=spec.profile,
        datasets=per_dataset,
        models={
            name: {
                "params": model_params[name],
                "budget": model_params[name].get("budget"),
                "control": name in CONTROLS and spec.control,
                "code": model_code[name],
                "sandbox": relaxed[name],
            }
            for name in gens
        },
        metrics={
            n: {
                "experiment": m.experiment,
                "options": m.options_for(spec.profile, spec.metric_options.get(n)),
            }
            for n, m in metrics.items()
        },
        controls=[c for c in CONTROLS if spec.control and c in gens],
        seeds=list(spec.seeds),
        device=spec.device,
        main_generation=spec.main_generation,
        timeout_s=spec.timeout_s,
        executor=dict(spec.executor),
        protocols=list(spec.protocols),
    )
    return Plan(tasks=tasks, data=data, skipped=skipped, header=header, code=code, resolved=resolved)


def protocol_tasks(
    main_tasks: list[TaskSpec], protocol_metrics: dict[str, dict], scoring_of
) -> list[TaskSpec]:
    """The protocol tasks of one dataset's main tasks: per protocol (other than genes) and main task,
    one task scoring that model's kept cells in the protocol (bench.protocols.tasks). A ``joint``
    grouping's tasks read every model of the seed (they are integrated together); any other reads its
    own model's."""
    out: list[TaskSpec] = []
    mains = [t for t in main_tasks if t.experiment == "main" and t.protocol == DEFAULT_PROTOCOL]
    for protocol, pmetrics in protocol_metrics.items():
        joint = protocol.endswith(":joint")
        for task in mains:
            same_seed = {t.model: t.key for t in mains if t.seed == task.seed}
            out.append(  # the main task's spec with the protocol's experiment, metrics and inputs
                replace(
                    task,
                    experiment=protocol_experiment(protocol),
                    metrics=pmetrics,
                    scoring=scoring_of(pmetrics),
                    protocol=protocol,
                    inputs=same_seed if joint else {task.model: task.key},
                    keep_generated=False,
                    key="",  # recomputed from the fields
                )
            )
    return out


def check_protocols(protocols: list[str]) -> None:
    """Everything a protocol needs that a user can lack (Docker and the Seurat image for ``paper``,
    harmonypy for ``harmony``): UserError at plan time, before any task runs."""
    from bench.protocols import get_protocol

    for key in protocols:
        get_protocol(key).check()


def describe_labels(prepared, label_key: str | None) -> list[str]:
    """The run header's lines on a dataset: its size, where its labels came from and, when the
    cells were clustered because no label key was given, the obs columns that look like cell types."""
    from bench.datasets import describe_normalisation, label_candidates

    info = prepared.info
    counts = info.get("labels_train") or prepared.train.obs[prepared.label_key].value_counts().to_dict()
    lines = [
        f"{prepared.name}: {prepared.train.n_obs:,} training / {prepared.test.n_obs:,} test cells x "
        f"{prepared.train.n_vars:,} genes; {describe_normalisation(info)}"
    ]
    clustering = info.get("clustering")
    if clustering:
        lines.append(
            f"  labels: no --label-key, so the cells were clustered: {len(counts)} {clustering['method'].title()} "
            f"clusters (resolution {clustering['resolution']}, scanpy {clustering['recipe']} recipe, "
            f"{clustering['n_pcs']} PCs, seed {clustering['seed']}) in obs['{prepared.label_key}']"
        )
        found = label_candidates(prepared.train.obs, exclude=("split", prepared.label_key))
        if found:
            cols = ", ".join(f"'{c}' ({n} values)" for c, n in found.items())
            lines.append(
                f"  obs columns that look like cell types: {cols}; use one with --label-key {next(iter(found))}"
            )
    else:
        why = "--label-key" if label_key is not None else "the dataset recipe's"
        lines.append(f"  labels: obs['{prepared.label_key}'] ({why}), {len(counts)} types")
    return lines


def label_counts(prepared) -> dict[str, dict[str, int]]:
    """The training and test cells per label of a prepared dataset (what an experiment's plan-time
    hook chooses from): the split's recorded counts, else counted."""
    counts = {part: prepared.info.get(f"labels_{part}") for part in ("train", "test")}
    if counts["train"] is None:  # prepared data without the split's label counts
        for part, adata in (("train", prepared.train), ("test", prepared.test)):
            counts[part] = adata.obs[prepared.label_key].astype(str).value_counts().to_dict()
    return counts
