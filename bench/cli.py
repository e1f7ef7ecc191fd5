"""The `bench` command line."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path

from bench.config import PROFILES
from bench.errors import UserError

RUN_EXAMPLES = textwrap.dedent(
    """\
    examples:
      bench run --models activa,nb --dataset pbmc3k               # quick profile, seed 0, + `real` control
      bench run --models activa,scgan --dataset brain_small --seeds 0,1,2 --profile paper
      bench run --models nb --dataset my.h5ad --label-key cell_type
      bench run --models nb --dataset my.h5ad                     # no labels: clustered like scGAN
      bench run --config run.toml --executor slurm --partition gpu --detach
    """
)
EPILOG = textwrap.dedent(
    """\
    examples:
      bench run --models activa,nb --dataset pbmc3k               # more: bench run --help
      bench report results/quick --html
      bench list generators
      bench datasets info brain_small
      bench datasets add brain_small ~/Downloads/20kBrainSmall_preprocessed.h5
      bench baseline results/quick -o baseline.json
      bench check results/quick --baseline results/baselines/quick-pbmc3k.json
    """
)


def _console(stderr: bool = False, *, wide: bool = False):
    """A rich console on stdout (or stderr). In a terminal: the terminal's width. In a log (CI,
    Slurm, a pipe): $COLUMNS, else 120 columns, the width the headline and paper tables are made to
    fit; ``wide`` (every table, `bench report --all`): 200, so the suite's wide tables stay readable."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        width = None
    elif wide:
        width = 200
    else:
        width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else 120
    return Console(stderr=stderr, highlight=False, width=width)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line on stderr: ``warning: <message>`` (with the category when it is not a
    plain UserWarning), never the source line Python's default format adds."""
    text = " ".join(str(message).split())
    kind = "" if category is UserWarning else f" ({category.__name__})"
    print(f"warning: {text}{kind}", file=file or sys.stderr, flush=True)


def _interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


# -- commands ----------------------------------------------------------------------------------


def cmd_run(args) -> int:
    from bench import report as rpt
    from bench.config import build_spec, load_toml, parse_list
    from bench.failures import retry_advice
    from bench.report.console import print_headline
    from bench.runner import default_run_dir, run
    from bench.store import Store
    from bench.tasks import task_label

    cfg = load_toml(args.config) if args.config else None
    executor = {}
    for key in ("executor", "partition", "account", "qos"):
        val = getattr(args, key)
        if val is not None:
            executor["name" if key == "executor" else key] = val
    spec = build_spec(
        cfg,
        models=parse_list(args.models),
        datasets=parse_list(args.dataset),
        seeds=parse_list(args.seeds, int),
        profile=args.profile,
        label_key=args.label_key,
        metrics=parse_list(args.metrics),
        experiments=parse_list(args.experiments),
        rare_class=args.rare_class,
        fractions=parse_list(args.fractions, float),
        device=args.device,
        main_generation=args.main_generation,
        timeout_s=args.timeout,
        control=False if args.no_control else None,
        check_orientation=False if args.no_orientation_check else None,
        executor=executor or None,
    )
    console = _console()
    run_dir = Path(args.out) if args.out else default_run_dir(spec)
    result = run(
        spec,
        run_dir,
        force=args.force,
        progress=_interactive(),
        console=console,
        detach=args.detach,
        argv=sys.argv,
    )
    if result["detached"]:
        console.print(f"submitted; follow with `bench status {run_dir}`")
        return 0
    with Store(run_dir) as store:
        report = rpt.build(store, result["run_id"])
        prov = store.runs()[-1]["provenance"]
        print_headline(report, console, run_dir)
        paths = rpt.write_files(report, run_dir, prov)
        failed = [
            (task_label(r["dataset"], r["model"], r["seed"], r["experiment"]), r["error"])
            for r in map(store.task_row, result["failed"])
            if r
        ]
    console.print(f"results: {run_dir} ({', '.join(p.name for p in paths)})")
    if result["failed"]:
        console.print(f"[red]{len(result['failed'])} task(s) failed[/red]")
        for line in retry_advice(failed, run_dir):
            console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
        return 1
    return 0


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
            print_headline(report, console, args.run_dir)
        paths = rpt.write_files(report, args.run_dir, prov)
        if args.html:
            from bench.report.html import write_html

            paths.append(write_html(store, args.run_dir, out=args.output))
    console.print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def _values(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items() if v is not None) or "-"


