"""The dataset cache: where downloads and prepared data live, the file registry, atomic writes.

Layout of the cache directory (``$BENCH_DATA``, else the platform user cache dir ``scgenbench``)::

    raw/<file>             downloaded (or ``bench datasets add``-ed) copies of recipe files
    registry.json          {recipe name: {path, size, sha256, source, url, recorded_at}}
    prepared/<hash>/       train.h5ad, test.h5ad, info.json of one prepared dataset

Sizes and sha256 of recipe files are recorded the first time a file is downloaded or added
(trust on first use: the ACTIVA authors publish no checksums) and verified on every later use.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import suppress
from pathlib import Path
from typing import Any

import platformdirs

from bench.api import UserError

REGISTRY_FILE = "registry.json"
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """The dataset cache directory: ``$BENCH_DATA`` if set, else the user cache dir ``scgenbench``."""
    env = os.environ.get("BENCH_DATA")
    path = Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("scgenbench"))
    return path


def sha256_file(path: Path) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, sorted)."""
    h = hashlib.sha256()
    path = Path(path)
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode() + b"\0")
            h.update(sha256_file(f).encode())
        return h.hexdigest()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_size(path: Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def load_registry(root: Path | None = None) -> dict[str, Any]:
    path = (root or cache_dir()) / REGISTRY_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(
            f"the dataset registry {path} is unreadable ({exc})",
            "delete it; files are re-registered (and re-verified) on next use",
        ) from exc


def record_file(
    name: str, path: Path, *, source: str, url: str | None = None, root: Path | None = None
) -> dict:
    """Record size and sha256 of a recipe file in the cache registry; returns the entry."""
    root = root or cache_dir()
    reg = load_registry(root)
    entry = {
        "path": str(Path(path).resolve()),
        "size": file_size(path),
        "sha256": sha256_file(path),
        "source": source,
        "url": url,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    reg[name] = entry
    atomic_write_text(root / REGISTRY_FILE, json.dumps(reg, indent=2, sort_keys=True))
    return entry


def verify_file(name: str, path: Path, entry: dict, fix: str) -> str:
    """Check a cached file against its registry entry; returns its sha256 or raises UserError."""
    size = file_size(path)
    if size != entry["size"]:
        raise UserError(
            f"cached file for '{name}' at {path} is corrupted or changed: {size} bytes, "
            f"{entry['size']} recorded when it was first {entry['source']}ed",
            fix,
        )
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise UserError(
            f"cached file for '{name}' at {path} is corrupted or changed: sha256 {digest[:12]}..., "
            f"{entry['sha256'][:12]}... recorded when it was first {entry['source']}ed",
            fix,
        )
    return digest


def _progress_enabled(progress: bool) -> bool:
    return bool(progress) and sys.stderr.isatty()


def download(url: str, dest: Path, *, progress: bool = False, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically (temp file in the same folder, then os.replace).

    Raises OSError / urllib.error.URLError on failure; nothing is left at ``dest`` then.
    """
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=timeout) as resp,  # noqa: S310 (https URLs of recipes)
            Progress(
                TextColumn("[bold]download[/] {task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                disable=not _progress_enabled(progress),
            ) as bar,
        ):
            total = resp.headers.get("Content-Length")
            task = bar.add_task(dest.name, total=int(total) if total else None)
            received = 0
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                received += len(chunk)
                bar.advance(task, len(chunk))
            if total is not None and received != int(total):
                raise urllib.error.URLError(f"incomplete download: {received} of {total} bytes")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    return dest
