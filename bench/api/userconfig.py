"""The user's scgenbench settings file: ``$BENCH_CONFIG_DIR/config.toml``, else
``platformdirs.user_config_dir("scgenbench")/config.toml`` (``~/.config/scgenbench/config.toml`` on
Linux).

It holds choices made once per machine that a run must find without a variable, such as the
Docker base image that ``scripts/setup.sh --services`` built (``[docker] base_image``) and the
generators added with a manifest (``[manifests] NAME = "/path/to/dir"``, `bench plugins add`). Tables of
plain values only (strings, numbers, booleans); unknown tables and keys are kept when a value is
recorded.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from bench.api.errors import UserError


def path() -> Path:
    env = os.environ.get("BENCH_CONFIG_DIR")
    if env:
        return Path(env).expanduser() / "config.toml"
    import platformdirs

    return Path(platformdirs.user_config_dir("scgenbench")) / "config.toml"


def load() -> dict[str, dict[str, Any]]:
    """The settings, ``{}`` when there is no file."""
    p = path()
    try:
        text = p.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UserError(
            f"cannot read your scgenbench settings {p}: {exc.strerror}", "fix or remove it"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(
            f"your scgenbench settings {p} are not valid TOML ({exc})", "fix or remove it"
        ) from None
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def get(table: str, key: str) -> Any:
    return load().get(table, {}).get(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    raise UserError(
        f"your scgenbench settings {path()} hold a {type(value).__name__} value that scgenbench cannot rewrite",
        "set the value by hand in that file, or move the nested table out of it",
    )


def record(table: str, key: str, value: Any) -> Path:
    """Set ``[table] key = value`` in the settings file (written atomically) and return its path."""
    data = load()
    data.setdefault(table, {})[key] = value
    return _write(data)


def forget(table: str, key: str) -> bool:
    """Remove ``[table] key`` from the settings file (an emptied table goes too); whether it was
    there."""
    data = load()
    if key not in data.get(table, {}):
        return False
    del data[table][key]
    if not data[table]:
        del data[table]
    _write(data)
    return True


def _key(key: str) -> str:
    """A TOML key: bare where TOML allows it, else quoted."""
    import re

    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def _write(data: dict[str, dict[str, Any]]) -> Path:
    lines = ["# scgenbench settings (bench.api.userconfig); written by scgenbench, edits are kept"]
    for name, values in data.items():
        lines.append(f"\n[{name}]")
        lines += [f"{_key(k)} = {_toml_value(v)}" for k, v in values.items()]
    p = path()
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".toml.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(p)
    return p
