"""The store's file: its schema (SQLite in the run dir), the check that a run dir can hold one, and
:class:`StoreFile`, the connection that opens, upgrades (the ``params`` column) and closes it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

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


class StoreFile:
    """The open store of a run dir (``create``: make it when missing, else a UserError)."""

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

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> StoreFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
