"""The `bench` commands of what is installed: `list` (generators, metrics, datasets), `datasets`
(recipes and local copies), `images` (a generator's container image) and `plugins` (generators added
with a manifest)."""

from __future__ import annotations

from bench.api.errors import UserError
from bench.cli.console import make_console
from bench.config import PROFILES


def _values(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items() if v is not None) or "-"


def cmd_list(args) -> int:
    from rich.table import Table

    from bench.api.metric import arrow
    from bench.generators.container import enforced_sandbox
    from bench.registry import available, broken

    console = make_console()
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

    console = make_console()
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
    console = make_console()
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

    console = make_console()
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
