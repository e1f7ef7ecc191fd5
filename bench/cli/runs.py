"""The `bench` commands of one run dir: `run` (with its spec from the flags), `report`, `status`,
`clean`, and `tune` (a model's tuning sweep)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bench.api.errors import UserError
from bench.cli.console import interactive, make_console


def spec_of(args):
    """The RunSpec of parsed `bench run` arguments (flags over the --config file over the profile)."""
    from bench.config import build_spec, load_toml, parse_list

    cfg = load_toml(args.config) if args.config else None
    executor = {}
    for key in ("executor", "partition", "account", "qos"):
        val = getattr(args, key)
        if val is not None:
            executor["name" if key == "executor" else key] = val
    if getattr(args, "in_process", False):
        executor["in_process"] = True
    return build_spec(
        cfg,
        models=parse_list(args.models),
        datasets=parse_list(args.dataset),
        seeds=parse_list(args.seeds, int),
        profile=args.profile,
        normalisation=args.normalisation,
        label_key=args.label_key,
        metrics=parse_list(args.metrics),
        experiments=parse_list(args.experiments),
        protocols=parse_list(args.protocol),
        allow_relaxed_sandbox=parse_list(args.allow_relaxed_sandbox),
        rare_class=args.rare_class,
        fractions=parse_list(args.fractions, float),
        device=args.device,
        main_generation=args.main_generation,
        timeout_s=args.timeout,
        memory_gb=getattr(args, "memory_limit", None),
        control=False if args.no_control else None,
        check_orientation=False if args.no_orientation_check else None,
        executor=executor or None,
    )


def cmd_run(args) -> int:
    from bench import report as rpt
    from bench.failures import retry_advice
    from bench.report.console import print_headline
    from bench.runner import default_run_dir, dry_run, run
    from bench.store import Store
    from bench.tasks import task_label

    spec = spec_of(args)
    if getattr(args, "allow_unsandboxed", False):  # read by the container models' backend 'auto'
        from bench.generators.container import ALLOW_UNSANDBOXED

        os.environ[ALLOW_UNSANDBOXED] = "1"
    console = make_console(wide=False)
    run_dir = Path(args.out) if args.out else default_run_dir(spec)
    if args.dry_run:
        dry_run(spec, run_dir, console=console)
        return 0
    result = run(
        spec,
        run_dir,
        force=args.force,
        progress=interactive(),
        console=console,
        detach=args.detach,
        argv=sys.argv,
    )
    if result.detached:
        console.print(f"submitted; follow with `bench status {run_dir}`")
        return 0
    with Store(run_dir) as store:
        report = rpt.build(store, result.run_id)
        prov = store.runs()[-1]["provenance"]
        print_headline(report, console, run_dir, spec.metrics)
        paths = write_store_files(store, run_dir, prov)
        failed = [
            (task_label(r["dataset"], r["model"], r["seed"], r["experiment"]), r["error"])
            for r in map(store.task_row, result.failed)
            if r
        ]
    console.print(f"results: {run_dir} ({', '.join(p.name for p in paths)})")
    if result.failed:
        console.print(f"[red]{len(result.failed)} task(s) failed[/red]")
        for line in retry_advice(failed, run_dir):
            console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
        return 1
    return 0


def write_store_files(store, run_dir, prov, report=None) -> list:
    """values.csv and summary.* of every task the store holds (a second `bench run` into the same
    dir keeps the first one's values), summary.md's first line saying which runs and models."""
    from bench import report as rpt
    from bench.report.html import profiles_of

    report = report if report is not None else rpt.build(store)
    return rpt.write_files(
        report, run_dir, prov, runs=store.runs(), profiles=profiles_of(store, report.planned)
    )


def cmd_report(args) -> int:
    from bench import report as rpt
    from bench.report.console import print_headline
    from bench.store import Store

    console = make_console(wide=args.all)
    with Store(args.run_dir, create=False) as store:
        report = rpt.build(store)
        runs = store.runs()
        prov = runs[-1]["provenance"] if runs else None
        if args.all:
            rpt.print_tables(report, console)
        else:
            selected = (runs[-1].get("spec") or {}).get("metrics") if runs else None
            print_headline(report, console, args.run_dir, selected)
        paths = write_store_files(store, args.run_dir, prov, report)
        if args.html:
            from bench.report.html import write_html

            paths.append(write_html(store, args.run_dir, out=args.output, report=report))
    console.print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def cmd_status(args) -> int:
    from bench.status import show_status

    return show_status(args.run_dir, console=make_console())


def cmd_clean(args) -> int:
    from bench.api.sandbox import docker_client, remove_leftovers

    if docker_client() is None:
        raise UserError("no Docker engine answers, so there are no containers to clean", "start Docker")
    console = make_console()
    removed = remove_leftovers(args.run_dir)
    for where, names in removed.items():
        console.print(f"removed {len(names)} leftover container(s) of {where}: {', '.join(names)}")
    if not removed:
        console.print("no leftover containers (containers of live runs are kept)")
    return 0


def cmd_tune(args) -> int:
    from bench.interrupt import interruptible
    from bench.tune import best_point, label_of, parse_grid, ranked_by, tune

    console = make_console()
    with interruptible():  # SIGTERM/SIGINT: the running container is removed on the way out
        table = tune(
            args.model,
            args.dataset,
            profile=args.profile,
            grid=parse_grid(args.grid),
            budget=args.budget,
            seed=args.seed,
            label_key=args.label_key,
            device=args.device,
            out=args.out,
            console=console,
        )
    best, score = best_point(table)
    label = label_of(ranked_by())
    console.print(f"best by validation {label}: {best} ({label} {score:.4f}); table in {args.out}")
    return 0
