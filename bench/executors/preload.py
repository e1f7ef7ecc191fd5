"""What the forkserver of bench.executors.isolated imports once, so that a task's child process,
forked from it, does not import it again (torch and scanpy alone take seconds). Importing starts no
thread and touches no GPU, so forking after it is safe. Whatever fails to import here is imported
by the child when it needs it."""

from __future__ import annotations

import contextlib

for _name in ("torch", "scanpy", "anndata", "sklearn", "bench.pipeline", "bench.evaluation"):
    with contextlib.suppress(Exception):
        __import__(_name)

with contextlib.suppress(Exception):
    from bench import registry

    for _kind in ("generators", "metrics", "datasets"):
        registry.available(_kind)
