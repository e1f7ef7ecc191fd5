"""The runner: plan the task grid of a RunSpec (:mod:`bench.planning`), skip what the store already
has, execute the rest and store every outcome; ``--dry-run`` prints the plan instead."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import provenance
from bench.api.contract import resolve_device
from bench.config import DEFAULT_PROTOCOL, RunSpec
from bench.executors.base import Outcome
from bench.interrupt import Interrupted
from bench.planning import Plan, plan
from bench.tasks import TaskSpec


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
