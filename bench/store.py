"""Results store: SQLite in the run dir (stdlib sqlite3).

Tables: ``runs`` (spec + provenance), ``planned`` (every task a run planned, reused ones included:
what the tables count seeds against), ``tasks`` (key, status, timings, memory, error),
``task_values`` (long format: dataset, model, seed, experiment, metric, value) and ``artifacts``
(arrays for the report). A task's values and artifacts are written in one transaction with its
status, so an interrupted task leaves no partial values. Tables shown to users are derived from
here, never kept by hand.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.tasks import TaskRecord, TaskSpec

STORE_NAME = "bench.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    spec TEXT NOT NULL,
    provenance TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS planned (
    run_id INTEGER NOT NULL, key TEXT NOT NULL,
    dataset TEXT, model TEXT, seed INTEGER, experiment TEXT,
    metrics TEXT,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS tasks (
    key TEXT PRIMARY KEY,
    run_id INTEGER,
    dataset TEXT, model TEXT, seed INTEGER, experiment TEXT,
    spec TEXT,
    status TEXT NOT NULL,
    started REAL, finished REAL,
    fit_seconds REAL, peak_rss_mb REAL, peak_gpu_mb REAL,
    host TEXT, error TEXT, log_tail TEXT, info TEXT
);
CREATE TABLE IF NOT EXISTS task_values (
    task_key TEXT NOT NULL,
    dataset TEXT, model TEXT, seed INTEGER, experiment TEXT,
    metric TEXT NOT NULL, value REAL,
    PRIMARY KEY (task_key, metric)
);
CREATE TABLE IF NOT EXISTS artifacts (
    task_key TEXT NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (task_key, name)
);
"""


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


