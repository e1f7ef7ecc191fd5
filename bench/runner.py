"""The runner: plan the task grid of a RunSpec, skip what the store already has, execute the rest."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench import provenance
from bench.api.contract import resolve_device
from bench.api.errors import UserError
from bench.codeversion import code_version, scoring_version
from bench.config import CONTROLS, DEFAULT_PROTOCOL, RunSpec
from bench.executors.base import Outcome
from bench.interrupt import Interrupted
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


@dataclass(frozen=True)
class RunResult:
    """What :func:`run` did: the run dir and id, how many tasks were planned, reused from the store
    and run, the keys of the failed ones, whether it was detached (Slurm), every planned key."""

    run_dir: Path
    run_id: int
    planned: int
    reused: int
    ran: int
    failed: list[str]
    detached: bool
    keys: list[str]


def plan(spec: RunSpec, *, progress: bool = False, write: bool = True) -> Plan:
    """Validate everything a user can get wrong, prepare datasets, and list the tasks. ``write``:
    keep the prepared datasets in the dataset cache (False: a dry run writes nothing)."""
    gens = {m: get_generator(m) for m in spec.models}
    # every registered metric, broken ones included: get_metric names why one cannot run
    metric_names = spec.metrics if spec.metrics is not None else names("metrics")
    metrics = {n: get_metric(n) for n in metric_names}
    for name, options in spec.metric_options.items():  # names, option names, types and ranges
        if name not in metrics:
            get_metric(name)  # an unknown metric: the error names the installed ones
            raise UserError(
                f"options given for metric '{name}', which is not in the run",
                f"add it to --metrics, or remove [metrics.{name}]"
                + (" and --fractions" if name == "augmentation" else ""),
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
        if "augmentation" in experiment_options:
            why = "--rare-class" if spec.rare_class is not None else "the dataset recipe's choice"
            rare, why = _augmentation_plan(prepared, rare, why, experiment_options["augmentation"], skipped)
            header.append(f"  augmentation: rare class '{rare}' ({why})")
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
                    rare_class=rare,
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


def _augmentation_plan(
    prepared, rare: str | None, why: str, options: dict[str, Any], notes: list[str]
) -> tuple[str, str]:
    """The augmentation experiment's rare class, the rule that chose it, and its fractions
    (``options['fractions']`` is updated): the user's or the dataset's choice as given (``why``;
    with a note for a fraction that keeps fewer than MIN_RARE_CELLS real cells), else the rule of
    :func:`bench.metrics.choose_rare_class`."""
    from bench.metrics import MIN_RARE_CELLS, choose_rare_class, kept_rare_cells

    counts = {part: prepared.info.get(f"labels_{part}") for part in ("train", "test")}
    if counts["train"] is None:  # prepared data without the split's label counts
        for part, adata in (("train", prepared.train), ("test", prepared.test)):
            counts[part] = adata.obs[prepared.label_key].astype(str).value_counts().to_dict()
    fractions = tuple(sorted({float(f) for f in options["fractions"]}, reverse=True))
    if rare is None:
        rare, fractions, why = choose_rare_class(counts["train"], counts["test"], fractions)
        if prepared.info.get("clustering"):
            why += "; a Leiden cluster, see the labels line"
    else:
        n = int(counts["train"].get(rare, 0))
        few = [
            f"{f:g} keeps {kept_rare_cells(n, f)}"
            for f in fractions
            if kept_rare_cells(n, f) < MIN_RARE_CELLS
        ]
        if few:
            notes.append(
                f"augmentation: rare class '{rare}' has {n} training cells; fraction {', '.join(few)} "
                f"(< {MIN_RARE_CELLS}: F1 near 0 by construction)"
            )
    options["fractions"] = fractions
    return rare, why


def store_outcomes(store, outcomes: Generator[Outcome, None, Any], run_id: int | None = None) -> Any:
    """Write every :class:`~bench.executors.base.Outcome` an executor (or the Slurm ledger) yields
    to ``store`` before it goes on -- the one place task states and results are stored -- and
    return what the generator returns. An :class:`~bench.interrupt.Interrupted` that carries the
    running task's failed ``record`` (bench.executors.base.run_one) stores it, then goes on up."""
    running: Outcome | None = None
    while True:
        try:
            outcome = next(outcomes)
        except StopIteration as stop:
            return stop.value
        except Interrupted as exc:
            rec = exc.record
            if rec is not None and running is not None and running.spec.key == rec.key:
                store.write_record(running.spec, rec, running.run_id)
            raise
        spec, rec, task_run = (
            outcome.spec,
            outcome.record,
            outcome.run_id if outcome.run_id is not None else run_id,
        )
        if rec.status == "running":
            store.mark_running(spec, task_run)
            running = Outcome(spec, rec, task_run)
        elif rec.status in ("planned", "submitted"):
            store.mark_state(spec, task_run, rec.status)
        else:
            store.write_record(spec, rec, task_run)