def cmd_list(args) -> int:
    from rich.table import Table

    from bench.config import PROFILES
    from bench.metrics.base import arrow
    from bench.registry import available

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
            # sandbox: "default" (docs/docker.md, security model), the relaxations a container model
            # declares, or "in-process" (runs inside the harness, like the harness's own code)
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
                meta = cls.metadata() if hasattr(cls, "metadata") else {}
                sets = getattr(cls, "profiles", {}).get(profile, {})
                table.add_row(
                    name,
                    str(meta.get("conditional", "?")),
                    str(meta.get("output_scale", "?")),
                    "yes" if meta.get("needs_gpu") else "no",
                    meta.get("sandbox", "in-process"),
                    " / ".join(t for t in (meta.get("description"), meta.get("paper")) if t) or repr(cls),
                    _values(sets),
                )
        elif kind == "metrics":
            for col in ("name", "kind", "values (direction)", "description", f"options ({profile})"):
                table.add_column(col)
            for name, m in items.items():
                targets = getattr(m, "targets", {})
                dirs = ", ".join(
                    f"{k} {arrow(v, targets.get(k))}" for k, v in getattr(m, "directions", {}).items()
                )
                options = m.options_for(profile) if hasattr(m, "options_for") else {}
                table.add_row(
                    name, getattr(m, "kind", "?"), dirs, getattr(m, "description", repr(m)), _values(options)
                )
        else:
            table.add_column("name")
            table.add_column("description")
            for name, recipe in items.items():
                table.add_row(name, getattr(recipe, "description", repr(recipe)))
        console.print(table)
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
    from bench import userconfig
    from bench.generators.container import build_image

    tag = build_image(args.name, base_image=args.base_image, progress=True, variant=args.variant)
    console = _console()
    console.print(f"built {tag}")
    if args.base_image and not args.no_record:
        # what setup builds is what a run uses: runs look the base up here (docs/docker.md)
        key = "gpu_base_image" if args.variant == "gpu" else "base_image"
        where = userconfig.record("docker", key, args.base_image)
        console.print(f"recorded {args.base_image} as your {args.variant} base image ({key} in {where})")
    return 0


def _scope(args) -> dict:
    from bench.config import EXPERIMENTS, parse_list

    experiments = parse_list(args.experiments)
    bad = sorted(set(experiments or []) - set(EXPERIMENTS))
    if bad:
        raise UserError(f"unknown experiment(s) {bad}", f"use: {', '.join(EXPERIMENTS)}")
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
    from bench.tune import parse_grid, tune

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
    scores = ("mmd", "cd", "mean_corr", "steps", "cells_seen", "fit_seconds")
    best = {k: v for k, v in table.to_dict("records")[0].items() if k not in scores}
    console.print(f"best by validation MMD: {best} (MMD {table.mmd.iloc[0]:.4f}); table in {args.out}")
    return 0


def cmd_status(args) -> int:
    from bench.status import show_status

    return show_status(args.run_dir, console=_console())


