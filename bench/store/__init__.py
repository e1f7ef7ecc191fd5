"""Results store: SQLite in the run dir (stdlib sqlite3).

Tables: ``runs`` (spec + provenance), ``planned`` (every task a run planned, reused ones included:
what the tables count seeds against), ``tasks`` (key, status, timings, memory, error),
``task_values`` (long format: dataset, model, seed, experiment, metric, value, and the value's
``params`` as JSON: condition, fraction, cell type, see :class:`~bench.api.metric.MetricOutput`)
and ``artifacts`` (arrays for the report). A task's values and artifacts are written in one transaction with its
status, so an interrupted task leaves no partial values. Tables shown to users are derived from
here, never kept by hand.

Stores written before values had ``params`` read the same: the column is added when such a store
is next written to, and the params of its older values are derived from their names by
:func:`legacy_params`, the one place that knows the old names.
"""

from __future__ import annotations

import json

from bench.store.reads import StoreReads, legacy_params
from bench.store.schema import SCHEMA, STORE_NAME, StoreFile, check_run_dir
from bench.store.writes import StoreWrites
from bench.taskspec import TaskRecord, TaskSpec

__all__ = ["SCHEMA", "STORE_NAME", "Store", "check_run_dir", "legacy_params"]


class Store(StoreWrites, StoreReads, StoreFile):
    """The results store of a run dir: its file (:mod:`.schema`), writes (:mod:`.writes`), queries
    (:mod:`.reads`) and the merge of another store into it."""

    def __enter__(self) -> Store:
        return self

    # -- merging --------------------------------------------------------------------------------
    def merge_from(self, other: Store) -> int:
        """Copy finished tasks of another store that this one lacks; returns how many were added."""
        mine = self.done_keys()
        n = 0
        for (key,) in other.conn.execute("SELECT key FROM tasks WHERE status='done'").fetchall():
            if key in mine:
                continue
            spec = TaskSpec.from_dict(other.task_spec(key))
            row = other.conn.execute(
                "SELECT status, started, finished, fit_seconds, peak_rss_mb, peak_gpu_mb, host, error, log_tail, info "
                "FROM tasks WHERE key=?",
                (key,),
            ).fetchone()
            values = other.task_values(key)
            arts = {name: other.artifact(key, name) for name in other.artifact_names(key)}
            rec = TaskRecord(
                key=key,
                status=row[0],
                values=[(m, v) for m, v, _ in values],
                params={m: p for m, _, p in values if p},
                artifacts=arts,
                info=json.loads(row[9] or "{}"),
                started=row[1],
                finished=row[2],
                fit_seconds=row[3],
                peak_rss_mb=row[4],
                peak_gpu_mb=row[5],
                host=row[6],
                error=row[7],
                log_tail=row[8],
            )
            self.write_record(spec, rec, None)
            n += 1
        for run in other.runs():
            new_id = self.add_run(run["spec"], {**run["provenance"], "merged_from": str(other.run_dir)})
            rows = other.conn.execute(
                "SELECT key, dataset, model, seed, experiment, metrics FROM planned WHERE run_id=?",
                (run["run_id"],),
            ).fetchall()
            self.conn.executemany(
                "INSERT OR REPLACE INTO planned VALUES (?, ?, ?, ?, ?, ?, ?)", [(new_id, *r) for r in rows]
            )
        return n