class Store:
    def __init__(self, run_dir: str | Path, *, create: bool = True):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / STORE_NAME
        if not create and not self.path.exists():
            from bench.errors import UserError

            raise UserError(
                f"no scgenbench results in {self.run_dir}", "give the run dir that `bench run` wrote"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=DELETE")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- runs -----------------------------------------------------------------------------------
    def add_run(self, spec: dict[str, Any], provenance: dict[str, Any]) -> int:
        cur = self.conn.execute(
            "INSERT INTO runs (created, spec, provenance) VALUES (?, ?, ?)",
            (time.time(), json.dumps(spec, default=str), json.dumps(provenance, default=str)),
        )
        return int(cur.lastrowid)

    def runs(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT run_id, created, spec, provenance FROM runs ORDER BY run_id"
        ).fetchall()
        return [
            {"run_id": r[0], "created": r[1], "spec": json.loads(r[2]), "provenance": json.loads(r[3])}
            for r in rows
        ]

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

    def planned(self, run_id: int | None = None) -> pd.DataFrame:
        """The planned tasks (key, dataset, model, seed, experiment, metrics list, status, error)
        of one run, or, without ``run_id``, of the store: per (dataset, model, seed, experiment)
        the task the latest run planned, so results of code that a later run replaced are left
        out. Stores written before plans were recorded: every task the store holds."""
        cols = ["key", "dataset", "model", "seed", "experiment", "metrics"]
        if run_id is not None:
            df = pd.read_sql_query(
                f"SELECT {', '.join(cols)} FROM planned WHERE run_id=?", self.conn, params=(run_id,)
            )
        elif self.conn.execute("SELECT 1 FROM planned LIMIT 1").fetchone():
            df = pd.read_sql_query(
                f"SELECT {', '.join('p.' + c for c in cols)} FROM planned p JOIN (SELECT dataset, model, seed, "
                "experiment, MAX(run_id) AS run_id FROM planned GROUP BY dataset, model, seed, experiment) l "
                "ON p.run_id = l.run_id AND p.dataset = l.dataset AND p.model = l.model AND p.seed = l.seed "
                "AND p.experiment = l.experiment",
                self.conn,
            )
        else:
            df = pd.read_sql_query(
                "SELECT key, dataset, model, seed, experiment, spec FROM tasks "
                "ORDER BY COALESCE(finished, started, 0)",
                self.conn,
            )
            df["metrics"] = [
                json.dumps(sorted(json.loads(s).get("metrics") or {})) if s else "[]" for s in df.spec
            ]
            df = df.drop(columns="spec").drop_duplicates(
                ["dataset", "model", "seed", "experiment"], keep="last"
            )
        df["metrics"] = [json.loads(m) if m else [] for m in df.metrics]
        states = pd.read_sql_query("SELECT key, status, error FROM tasks", self.conn)
        df = df.merge(states, on="key", how="left")
        df["status"] = df.status.fillna("not started")
        return df.sort_values(["dataset", "model", "experiment", "seed"]).reset_index(drop=True)

    # -- tasks ----------------------------------------------------------------------------------
    def done_keys(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT key FROM tasks WHERE status='done'")}

    def status_of(self, keys: Iterable[str]) -> dict[str, str]:
        keys = list(keys)
        out: dict[str, str] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT key, status FROM tasks WHERE key IN ({','.join('?' * len(chunk))})"
            out.update(dict(self.conn.execute(q, chunk).fetchall()))
        return out

    def mark_running(self, spec: TaskSpec, run_id: int | None) -> None:
        """Note a task as started (no values): a task killed now is redone on the next run."""
        self.conn.execute(
            "INSERT INTO tasks (key, run_id, dataset, model, seed, experiment, spec, status, started) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?) "
            "ON CONFLICT(key) DO UPDATE SET status='running', run_id=excluded.run_id, started=excluded.started",
            (
                *_task_columns(spec, run_id),
                time.time(),
            ),
        )

    def write_record(self, spec: TaskSpec, rec: TaskRecord, run_id: int | None) -> None:
        """Write a finished task (status, values, artifacts) in one transaction."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
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
                    "INSERT INTO task_values VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (spec.key, spec.dataset, spec.model, spec.seed, spec.experiment, m, v)
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

    def mark_state(self, spec: TaskSpec, run_id: int | None, status: str) -> None:
        """Note a task's progress without values (e.g. 'planned', 'submitted' by the Slurm executor);
        like :meth:`mark_running`, a task in such a state is not done and is redone on the next run."""
        self.conn.execute(
            "INSERT INTO tasks (key, run_id, dataset, model, seed, experiment, spec, status, started) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET status=excluded.status, run_id=excluded.run_id, "
            "started=excluded.started, finished=NULL",
            (
                *_task_columns(spec, run_id),
                status,
                time.time(),
            ),
        )

    def task_states(self, keys: Iterable[str]) -> dict[str, tuple[str, float | None]]:
        """``{key: (status, finished)}`` of the given tasks that the store has."""
        keys = list(keys)
        out: dict[str, tuple[str, float | None]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT key, status, finished FROM tasks WHERE key IN ({','.join('?' * len(chunk))})"
            out.update({k: (s, f) for k, s, f in self.conn.execute(q, chunk).fetchall()})
        return out

    def task_row(self, key: str) -> dict[str, Any] | None:
        """One task's row (status, timings, error, log tail...) as a dict, or None."""
        cur = self.conn.execute("SELECT * FROM tasks WHERE key=?", (key,))
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row, strict=True)) if row else None

    def tasks(self) -> pd.DataFrame:
        return pd.read_sql_query(
            "SELECT key, run_id, dataset, model, seed, experiment, status, started, finished, fit_seconds, "
            "peak_rss_mb, peak_gpu_mb, host, error, log_tail FROM tasks ORDER BY dataset, model, seed, experiment",
            self.conn,
        )

    def task_spec(self, key: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT spec FROM tasks WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def task_info(self, key: str) -> dict[str, Any]:
        row = self.conn.execute("SELECT info FROM tasks WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row and row[0] else {}

    # -- values and artifacts -------------------------------------------------------------------
    def values(self, keys: Iterable[str] | None = None) -> pd.DataFrame:
        """Long table of every finished task's values (optionally only the given task keys)."""
        df = pd.read_sql_query(
            "SELECT v.task_key, v.dataset, v.model, v.seed, v.experiment, v.metric, v.value FROM task_values v "
            "JOIN tasks t ON t.key = v.task_key WHERE t.status='done' "
            "ORDER BY v.dataset, v.model, v.seed, v.experiment, v.metric",
            self.conn,
        )
        if keys is not None:
            df = df[df.task_key.isin(set(keys))]
        return df.reset_index(drop=True)

    def artifact(self, task_key: str, name: str) -> np.ndarray | None:
        row = self.conn.execute(
            "SELECT data FROM artifacts WHERE task_key=? AND name=?", (task_key, name)
        ).fetchone()
        return _from_blob(row[0]) if row else None

    def artifact_names(self, task_key: str) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT name FROM artifacts WHERE task_key=? ORDER BY name", (task_key,)
            )
        ]

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
            values = [
                tuple(r)
                for r in other.conn.execute("SELECT metric, value FROM task_values WHERE task_key=?", (key,))
            ]
            arts = {name: other.artifact(key, name) for name in other.artifact_names(key)}
            rec = TaskRecord(
                key=key,
                status=row[0],
                values=values,
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


def _to_blob(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def _from_blob(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)
