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

import io
import json
import re
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
    params TEXT,
    PRIMARY KEY (task_key, metric)
);
CREATE TABLE IF NOT EXISTS artifacts (
    task_key TEXT NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (task_key, name)
);
"""


# value names of the augmentation experiment before params were stored: f1_<arm>@<fraction>, and
# n_rare_train@<fraction> / filter_share@<fraction>
_LEGACY_ARM = re.compile(r"^f1_(?P<condition>[a-z]+)@(?P<fraction>[0-9.eE-]+)$")


def legacy_params(name: str, experiment: str, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The params of a value that a store written before the ``params`` column holds, derived from
    its name (the only place names are parsed): ``f1_<arm>@<fraction>`` -> ``{"condition": arm,
    "fraction": fraction}``, any other ``<name>@<fraction>`` -> ``{"fraction": fraction}``, plus
    ``"cell_type"``, the experiment's rare class, when the task's ``info`` recorded it; ``{}`` for
    every other name. The same dicts as the augmentation metric writes today."""
    stem, sep, tag = name.partition("@")
    if not sep:
        return {}
    try:
        fraction = float(tag)
    except ValueError:
        return {}
    out: dict[str, Any] = {"fraction": fraction}
    rare = (((info or {}).get("metrics") or {}).get(experiment) or {}).get("rare_class")
    if rare is not None:
        out["cell_type"] = str(rare)
    arm = _LEGACY_ARM.match(name)
    if arm:
        out["condition"] = arm["condition"]
    return out


def _unreadable(path: Path, exc: Exception):
    from bench.api.errors import UserError

    return UserError(
        f"{path} is not a readable scgenbench store ({exc})",
        "move that file away (or restore it from a copy), or give another run dir",
    )


def check_run_dir(run_dir: str | Path, *, integrity: bool = True) -> None:
    """UserError (writing nothing) when ``run_dir`` cannot be a run dir: it, or a folder above it,
    is a file, or (``integrity``: SQLite's quick_check, which reads every page) it holds a
    ``bench.sqlite`` that is not a readable SQLite store."""
    from bench.api.errors import UserError

    run_dir = Path(run_dir)
    for folder in (run_dir, *run_dir.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "" if folder == run_dir else f" ({folder} is a file)"
                raise UserError(
                    f"run dir {run_dir} is not a directory{where}", "give a new or existing folder with --out"
                )
            break
    path = run_dir / STORE_NAME
    if not integrity or not path.exists():
        return
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
        try:
            row = conn.execute("PRAGMA quick_check").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise _unreadable(path, exc) from None
    if not row or row[0] != "ok":
        raise _unreadable(path, f"integrity check: {row[0] if row else 'no answer'}")


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
            from bench.api.errors import UserError

            raise UserError(
                f"no scgenbench results in {self.run_dir}", "give the run dir that `bench run` wrote"
            )
        check_run_dir(self.run_dir, integrity=not create)  # `bench run` checked it before planning
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            self.conn.execute("PRAGMA journal_mode=DELETE")
            self.conn.executescript(SCHEMA)
            columns = {r[1] for r in self.conn.execute("PRAGMA table_info(task_values)")}
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise _unreadable(self.path, exc) from None
        self._has_params = "params" in columns

    def _add_params_column(self) -> None:
        """A store written before values had params gets the column on its first write (reading
        never changes a store); its older values keep NULL and read through :func:`legacy_params`."""
        if self._has_params:
            return
        if "params" not in {r[1] for r in self.conn.execute("PRAGMA table_info(task_values)")}:
            try:
                self.conn.execute("ALTER TABLE task_values ADD COLUMN params TEXT")
            except sqlite3.OperationalError as exc:  # another process added it meanwhile
                if "duplicate column" not in str(exc):
                    raise
        self._has_params = True

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
        """Long table of every finished task's values (optionally only the given task keys), with
        ``params``: each value's parameters as a dict (``{}`` for none)."""
        params = "v.params" if self._has_params else "NULL AS params"
        df = pd.read_sql_query(
            f"SELECT v.task_key, v.dataset, v.model, v.seed, v.experiment, v.metric, v.value, {params} "
            "FROM task_values v JOIN tasks t ON t.key = v.task_key WHERE t.status='done' "
            "ORDER BY v.dataset, v.model, v.seed, v.experiment, v.metric",
            self.conn,
        )
        if keys is not None:
            df = df[df.task_key.isin(set(keys))]
        df = df.reset_index(drop=True)
        df["params"] = self._params(df.task_key, df.experiment, df.metric, df.params)
        return df

    def task_values(self, key: str) -> list[tuple[str, float, dict[str, Any]]]:
        """(value name, value, params) of one task."""
        params = "params" if self._has_params else "NULL"
        rows = self.conn.execute(
            f"SELECT metric, value, {params}, experiment FROM task_values WHERE task_key=? ORDER BY metric",
            (key,),
        ).fetchall()
        found = self._params(
            [key] * len(rows), [r[3] for r in rows], [r[0] for r in rows], [r[2] for r in rows]
        )
        return [(r[0], r[1], p) for r, p in zip(rows, found, strict=True)]

    def _params(self, keys, experiments, names, stored) -> list[dict[str, Any]]:
        """Parse the stored params; NULL (a value written before the column existed) goes through
        :func:`legacy_params`."""
        infos: dict[str, dict[str, Any]] = {}
        out = []
        for key, experiment, name, text in zip(keys, experiments, names, stored, strict=True):
            if isinstance(text, str):
                out.append(json.loads(text))
                continue
            if key not in infos:
                infos[key] = self.task_info(key)
            out.append(legacy_params(name, experiment, infos[key]))
        return out

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


def _to_blob(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def _from_blob(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)