def default_run_dir(spec: RunSpec) -> Path:
    return Path("results") / spec.profile


def run(
    spec: RunSpec,
    run_dir: str | Path,
    *,
    force: bool = False,
    progress: bool = False,
    console=None,
    detach: bool = False,
    argv: list[str] | None = None,
) -> RunResult:
    """Plan, then execute the tasks the store lacks."""
    from bench.executors import make_executor
    from bench.runlock import check_free, run_dir_lock
    from bench.store import check_run_dir

    run_dir = Path(run_dir)
    check_run_dir(run_dir)  # a file, or a damaged store: exit 2 before anything is prepared
    check_free(run_dir)  # another `bench run` holds it: likewise
    if spec.device == "cuda" and spec.executor.get("name", "local") == "local":
        resolve_device("cuda")  # no visible GPU: UserError before anything is prepared or written
    executor = make_executor(spec.executor)  # validates executor settings before anything is written
    executor.start()  # the local executor's task process server imports while the data are prepared
    the_plan = plan(spec, progress=progress)
    note = None if console is None else (lambda line: console.print(line, markup=False, highlight=False))
    with run_dir_lock(run_dir, command=argv, note=note) as stale:
        return _run_locked(spec, run_dir, the_plan, executor, force=force, progress=progress,
                           console=console, detach=detach, argv=argv, stale=stale)  # fmt: skip