# -- parser ------------------------------------------------------------------------------------


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scgenbench")
    except PackageNotFoundError:  # a source tree that is not installed
        from bench import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench",
        description="scgenbench: benchmark generative models of single-cell RNA-seq data "
        "(ACTIVA, scGAN, cscGAN and plugins) with the ACTIVA paper's experiments.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s (scgenbench) {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser(
        "run",
        help="train, generate and score models on datasets",
        epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("--models", help="comma-separated generator names (see `bench list generators`)")
    r.add_argument(
        "--dataset",
        "--datasets",
        dest="dataset",
        help="dataset name(s) or path (.h5ad, 10x .h5, 10x matrix dir); default pbmc3k",
    )
    r.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2 (default 0)")
    r.add_argument(
        "--profile",
        choices=list(PROFILES),
        help="quick (CPU smoke test, default), standard (converged on the bundled data, ~30 min per "
        "model and seed on 2 cores) or paper (the published settings, for a GPU)",
    )
    r.add_argument("--config", help="TOML file with the run spec (CLI flags override it)")
    r.add_argument("--label-key", help="obs column with cell-type labels (for files given by path)")
    r.add_argument(
        "--rare-class",
        help="label the augmentation experiment downsamples (default: the smallest "
        "type keeping >= 5 training cells at the smallest fraction)",
    )
    r.add_argument(
        "--fractions",
        help="augmentation: fractions of the rare class kept, e.g. 0.1,0.05,0.01,0.005 "
        "(the paper's, the default)",
    )
    r.add_argument("--metrics", help="comma-separated metric names (default: all installed)")
    r.add_argument("--experiments", help="main,augmentation (default both)")
    r.add_argument(
        "--main-generation",
        choices=["unconditional", "per-label"],
        help="main experiment: sample freely (paper protocol, default) or the test set's per-label counts",
    )
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto: CUDA when available")
    r.add_argument("--out", help="run dir (default results/<profile>)")
    r.add_argument("--force", action="store_true", help="recompute tasks the store already has")
    r.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="wall-clock limit per task: stops a generator's container and also its in-process "
        "training (checked between training steps); the task is recorded as failed",
    )
    r.add_argument(
        "--no-control",
        action="store_true",
        help="do not add the `real` (positive) and `shuffled` (negative) controls",
    )
    r.add_argument(
        "--no-orientation-check",
        action="store_true",
        help="accept a file whose names look transposed (barcodes as var, genes as obs); "
        "by default such a file is refused (docs/datasets.md)",
    )
    r.add_argument("--executor", choices=["local", "slurm"], help="where tasks run (default local)")
    r.add_argument("--partition", help="Slurm partition")
    r.add_argument("--account", help="Slurm account")
    r.add_argument("--qos", help="Slurm QOS")
    r.add_argument("--detach", action="store_true", help="submit (Slurm) and return at once")
    r.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="tables (and --html report) of a run dir")
    rep.add_argument("run_dir", help="run dir of `bench run` (--out; default results/<profile>)")
    rep.add_argument("--html", action="store_true", help="write a self-contained HTML report")
    rep.add_argument(
        "--all", action="store_true", help="print every table (default: the headline and the paper's tables)"
    )
    rep.add_argument("-o", "--output", help="HTML output path (default RUN_DIR/report.html)")
    rep.set_defaults(func=cmd_report)

    ls = sub.add_parser("list", help="installed generators, metrics and datasets")
    ls.add_argument(
        "kind",
        nargs="?",
        choices=["generators", "metrics", "datasets"],
        help="list only these (default: all three)",
    )
    ls.add_argument(
        "--profile",
        choices=list(PROFILES),
        default="quick",
        help="show this run profile's parameter and option values (default quick)",
    )
    ls.set_defaults(func=cmd_list)

    ds = sub.add_parser("datasets", help="dataset recipes: list, info, add a local copy")
    dsub = ds.add_subparsers(dest="action", metavar="ACTION")
    dsub.add_parser("list", help="list dataset recipes")
    info = dsub.add_parser("info", help="show a dataset's source, licence, cache state")
    info.add_argument("name", help="registered dataset name (see `bench datasets list`)")
    add = dsub.add_parser("add", help="register a local file for a dataset (no download)")
    add.add_argument("name", help="registered dataset name, e.g. brain_small")
    add.add_argument("path", help="your local copy of that dataset's file")
    ds.set_defaults(func=cmd_datasets, action="list")

    im = sub.add_parser("images", help="container images of generators")
    isub = im.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = isub.add_parser("build", help="build a generator's image")
    b.add_argument("name", help="generator with an image, e.g. scgan")
    b.add_argument(
        "--base-image",
        help="base image; recorded in your settings file as the one runs use (default: $BENCH_BASE_IMAGE, "
        "the recorded one, python:3.11-slim, a local image labelled org.scgenbench.base; docs/docker.md)",
    )
    b.add_argument("--no-record", action="store_true", help="do not record --base-image as your base image")
    b.add_argument(
        "--variant",
        choices=["cpu", "gpu"],
        default="cpu",
        help="cpu (default) or gpu: the framework built with CUDA, what --device cuda runs",
    )
    im.set_defaults(func=cmd_images)

    ck = sub.add_parser(
        "check",
        help="compare a run with a baseline; exit 1 on regression",
        description="Compare every directional value of RUN_DIR with a baseline file: "
        "exit 1 when a value got worse by more than its slack or is missing, else 0.",
    )
    ck.add_argument("run_dir", help="run dir of the `bench run` to check")
    ck.add_argument(
        "--baseline",
        required=True,
        metavar="BASELINE.json",
        help="baseline file written by `bench baseline` (from a trusted run)",
    )
    ck.add_argument(
        "--rel",
        type=float,
        help="slack as a fraction of the value's own scale (default 0.05; overrides the baseline's)",
    )
    ck.add_argument(
        "--sd-units", type=float, help="slack in seed-to-seed sd units (default 3; overrides the baseline's)"
    )
    ck.add_argument("--experiments", help="check only these experiments, e.g. main")
    ck.add_argument("--models", help="check only these models, e.g. nb,real")
    ck.set_defaults(func=cmd_check)

    bl = sub.add_parser(
        "baseline",
        help="write a regression baseline from a run dir",
        description="Write the mean and seed-to-seed sd of every directional value of a "
        "trusted run (use several seeds), with the slack, for `bench check`.",
    )
    bl.add_argument("run_dir", help="run dir of a trusted `bench run`")
    bl.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="BASELINE.json",
        help="where to write the baseline (commit it next to your CI config)",
    )
    bl.add_argument("--experiments", help="only these experiments, e.g. main")
    bl.add_argument("--models", help="only these models, e.g. my_model,nb,real")
    bl.set_defaults(func=cmd_baseline)

    tu = sub.add_parser(
        "tune",
        help="the standard profile's tuning sweep: a model's grid scored by MMD on a validation split "
        "of the training cells",
    )
    tu.add_argument("--model", required=True, help="generator name")
    tu.add_argument("--dataset", default="pbmc3k", help="dataset name or path (default pbmc3k)")
    tu.add_argument(
        "--profile",
        default="standard",
        choices=list(PROFILES),
        help="profile whose settings the grid points override (default standard)",
    )
    tu.add_argument(
        "--grid",
        action="append",
        metavar="NAME=V1,V2",
        help="a grid axis (repeatable); default: the generator's own tuning grid",
    )
    tu.add_argument("--budget", help='training budget of every point, in epochs (e.g. "300 epochs")')
    tu.add_argument("--seed", type=int, default=0, help="seed of the fits and of the validation split")
    tu.add_argument("--label-key", help="obs column with cell-type labels (for files given by path)")
    tu.add_argument(
        "--device", default="cpu", choices=["cpu", "cuda"], help="where the fits run (default cpu)"
    )
    tu.add_argument("--out", default="results/tuning", help="where the sweep table goes")
    tu.set_defaults(func=cmd_tune)

    st = sub.add_parser("status", help="progress of a (detached) run")
    st.add_argument("run_dir", help="run dir of a `bench run` (Slurm runs: also the jobs' states)")
    st.set_defaults(func=cmd_status)
    return p


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
        reason = getattr(exc, "reason", "interrupted")
        record = getattr(exc, "record", None)
        stopped = f"; task {record.key} was stopped and recorded as failed" if record is not None else ""
        print(f"{reason}{stopped}; finished tasks are kept, run the same command to resume", file=sys.stderr)
        return int(getattr(exc, "exit_code", 130))


if __name__ == "__main__":
    sys.exit(main())
