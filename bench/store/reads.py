"""The store's queries: runs, the plan of each run, task states and rows, values with their params
(older stores' through :func:`legacy_params`, the one place that knows the old value names) and
artifacts."""

from __future__ import annotations

import io
import json
import re
import sqlite3
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

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


def _from_blob(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


class StoreReads:
    """What reads a store (a mixin of :class:`~bench.store.Store` over its connection)."""

    conn: sqlite3.Connection
    _has_params: bool

    def runs(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT run_id, created, spec, provenance FROM runs ORDER BY run_id"
        ).fetchall()
        return [
            {"run_id": r[0], "created": r[1], "spec": json.loads(r[2]), "provenance": json.loads(r[3])}
            for r in rows
        ]

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
    def last_finished(self) -> float | None:
        """When the newest finished task ended (seconds since the epoch); None when none has."""
        row = self.conn.execute("SELECT MAX(finished) FROM tasks WHERE status='done'").fetchone()
        return None if row is None or row[0] is None else float(row[0])

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
