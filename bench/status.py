"""`bench status RUN_DIR`: progress of a run, e.g. one submitted to Slurm with ``--detach``.

Merges the record files that finished Slurm jobs wrote into the store (the same as the waiting
driver does), notes jobs that ended without a result as failed (with their log tails), and prints
one row per task: planned, submitted (queued), running, done or failed. Exit code 0 when no task
failed, 1 otherwise; running ``bench run`` with the same arguments again resubmits what is
missing, which helps for transient failures only (timeout, out of memory, killed: bench.failures).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.failures import retry_advice
from bench.tasks import task_label

STATES = ("planned", "submitted", "running", "done", "failed")
STYLE = {"planned": "dim", "submitted": "cyan", "running": "yellow", "done": "green", "failed": "red"}


def collect_status(
    run_dir: str | Path, *, grace_s: float = 0.0, states: dict[str, tuple[str, str]] | None = None
) -> list[dict[str, Any]]:
    """One dict per task of the run dir (label, key, job id, state, error, log tail), after merging
    new record files into the store. ``states`` (squeue's, for tests) is asked from squeue if None."""
    from bench.executors.slurm.ledger import load_ledger, refresh
    from bench.executors.slurm.queue import squeue_states
    from bench.runner import store_outcomes
    from bench.store import Store

    run_dir = Path(run_dir)
    with Store(run_dir, create=False) as store:
        ledger = load_ledger(run_dir)
        entries = ledger["tasks"]
        live: dict[str, str] = {}
        if entries:
            if states is None:
                states = squeue_states()
            live = store_outcomes(store, refresh(run_dir, store, ledger, grace_s=grace_s, states=states))
        tasks = store.tasks()
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        for t in tasks.itertuples(index=False):
            entry = entries.get(t.key, {})
            state = live.get(t.key) or t.status
            if state == "unknown":  # squeue could not be asked: say what the store knows
                state = t.status
            rows.append(
                {
                    "label": task_label(t.dataset, t.model, t.seed, t.experiment),
                    "key": t.key,
                    "job_id": entry.get("job_id", ""),
                    "state": state if state in STATES else str(state),
                    "error": _none(t.error),
                    "log_tail": _none(t.log_tail),
                    "finished": _none(t.finished),
                }
            )
            seen.add(t.key)
        for key, entry in entries.items():  # submitted but unknown to the store (should not happen)
            if key not in seen:
                rows.append(
                    {
                        "label": entry.get("label", key),
                        "key": key,
                        "job_id": entry.get("job_id", ""),
                        "state": live.get(key, "submitted"),
                        "error": None,
                        "log_tail": None,
                        "finished": None,
                    }
                )
    return rows


def _none(value):
    """SQL NULL as pandas reads it (NaN or None) -> None."""
    return None if value is None or (isinstance(value, float) and value != value) else value


def show_status(run_dir: str | Path, console=None, *, states=None) -> int:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    rows = collect_status(run_dir, states=states)
    counts = {s: sum(1 for r in rows if r["state"] == s) for s in STATES}
    table = Table(title=f"{run_dir}: {len(rows)} task(s)", title_justify="left")
    for col in ("task", "key", "Slurm job", "state", "finished / error"):
        table.add_column(col)
    order = {s: i for i, s in enumerate(("failed", "running", "submitted", "planned", "done"))}
    for r in sorted(rows, key=lambda r: (order.get(r["state"], 9), r["label"])):
        style = STYLE.get(r["state"], "")
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["finished"])) if r["finished"] else ""
        note = (r["error"] or "")[:100] if r["state"] == "failed" else when
        table.add_row(r["label"], r["key"][:10], r["job_id"], f"[{style}]{r['state']}[/{style}]", note)
    console.print(table)
    console.print("  ".join(f"{s}: {counts[s]}" for s in STATES))
    failed = [r for r in rows if r["state"] == "failed"]
    for r in failed:
        console.print(f"[red]FAILED[/red] {r['label']} (job {r['job_id'] or '-'}): {r['error']}")
        if r["log_tail"]:
            lines = r["log_tail"].rstrip().splitlines()[-30:]
            console.print("\n".join("    " + line for line in lines), markup=False, highlight=False)
    if failed:
        for line in retry_advice([(r["label"], r["error"]) for r in failed], run_dir):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    elif counts["submitted"] or counts["running"] or counts["planned"]:
        console.print("in progress; run `bench status` again later, or `bench report` for what is done")
    return 1 if failed else 0
