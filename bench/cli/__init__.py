"""The `bench` command line: :func:`main` and the table of its commands.

This package: the grammar (sub-commands, flags, help) in :mod:`.parser`, one function per
sub-command; the commands of one run dir in :mod:`.runs`, across run dirs in :mod:`.results`, of
what is installed in :mod:`.plugins`; the consoles they print to in :mod:`.console`.
``python -m bench.cli`` runs :func:`main` (:mod:`.__main__`).
"""

from __future__ import annotations

import argparse
import sys

from bench.api.errors import UserError
from bench.cli.plugins import cmd_datasets, cmd_images, cmd_list, cmd_plugins
from bench.cli.results import cmd_baseline, cmd_check, cmd_site
from bench.cli.runs import cmd_clean, cmd_report, cmd_run, cmd_status, cmd_tune, spec_of

__all__ = ["COMMANDS", "build_parser", "main", "show_warning", "spec_of"]


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line on stderr: ``warning: <message>`` (with the category when it is not a
    plain UserWarning), never the source line Python's default format adds."""
    text = " ".join(str(message).split())
    kind = "" if category is UserWarning else f" ({category.__name__})"
    print(f"warning: {text}{kind}", file=file or sys.stderr, flush=True)


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
    """The `bench` parser (bench.cli.parser) with this module's commands."""
    from bench.cli.parser import build_parser as grammar

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
