"""What a container wrote, read without trusting it: plain file names only, no symbolic link out
of its work dir, no HDF5 object that would make the host read other files."""

from __future__ import annotations

import os
import re
from pathlib import Path

from bench.api.errors import TaskFailed


def symlinks_in(work: Path) -> list[str]:
    """Symbolic links under ``work`` (a container's outputs must not point outside its work dir)."""
    found = []
    for root, dirs, files in os.walk(work):
        for name in [*dirs, *files]:
            if os.path.islink(os.path.join(root, name)):
                found.append(os.path.relpath(os.path.join(root, name), work))
    return sorted(found)


SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def container_file(folder: Path, name: object) -> Path:
    """``folder / name`` for a file name a container wrote into an index (e.g. snapshots/index.json):
    a plain name (letters, digits, ``._-``; no separator, no ``..``) whose path stays in ``folder``;
    else a TaskFailed naming it."""
    if not isinstance(name, str) or not SAFE_NAME.match(name) or ".." in name:
        raise TaskFailed(f"container output names the file {name!r}: only a plain file name is read")
    path = Path(folder) / name
    if path.is_symlink():
        raise TaskFailed(f"container output {path.name} is a symbolic link: not read")
    return path


def read_container_h5ad(path: Path):
    """An .h5ad a container wrote, read only when it is a plain HDF5 file of its own: no external
    link, no dataset stored in an external file and no virtual dataset, all of which would make
    the host read other files (a TaskFailed names the object). Returns the AnnData."""
    import anndata as ad
    import h5py

    path = Path(path)
    if path.is_symlink():
        raise TaskFailed(f"container output {path.name} is a symbolic link: not read")
    bad: list[str] = []

    def visit(group, prefix: str = "") -> None:
        for key in group:
            link = group.get(key, getlink=True)
            name = f"{prefix}/{key}"
            if isinstance(link, h5py.ExternalLink | h5py.SoftLink):
                bad.append(f"{name} is a {type(link).__name__}")
                continue
            obj = group[key]
            if isinstance(obj, h5py.Dataset):
                if obj.external:
                    bad.append(f"{name} is stored in external file(s)")
                elif obj.is_virtual:
                    bad.append(f"{name} is a virtual dataset")
            elif isinstance(obj, h5py.Group):
                visit(obj, name)

    try:
        with h5py.File(path, "r") as f:
            visit(f)
    except OSError as exc:
        raise TaskFailed(f"container output {path.name} is not a readable HDF5 file ({exc})") from None
    if bad:
        raise TaskFailed(f"container output {path.name} refused: {bad[0]} (it would read host files)")
    return ad.read_h5ad(path)