def _run_locked(
    spec, run_dir, the_plan, executor, *, force, progress, console, detach, argv, stale=None
) -> RunResult:
    """The part of :func:`run` that writes the run dir, under its lock (bench.runlock)."""
    from bench.api.sandbox import remove_leftovers
    from bench.interrupt import interruptible
    from bench.store import Store

    # containers of earlier runs (of any run dir) whose process died (SIGKILL, a crash)
    for where, gone in remove_leftovers().items():
        if console is not None:
            console.print(
                f"removed {len(gone)} leftover container(s) of an earlier run of {where}: {', '.join(gone)}",
                soft_wrap=True,
            )
    with Store(run_dir) as store:
        if stale is not None:  # its process died: what it was running is recorded, then run again
            from bench.runlock import describe

            orphans = store.fail_orphans(
                f"killed: the `bench run` running it ({describe(stale)}) ended without recording it "
                "(a kill signal or the out-of-memory killer)"
            )
            if orphans and console is not None:
                console.print(
                    f"recorded {len(orphans)} task(s) the dead run left running as failed", soft_wrap=True
                )
        prov = provenance.collect(argv)
        prov["datasets"] = {d.name: {**d.info, "hash": d.hash} for d in the_plan.data.values()}
        prov["code"] = the_plan.code
        prov["resolved"] = the_plan.resolved.to_dict()
        run_id = store.add_run(spec.to_dict(), prov)
        store.add_planned(run_id, the_plan.tasks)
        done = store.done_keys()
        pending = [t for t in the_plan.tasks if force or t.key not in done]
        pending += _without_kept_cells(the_plan.tasks, pending, done, run_dir)
        reused = len(the_plan.tasks) - len(pending)
        if console is not None:
            for line in the_plan.header:
                console.print(line, markup=False, highlight=False, soft_wrap=True)
            msg = f"{len(the_plan.tasks)} task(s): {reused} reused from {run_dir}, {len(pending)} to run"
            console.print(msg + (" (--force)" if force else ""))
            for note in the_plan.skipped:
                console.print(f"  [dim]{note}[/dim]")
        # two phases: the protocol tasks read the cells that the main tasks of the first phase keep
        phases = [
            [t for t in pending if t.protocol == DEFAULT_PROTOCOL],
            [t for t in pending if t.protocol != DEFAULT_PROTOCOL],
        ]
        if detach and phases[0] and phases[1]:
            if console is not None:
                console.print(
                    f"  {len(phases[1])} protocol task(s) wait for the main tasks' cells: run the same "
                    "`bench run` again once the detached jobs have ended",
                    soft_wrap=True,
                )
            phases[1] = []
        failed: list[str] = []
        detached = False
        with interruptible():  # SIGTERM/SIGINT: the running task is stopped and recorded as failed
            for tasks in phases:
                if not tasks:
                    continue
                outcomes = executor.execute(
                    tasks,
                    store,
                    run_dir=run_dir,
                    run_id=run_id,
                    progress=progress,
                    console=console,
                    data=the_plan.data,
                    detach=detach,
                )
                result = store_outcomes(store, outcomes, run_id)
                failed += list(result.get("failed", []))
                detached = detached or bool(result.get("detached", False))
    return RunResult(
        run_dir=run_dir,
        run_id=run_id,
        planned=len(the_plan.tasks),
        reused=reused,
        ran=len(pending),
        failed=failed,
        detached=detached,
        keys=[t.key for t in the_plan.tasks],
    )


def _without_kept_cells(
    tasks: list[TaskSpec], pending: list[TaskSpec], done: set[str], run_dir: Path
) -> list[TaskSpec]:
    """The finished main tasks that must run again because a pending protocol task needs the generated
    cells they did not keep (a run before protocols were asked for, or a removed ``generated/``).
    Their values come out the same: a task is a pure function of its key."""
    from bench.tasks import kept_cells

    needed = {key for t in pending if t.protocol != DEFAULT_PROTOCOL for key in t.inputs.values()}
    queued = {t.key for t in pending}
    return [
        t
        for t in tasks
        if t.key in needed and t.key in done and t.key not in queued
        and not kept_cells(Path(run_dir) / "generated", t.key).is_file()
    ]  # fmt: skip


def dry_run(spec: RunSpec, run_dir: str | Path, *, console) -> Plan:
    """``bench run --dry-run``: validate and plan as :func:`run` does, print the
    :class:`ResolvedRun` and every planned task (``reuse``: the store at ``run_dir`` has it, ``run``:
    it would run), and write nothing: no store, no dataset cache, no container."""
    from bench.executors import make_executor
    from bench.store import STORE_NAME, Store

    make_executor(spec.executor)  # the executor's settings are checked as in a real run
    the_plan = plan(spec, write=False)
    run_dir = Path(run_dir)
    done: set[str] = set()
    if (run_dir / STORE_NAME).is_file():
        with Store(run_dir, create=False) as store:
            done = set(store.done_keys())
    for line in [*the_plan.header, *the_plan.resolved.lines()]:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for task in the_plan.tasks:
        state = "reuse" if task.key in done else "run"
        console.print(f"  {state:<5} {task.label}  {task.key}", markup=False, highlight=False, soft_wrap=True)
    for note in the_plan.skipped:
        console.print(f"  {note}", markup=False, highlight=False, soft_wrap=True)
    n_reuse = sum(t.key in done for t in the_plan.tasks)
    console.print(
        f"dry run: {len(the_plan.tasks)} task(s), {n_reuse} in {run_dir}, {len(the_plan.tasks) - n_reuse} to run; "
        "nothing was written",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return the_plan
