"""The consoles the `bench` commands print to: rich, fitted to a terminal or a log."""

from __future__ import annotations

import os
import sys


def make_console(stderr: bool = False, *, wide: bool = True):
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


def interactive() -> bool:
    """Whether a person watches (stderr is a terminal, not CI): progress bars then."""
    return sys.stderr.isatty() and not os.environ.get("CI")
