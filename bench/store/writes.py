"""The store's writes: runs, plans and task records, each task's values and artifacts in one
transaction with its status (an interrupted task leaves no partial values)."""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from bench.taskspec import TaskRecord, TaskSpec


def _task_columns(spec: TaskSpec, run_id: int | None) -> tuple:
    """The identity columns of a ``tasks`` row: key, run_id, dataset, model, seed, experiment, spec."""
    return (
        spec.key,
        run_id,
        spec.dataset,
        spec.model,
        spec.seed,
        spec.experiment,
        json.dumps(spec.to_dict(), default=str),
    )


def _to_blob(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


class StoreWrites:
    """What writes a store (a mixin of :class:`~bench.store.Store` over its connection)."""

    conn: sqlite3.Connection
    _has_params: bool

    def _add_params_column(self) -> None:
        """A store written before values had params gets the column on its first write (reading
        never changes a store); its older values keep NULL and read through
        :func:`~bench.store.reads.legacy_params`."""
        if self._has_params:
            return
        if "params" not in {r[1] for r in self.conn.execute("PRAGMA table_info(task_values)")}:
            try:
                self.conn.execute("ALTER TABLE task_values ADD COLUMN params TEXT")
            except sqlite3.OperationalError as exc:  # another process added it meanwhile
                if "duplicate column" not in str(exc):
                    raise
        self._has_params = True

    # -- runs -----------------------------------------------------------------------------------
    def add_run(self, spec: dict[str, Any], provenance: dict[str, Any]) -> int:
        cur = self.conn.execute(
            "INSERT INTO runs (created, spec, provenance) VALUES (?, ?, ?)",
            (time.time(), json.dumps(spec, default=str), json.dumps(provenance, default=str)),
        )
        return int(cur.lastrowid)

    # -- the plan of each run ------------------------------------------------------------------
    def add_planned(self, run_id: int, specs: Iterable[TaskSpec]) -> None:
        """Record the tasks a run planned (reused or not): the denominators of the tables."""
        self.conn.executemany(
            "INSERT OR REPLACE INTO planned VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (run_id, t.key, t.dataset, t.model, t.seed, t.experiment, json.dumps(sorted(t.metrics)))
                for t in specs
            ],
        )

    def mark_running(self, spec: TaskSpec, run_id: int | None) -> None:
        """Note a task as started (no values): a task killed now is redone on the next run. A task
        that is already done stays done (another process may have finished it since this one
        planned; its values stay visible until a new record replaces them)."""
        self.conn.execute(
            "INSERT INTO tasks (key, run_id, dataset, model, seed, experiment, spec, status, started) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?) "
            "ON CONFLICT(key) DO UPDATE SET status='running', run_id=excluded.run_id, started=excluded.started "
            "WHERE tasks.status != 'done'",
            (
                *_task_columns(spec, run_id),
                time.time(),
            ),
        )

    def write_record(self, spec: TaskSpec, rec: TaskRecord, run_id: int | None) -> None:
        """Write a finished task (status, values with their params, artifacts) in one transaction."""
        self._add_params_column()
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            if rec.status != "done":
                # a failed attempt never erases a result another process finished after it began
                row = c.execute("SELECT status, finished FROM tasks WHERE key=?", (spec.key,)).fetchone()
                if row and row[0] == "done" and (row[1] or 0) >= (rec.started or float("inf")):
                    c.execute("COMMIT")
                    return
            c.execute("DELETE FROM task_values WHERE task_key=?", (spec.key,))
            c.execute("DELETE FROM artifacts WHERE task_key=?", (spec.key,))
            c.execute(
                "INSERT OR REPLACE INTO tasks (key, run_id, dataset, model, seed, experiment, spec, status, "
                "started, finished, fit_seconds, peak_rss_mb, peak_gpu_mb, host, error, log_tail, info) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    *_task_columns(spec, run_id),
                    rec.status,
                    rec.started,
                    rec.finished,
                    rec.fit_seconds,
                    rec.peak_rss_mb,
                    rec.peak_gpu_mb,
                    rec.host,
                    rec.error,
                    rec.log_tail,
                    json.dumps(rec.info, default=str),
                ),
            )
            if rec.status == "done":
                c.executemany(
                    "INSERT INTO task_values (task_key, dataset, model, seed, experiment, metric, value, params) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            spec.key,
                            spec.dataset,
                            spec.model,
                            spec.seed,
                            spec.experiment,
                            m,
                            v,
                            json.dumps(rec.params.get(m) or {}, sort_keys=True, default=str),
                        )
                        for m, v in rec.values
                    ],
                )
                c.executemany(
                    "INSERT INTO artifacts VALUES (?, ?, ?)",
                    [(spec.key, name, _to_blob(arr)) for name, arr in rec.artifacts.items()],
                )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def fail_orphans(self, reason: str) -> list[str]:
        """Record as failed, with ``reason``, every task left ``running`` by a run of the local
        executor (its `bench run` process died without recording it: a kill, the out-of-memory
        killer); the keys. Tasks of Slurm runs are left to the Slurm ledger (their jobs may live on)."""
        rows = self.conn.execute(
            "SELECT t.key, r.spec FROM tasks t LEFT JOIN runs r ON r.run_id = t.run_id WHERE t.status = 'running'"
        ).fetchall()
        keys = []
        for key, spec in rows:
            executor = (json.loads(spec) if spec else {}).get("executor") or {}
            if executor.get("name", "local") == "local":
                keys.append(key)
        with self.conn:
            for key in keys:
                self.conn.execute(
                    "UPDATE tasks SET status = 'failed', error = ?, finished = ? WHERE key = ? AND status = 'running'",
                    (reason, time.time(), key),
                )
        return keys

    def mark_state(self, spec: TaskSpec, run_id: int | None, status: str) -> None:
        """Note a task's progress without values (e.g. 'planned', 'submitted' by the Slurm executor);
        like :meth:`mark_running`, a task in such a state is not done and is redone on the next run,
        and a done task is never flipped back."""
        self.conn.execute(
            "INSERT INTO tasks (key, run_id, dataset, model, seed, experiment, spec, status, started) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET status=excluded.status, run_id=excluded.run_id, "
            "started=excluded.started, finished=NULL WHERE tasks.status != 'done'",
            (
                *_task_columns(spec, run_id),
                status,
                time.time(),
            ),
        )
