"""``fit.json``, what a container model's fit writes back (the work-dir protocol's I/O contract,
docs/plugins.md), read and checked."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.api import TaskFailed


def read_fit_json(work: Path, name: str) -> dict[str, Any]:
    """``fit.json`` of a container's fit, checked (the I/O contract, docs/plugins.md): a JSON object
    with ``train_seconds`` (a number >= 0), ``steps`` and ``cells_seen`` (integers >= 0 or null) and
    ``history`` (an object of lists of numbers); a TaskFailed names the file and the field."""

    path = work / "fit.json"
    if not path.exists() or path.is_symlink():
        raise TaskFailed(f"{name}: fit finished without writing fit.json")
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise TaskFailed(f"{name}: fit.json is not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise TaskFailed(f"{name}: fit.json must hold a JSON object, got {type(record).__name__}")
    seconds = record.get("train_seconds")
    if not (isinstance(seconds, int | float) and not isinstance(seconds, bool) and math.isfinite(seconds)
            and seconds >= 0):  # fmt: skip
        raise TaskFailed(f"{name}: fit.json: train_seconds must be a number >= 0, got {seconds!r}")
    for key in ("steps", "cells_seen"):
        value = record.get(key)
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise TaskFailed(f"{name}: fit.json: {key} must be an integer >= 0 or null, got {value!r}")
    history = record.get("history", {})
    ok = isinstance(history, dict) and all(
        isinstance(v, list) and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
        for v in history.values()
    )
    if not ok:
        raise TaskFailed(f"{name}: fit.json: history must be an object of lists of numbers")
    return record
