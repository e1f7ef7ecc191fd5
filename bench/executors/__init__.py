"""Executors run planned tasks: ``local`` on this machine (:mod:`.local`), ``slurm`` as Slurm jobs
(:mod:`.slurm`). Both follow :class:`~bench.executors.base.Executor`: they yield each task's new
state and result, and the runner alone writes them to the store."""

from __future__ import annotations

from typing import Any

from bench.api.errors import UserError
from bench.executors.base import Executor, Outcome

EXECUTORS = ("local", "slurm")


def make_executor(cfg: dict[str, Any]) -> Executor:
    """The executor of an ``[executor]`` table (``name`` plus its options)."""
    name = cfg.get("name", "local")
    if name == "local":
        from bench.executors.local import LocalExecutor

        stray = sorted(k for k in cfg if k not in ("name", "in_process"))
        if stray:
            flags = ", ".join(f"--{k}" for k in stray if k in ("partition", "account", "qos"))
            raise UserError(
                f"[executor] option(s) {stray} are not options of the local executor"
                + (f" ({flags} apply to --executor slurm only)" if flags else ""),
                'add --executor slurm (or name = "slurm" in [executor]), or remove them',
            )

        in_process = cfg.get("in_process", False)
        if not isinstance(in_process, bool):
            raise UserError(
                f"[executor] in_process must be true or false, got {in_process!r}",
                "use in_process = true (or --in-process) to run the tasks in the bench process",
            )
        return LocalExecutor(in_process=in_process)
    if name == "slurm":
        from bench.executors.slurm import SlurmExecutor

        return SlurmExecutor(**{k: v for k, v in cfg.items() if k != "name"})
    raise UserError(f"unknown executor '{name}'", f"use one of: {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "Executor", "Outcome", "make_executor"]
