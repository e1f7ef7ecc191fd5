"""The `bench` commands across run dirs: `site` (a static results site), `check` and `baseline`
(the regression gate)."""

from __future__ import annotations

from pathlib import Path

from bench.cli.console import make_console


def cmd_site(args) -> int:
    from bench.site import build_site

    pages = build_site(args.run_dirs, args.output, link=args.link)
    make_console(wide=False).print(f"wrote {len(pages)} pages; open {Path(args.output) / 'index.html'}")
    return 0


def _scope(args) -> dict:
    from bench.config import check_experiments, parse_list

    experiments = parse_list(args.experiments)
    check_experiments(experiments)
    return {"experiments": experiments, "models": parse_list(args.models)}


def cmd_check(args) -> int:
    from bench.regression import check

    return check(
        args.run_dir,
        args.baseline,
        console=make_console(),
        rel=args.rel,
        sd_units=args.sd_units,
        **_scope(args),
    )


def cmd_baseline(args) -> int:
    from bench.regression import write_baseline

    console = make_console()
    path = write_baseline(args.run_dir, args.output, console=make_console(stderr=True), **_scope(args))
    console.print(f"wrote baseline {path}")
    return 0
