"""The dataset cache: where downloads and prepared data live, the file registry, atomic writes.

Layout of the cache directory (``$BENCH_DATA``, else the platform user cache dir ``scgenbench``)::

    raw/<file>             downloaded (or ``bench datasets add``-ed) copies of recipe files
    raw/.<file>.part       a download in progress or interrupted (resumed by the next try)
    registry.json          {recipe name: {path, size, sha256, source, url, recorded_at}}
    .registry.lock         held while registry.json is read, changed and written
    prepared/<hash>/       train.h5ad, test.h5ad, info.json, sha256.json of one prepared dataset

Sizes and sha256 of recipe files are recorded the first time a file is downloaded or added
(trust on first use where the recipe pins no sha256: the ACTIVA authors publish no checksums) and
verified on every later use.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import platformdirs

from bench.api import UserError

REGISTRY_FILE = "registry.json"
REGISTRY_LOCK = ".registry.lock"
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


def fsync_dir(folder: Path) -> None:
    """Make a rename into ``folder`` durable (no-op where directories cannot be opened)."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing, never removed) for the block; waits
    for another holder (processes sharing a cache dir: runs, Slurm jobs, `bench datasets add`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        with suppress(OSError):  # a file system without locks: go on unlocked, as before
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
    entry = {
        "path": str(Path(path).resolve()),
        "size": file_size(path),
        "sha256": sha256_file(path),
        "source": source,
        "url": url,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with file_lock(root / REGISTRY_LOCK):  # read-modify-write: another process's entry is kept
        reg = load_registry(root)
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


def _lock_part(part: Path, dest: Path) -> int | None:
    """Open and exclusively lock ``part`` (waiting for another downloader); None when ``dest``
    appeared meanwhile. Retries when the part file was renamed or removed while this one waited."""
    while True:
        if dest.exists():
            return None
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            with suppress(OSError):  # a file system without locks: go on unlocked
                fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_ino == os.stat(part).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def part_path(dest: Path) -> Path:
    """Where a download of ``dest`` is written until it is complete (kept after a failure, resumed)."""
    return Path(dest).with_name(f".{Path(dest).name}.part")


def download(url: str, dest: Path, *, progress: bool = False, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest``: into ``part_path(dest)``, then fsync and rename (atomic).

    A part file left by an interrupted download (SIGKILL, lost connection) is resumed with an HTTP
    Range request, or restarted when the server does not resume; part files of the old naming
    (``.NAME.<random>.part``) are removed. One process downloads a file at a time (a ``flock`` on
    the part file); the others wait. Raises OSError / urllib.error.URLError on failure; nothing is
    left at ``dest`` then (the part file stays, for the next try, if it holds any bytes).
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
    part = part_path(dest)
    fd = _lock_part(part, dest)
    if fd is None:  # another process finished it while this one waited
        return dest
    with os.fdopen(fd, "r+b") as out:  # closing drops the lock
        try:
            for old in dest.parent.glob(f".{dest.name}.*.part"):
                with suppress(OSError):
                    old.unlink()
            offset = os.fstat(fd).st_size
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            try:
                resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)  # noqa: S310
            except urllib.error.HTTPError as exc:
                if exc.code != 416 or not offset:  # 416: the part is not a prefix of the file any more
                    raise
                offset = 0
                resp = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (https URLs of recipes)
            with resp:
                if not (offset and getattr(resp, "status", 200) == 206):  # the server starts over
                    offset = 0
                out.seek(offset)
                out.truncate()
                length = resp.headers.get("Content-Length")
                total = offset + int(length) if length is not None else None
                with Progress(
                    TextColumn("[bold]download[/] {task.description}"),
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    TimeRemainingColumn(),
                    disable=not _progress_enabled(progress),
                ) as bar:
                    task = bar.add_task(dest.name, total=total, completed=offset)
                    received = offset
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
                        received += len(chunk)
                        bar.advance(task, len(chunk))
                out.flush()
                os.fsync(out.fileno())
                if total is not None and received != total:
                    raise urllib.error.URLError(f"incomplete download: {received} of {total} bytes")
            os.replace(part, dest)
            fsync_dir(dest.parent)
        except BaseException:
            with suppress(OSError):
                out.flush()
                if os.fstat(out.fileno()).st_size == 0:
                    part.unlink()
            raise
    return dest
