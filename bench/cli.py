"""The `bench` command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.api.errors import UserError
from bench.config import PROFILES


def _console(stderr: bool = False, *, wide: bool = True):
    """A rich console on stdout (or stderr). In a terminal: the terminal's width. In a log (CI,
    Slurm, a pipe): 200 columns, so wide tables (`bench list`, `bench check`, `bench report --all`)
    stay readable; ``wide=False`` (the headline view of `bench run` and `bench report`): $COLUMNS,
    else 120, the width those tables are made to fit."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        width = None
    elif wide:
        width = 200
    else:
        width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else 120
    # soft_wrap: a message line is never broken (logs stay greppable); tables still fit the width
    return Console(stderr=stderr, highlight=False, width=width, soft_wrap=True)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line on stderr: ``warning: <message>`` (with the category when it is not a
    plain UserWarning), never the source line Python's default format adds."""
    text = " ".join(str(message).split())
    kind = "" if category is UserWarning else f" ({category.__name__})"
    print(f"warning: {text}{kind}", file=file or sys.stderr, flush=True)


def _interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


# -- commands ----------------------------------------------------------------------------------


def spec_of(args):
    """The RunSpec of parsed `bench run` arguments (flags over the --config file over the profile)."""
    from bench.config import build_spec, load_toml, parse_list

    cfg = load_toml(args.config) if args.config else None
    executor = {}
    for key in ("executor", "partition", "account", "qos"):
        val = getattr(args, key)
        if val is not None:
            executor["name" if key == "executor" else key] = val
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
    console = _console(wide=False)
    run_dir = Path(args.out) if args.out else default_run_dir(spec)
    if args.dry_run:
        dry_run(spec, run_dir, console=console)
        return 0
    result = run(
        spec,
        run_dir,
        force=args.force,
        progress=_interactive(),
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
        paths = _write_store_files(store, run_dir, prov)
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


def _write_store_files(store, run_dir, prov, report=None) -> list:
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

    console = _console(wide=args.all)
    with Store(args.run_dir, create=False) as store:
        report = rpt.build(store)
        runs = store.runs()
        prov = runs[-1]["provenance"] if runs else None
        if args.all:
            rpt.print_tables(report, console)
        else:
            selected = (runs[-1].get("spec") or {}).get("metrics") if runs else None
            print_headline(report, console, args.run_dir, selected)
        paths = _write_store_files(store, args.run_dir, prov, report)
        if args.html:
            from bench.report.html import write_html

            paths.append(write_html(store, args.run_dir, out=args.output, report=report))
    console.print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def cmd_site(args) -> int:
    from bench.site import build_site

    pages = build_site(args.run_dirs, args.output, link=args.link)
    _console(wide=False).print(f"wrote {len(pages)} pages; open {Path(args.output) / 'index.html'}")
    return 0


def _values(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items() if v is not None) or "-"


def cmd_list(args) -> int:
    from rich.table import Table

    from bench.api.metric import arrow
    from bench.generators.container import enforced_sandbox
    from bench.registry import available, broken

    console = _console()
    profile = args.profile
    n_genes = PROFILES[profile]["n_top_genes"]
    other = " / ".join(f"--profile {p}" for p in PROFILES if p != profile)
    console.print(
        f"profile [bold]{profile}[/bold]{' (the default)' if profile == 'quick' else ''}: "
        f"{f'{n_genes:,} highly variable genes' if n_genes else 'all genes'}; the values below are "
        f"this profile's ({other} for the others)"
    )
    kinds = [args.kind] if args.kind else ["generators", "metrics", "datasets"]
    for kind in kinds:
        table = Table(title=kind, title_justify="left")
        items = available(kind)
        if kind == "generators":
            # sandbox: what the harness enforces, derived from the class, never self-reported
            # (bench.generators.container.enforced_sandbox): "default" (docs/docker.md, security
            # model), the relaxations of a container model's declared sandbox, or "in-process"
            for col in (
                "name",
                "conditional",
                "output scale",
                "GPU",
                "sandbox",
                "description / paper",
                f"{profile} profile sets",
            ):
                table.add_column(col)
            for name, cls in items.items():
                table.add_row(
                    name,
                    str(cls.conditional),
                    cls.output_scale,
                    "yes" if cls.needs_gpu else "no",
                    enforced_sandbox(cls),
                    " / ".join(t for t in (cls.description, cls.paper) if t) or repr(cls),
                    _values(cls.profiles.get(profile, {})),
                )
        elif kind == "metrics":
            for col in ("name", "kind", "values (direction)", "description", f"options ({profile})"):
                table.add_column(col)
            for name, m in items.items():
                dirs = ", ".join(f"{k} {arrow(v, m.targets.get(k))}" for k, v in m.directions.items())
                table.add_row(name, m.kind, dirs, m.description, _values(m.options_for(profile)))
        else:
            table.add_column("name")
            table.add_column("description")
            for name, recipe in items.items():
                table.add_row(name, recipe.description)
        console.print(table)
        for name, bad in broken(kind).items():  # listed apart: they cannot be used until fixed
            console.print(f"[red]broken {kind[:-1]} plugin[/red] {name}: {bad.reason} ({bad.target})")
    return 0


def cmd_datasets(args) -> int:
    from bench import datasets

    console = _console()
    if args.action == "add":
        info = datasets.add(args.name, args.path)
        console.print(
            f"registered {args.name}: {info.get('path', args.path)} (sha256 {str(info.get('sha256', ''))[:12]}…)"
        )
    elif args.action == "info":
        info = datasets.info(args.name)
        for key, value in info.items():
            console.print(f"[bold]{key}[/bold]: {value}")
    else:
        for item in datasets.list_datasets():
            console.print(f"[bold]{item['name']}[/bold]: {item.get('description', '')}")
    return 0


def cmd_images(args) -> int:
    from bench.api import userconfig
    from bench.generators.container import build_image

    name = args.name
    from bench.registry import looks_like_path, use_manifest

    if looks_like_path(name):  # a manifest plugin's directory
        name = use_manifest(name)
    tag = build_image(name, base_image=args.base_image, progress=True, variant=args.variant)
    console = _console()
    console.print(f"built {tag}")
    if args.base_image and not args.no_record:
        # what setup builds is what a run uses: runs look the base up here (docs/docker.md)
        key = "gpu_base_image" if args.variant == "gpu" else "base_image"
        where = userconfig.record("docker", key, args.base_image)
        console.print(f"recorded {args.base_image} as your {args.variant} base image ({key} in {where})")
    return 0


def cmd_plugins(args) -> int:
    from rich.table import Table

    from bench.api import userconfig
    from bench.registry import MANIFEST_TABLE, available, broken, installed, manifest_entries

    console = _console()
    if args.action == "add":
        from bench.generators.container import manifest_generator

        cls = manifest_generator(args.path)  # every field checked: one line naming the file and field
        m = cls.manifest
        if m.name in installed("generators"):
            raise UserError(
                f"{args.path}: an installed generator is already named '{m.name}'",
                f"rename it (name = ... in {m.file})",
            )
        before = userconfig.get(MANIFEST_TABLE, m.name)
        where = userconfig.record(MANIFEST_TABLE, m.name, str(m.root))
        verb = "registered" if before is None else ("re-registered" if before == str(m.root) else "moved")
        console.print(f"{verb} generator '{m.name}' ({m.root}) in {where}", markup=False, highlight=False)
        image = m.image.get("ref") or f"built from {m.image['dockerfile']} on first use"
        console.print(
            f"image: {image}; run it with `bench run --models {m.name}`", markup=False, highlight=False
        )
        return 0
    if args.action == "remove":
        if not userconfig.forget(MANIFEST_TABLE, args.name):
            known = ", ".join(userconfig.load().get(MANIFEST_TABLE, {})) or "none"
            raise UserError(f"no manifest generator '{args.name}' is registered", f"registered: {known}")
        console.print(
            f"removed generator '{args.name}' from {userconfig.path()}", markup=False, highlight=False
        )
        return 0
    table = Table(title=f"manifest generators ({userconfig.path()})", title_justify="left")
    for col in ("name", "manifest", "state"):
        table.add_column(col)
    bad = broken("generators")
    ok = available("generators")
    for name, path in manifest_entries():
        key = name or path
        if key in bad:
            state = f"broken: {bad[key].reason}"
        elif name is not None and name in ok:
            state = "ok"
        else:
            state = "ok (this run: $BENCH_MANIFESTS)" if name is None else "?"
        table.add_row(key, path, state)
    console.print(table)
    if not manifest_entries():
        console.print("none registered; add one with `bench plugins add PATH`")
    return 0


def _scope(args) -> dict:
    from bench.config import check_experiments, parse_list

    experiments = parse_list(args.experiments)
    check_experiments(experiments)
    return {"experiments": experiments, "models": parse_list(args.models)}


def cmd_check(args) -> int:
    from bench.regression import check

    return check(
        args.run_dir, args.baseline, console=_console(), rel=args.rel, sd_units=args.sd_units, **_scope(args)
    )


def cmd_baseline(args) -> int:
    from bench.regression import write_baseline

    console = _console()
    path = write_baseline(args.run_dir, args.output, console=_console(stderr=True), **_scope(args))
    console.print(f"wrote baseline {path}")
    return 0


def cmd_tune(args) -> int:
    from bench.interrupt import interruptible
    from bench.tune import best_point, label_of, parse_grid, ranked_by, tune

    console = _console()
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


def cmd_clean(args) -> int:
    from bench.api.sandbox import docker_client, remove_leftovers

    if docker_client() is None:
        raise UserError("no Docker engine answers, so there are no containers to clean", "start Docker")
    console = _console()
    removed = remove_leftovers(args.run_dir)
    for where, names in removed.items():
        console.print(f"removed {len(names)} leftover container(s) of {where}: {', '.join(names)}")
    if not removed:
        console.print("no leftover containers (containers of live runs are kept)")
    return 0


def cmd_status(args) -> int:
    from bench.status import show_status

    return show_status(args.run_dir, console=_console())


# -- parser ------------------------------------------------------------------------------------

COMMANDS = {
    "baseline": cmd_baseline,
    "check": cmd_check,
    "datasets": cmd_datasets,
    "images": cmd_images,
    "list": cmd_list,
    "plugins": cmd_plugins,
    "report": cmd_report,
    "site": cmd_site,
    "run": cmd_run,
    "status": cmd_status,
    "clean": cmd_clean,
    "tune": cmd_tune,
}


def build_parser() -> argparse.ArgumentParser:
    """The `bench` parser (bench.cli_parser) with this module's commands."""
    from bench.cli_parser import build_parser as grammar

    return grammar(COMMANDS)


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.showwarning = show_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM inside `bench run` (bench.interrupt)
        from bench.interrupt import Interrupted

        stop = exc if isinstance(exc, Interrupted) else Interrupted()
        record = stop.record
        stopped = f"; task {record.key} was stopped and recorded as failed" if record is not None else ""
        print(f"{stop.reason if stop is exc else 'interrupted'}{stopped}; finished tasks are kept, "
              "run the same command to resume", file=sys.stderr)  # fmt: skip
        return stop.exit_code


if __name__ == "__main__":
    sys.exit(main())
