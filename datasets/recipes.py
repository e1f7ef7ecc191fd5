"""Dataset recipes: the bundled pbmc3k and the ACTIVA paper's two preprocessed datasets.

Each recipe is registered through the ``bench.datasets`` entry point group (pyproject.toml), the
same way a third-party package adds one: a :class:`DatasetRecipe` instance.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import warnings
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import anndata as ad

from bench.api import UserError
from bench.datasets import cache, readers
from bench.datasets.preprocess import HELD_OUT, TARGET_SUM

DATA_DIR = Path(__file__).resolve().parent / "data"
S3_BUCKET_URL = "https://activa-material.s3.amazonaws.com/"


def s3_url(key: str) -> str:
    """HTTPS URL of an object in the ACTIVA authors' public bucket (spaces etc. url-encoded)."""
    return S3_BUCKET_URL + urllib.parse.quote(key)


@dataclass
class DatasetRecipe:
    """A named dataset: where its file comes from, its label column and default rare class.

    ``kind``: 'bundled' (file shipped in bench/datasets/data, pinned sha256) or 'download'
    (fetched over HTTPS into the cache dir). A download recipe with ``sha256`` set is verified
    against it on download, `add` and every use; one without (brain_small and pbmc68k: the
    authors publish no checksum, and none was taken from a trusted copy yet) trusts its first
    download, records its sha256 in the cache registry with a warning, and verifies later uses. ``normalised``: the file's X is already library-size normalised to 20,000 (the
    ACTIVA preprocessed files, which hold no raw counts).
    """

    name: str
    description: str
    label_key: str | None
    split_key: str | None
    default_rare_class: str | None
    url: str | None
    citation: str
    licence: str
    filename: str
    kind: str = "download"
    normalised: bool = False
    sha256: str | None = None
    n_cells: int | None = None
    n_genes: int | None = None
    rare_class_reason: str = ""
    bundled_path: str | None = None  # a plugin's own bundled file (default: bench/datasets/data/<filename>)

    # -- where the file lives ------------------------------------------------------------------
    def local_path(self, root: Path | None = None) -> Path:
        if self.kind == "bundled":
            return Path(self.bundled_path) if self.bundled_path else DATA_DIR / self.filename
        return (root or cache.cache_dir()) / "raw" / self.filename

    def _fix(self, root: Path | None) -> str:
        dest = self.local_path(root)
        return (
            f"put a copy of {self.filename} at {dest}, or run `bench datasets add {self.name} PATH` "
            f"with a local copy (source: {self.url})"
        )

    # -- validation ----------------------------------------------------------------------------
    def check(self, adata: ad.AnnData, source: str) -> None:
        """Check that a file has this recipe's schema (label column, split column, scale)."""
        if self.label_key is not None:
            readers.check_label_key(adata, self.label_key, source)
        if self.split_key is not None:
            if self.split_key not in adata.obs:
                cols = ", ".join(map(str, adata.obs.columns)) or "none"
                raise UserError(
                    f"{source}: split column '{self.split_key}' not found in obs (available: {cols})",
                    f"use the published {self.name} file",
                )
            bad = sorted(set(adata.obs[self.split_key].astype(str)) - {"train", *HELD_OUT})
            if bad:
                raise UserError(
                    f"{source}: obs['{self.split_key}'] holds {bad}; expected train/test/valid",
                    f"use the published {self.name} file",
                )
        if self.normalised:
            readers.check_library_size(adata, source, TARGET_SUM)
        else:
            readers.check_counts(adata, source)

    def _read_checked(self, path: Path) -> ad.AnnData:
        adata = readers.read_path(path)
        readers.make_names_unique(adata, source=self.name)
        self.check(adata, f"{self.name} ({path})")
        return adata

    # -- fetching ------------------------------------------------------------------------------
    def fetch(self, progress: bool = False, root: Path | None = None) -> tuple[Path, str]:
        """Make sure the file is present and intact; returns (path, sha256)."""
        path = self.local_path(root)
        if self.kind == "bundled":
            if not path.exists():
                raise UserError(f"bundled dataset file missing: {path}", "reinstall scgenbench")
            digest = cache.sha256_file(path)
            if self.sha256 and digest != self.sha256:
                raise UserError(
                    f"bundled dataset file {path} is corrupted (sha256 mismatch)", "reinstall scgenbench"
                )
            return path, digest
        root = root or cache.cache_dir()
        entry = cache.load_registry(root).get(self.name)
        if path.exists():
            if entry is not None and Path(entry["path"]) == path.resolve():
                fix = f"delete {path} to download it again, or put a good copy there and run `bench datasets add {self.name} PATH`"
                digest = cache.verify_file(self.name, path, entry, fix)
                self._check_pinned(digest, f"the cached file {path}", fix)
                return path, digest
            # put there by hand: check it reads and has the schema, then record it
            self._check_pinned(cache.sha256_file(path), f"the file {path}", self._fix(root))
            self._read_checked(path)
            entry = cache.record_file(self.name, path, source="add", url=self.url, root=root)
            return path, entry["sha256"]
        if self.url is None:
            raise UserError(f"dataset '{self.name}' has no download URL and no local copy", self._fix(root))
        try:
            cache.download(self.url, path, progress=progress)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            if isinstance(exc, urllib.error.HTTPError):
                reason = f"HTTP {exc.code} {exc.reason}"
            else:
                reason = getattr(exc, "reason", None) or exc
            raise UserError(
                f"could not download dataset '{self.name}' from {self.url} ({reason})", self._fix(root)
            ) from exc
        try:
            self._check_pinned(
                cache.sha256_file(path), f"the file downloaded from {self.url}", self._fix(root)
            )
            self._read_checked(path)
        except UserError as exc:
            with suppress(OSError):
                path.unlink()
            raise UserError(
                f"the file downloaded for '{self.name}' from {self.url} is not usable: {exc.message}",
                self._fix(root),
            ) from exc
        entry = cache.record_file(self.name, path, source="download", url=self.url, root=root)
        if not self.sha256:
            warnings.warn(
                f"{self.name}: the recipe pins no sha256, so this first download is trusted: its sha256 "
                f"{entry['sha256']} is recorded in {root / cache.REGISTRY_FILE} and every later use is "
                "verified against it; compare it with a trusted copy",
                UserWarning,
                stacklevel=2,
            )
        return path, entry["sha256"]

    def _check_pinned(self, digest: str, what: str, fix: str) -> None:
        """UserError when the recipe pins a sha256 and ``digest`` is another."""
        if self.sha256 and digest != self.sha256:
            raise UserError(
                f"{what} for '{self.name}' has sha256 {digest[:12]}..., not the recipe's pinned {self.sha256[:12]}...",
                fix,
            )

    def load_raw(self, progress: bool = False, root: Path | None = None) -> ad.AnnData:
        """The raw dataset (counts, or X normalised to 20,000 for ``normalised`` recipes), validated."""
        path, _ = self.fetch(progress=progress, root=root)
        adata = self.read(path)
        if self.normalised:
            adata.layers["counts"] = adata.X.copy()
        return adata

    def read(self, path: Path) -> ad.AnnData:
        """Read and validate this recipe's file at ``path`` (no fetching, no checksum)."""
        return self._read_checked(path)

    def add(self, path: str | Path, root: Path | None = None) -> dict:
        """Register a local copy of this recipe's file: validate, copy into the cache, record sha256."""
        if self.kind == "bundled":
            raise UserError(f"'{self.name}' is bundled with scgenbench; nothing to add", "use it by name")
        src = Path(path).expanduser()
        if src.is_file():
            self._check_pinned(
                cache.sha256_file(src), f"the file {src}", f"use the published {self.name} file"
            )
        self._read_checked(src)
        root = root or cache.cache_dir()
        dest = self.local_path(root)
        if not (dest.exists() and dest.resolve() == src.resolve()):
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
            os.close(fd)
            try:
                shutil.copyfile(src, tmp)
                os.replace(tmp, dest)
            except BaseException:
                with suppress(OSError):
                    os.unlink(tmp)
                raise
        entry = cache.record_file(self.name, dest, source="add", url=self.url, root=root)
        return {"name": self.name, **entry}


PBMC3K = DatasetRecipe(
    name="pbmc3k",
    description="3k PBMCs from a healthy donor (10x Genomics), raw counts, 8 annotated cell types; bundled",
    label_key="cell_type",
    split_key=None,
    default_rare_class=None,
    rare_class_reason=(
        "none set: the augmentation rule picks the smallest type keeping >= 5 real training cells at the "
        "smallest fraction, CD4 T on pbmc3k (1,042 training cells; 0.5 % keeps 5). B (321 training cells) "
        "keeps 3 at 1 % and 2 at 0.5 %, so every arm scored F1 0 there; Megakaryocytes (13) and Dendritic "
        "(36) are smaller still"
    ),
    url="https://cf.10xgenomics.com/samples/cell-exp/1.1.0/pbmc3k/pbmc3k_filtered_gene_bc_matrices.tar.gz",
    citation="10x Genomics (2016). 3k PBMCs from a Healthy Donor. Chromium v1, Cell Ranger 1.1.0.",
    licence="CC BY 4.0 (10x Genomics)",
    filename="pbmc3k.h5ad",
    kind="bundled",
    sha256="ca5761355ab2d0af63d2f6f3fb1830095d94f6f1ff648ed29b2d20129d2f41eb",
    n_cells=2700,
    n_genes=16634,
)

BRAIN_SMALL = DatasetRecipe(
    name="brain_small",
    description="Brain Small: 20k E18 mouse brain cells (10x 1.3M neurons subset), ACTIVA's preprocessed file",
    label_key="cluster",
    split_key="split",
    default_rare_class="2",
    rare_class_reason="cluster '2', the same cluster id as the paper's PBMC augmentation experiment",
    url=s3_url("PreprocessedData/20kBrainSmall_preprocessed.h5"),
    citation=(
        "10x Genomics, 1.3 Million Brain Cells from E18 Mice; preprocessed with the scGAN pipeline by "
        "Heydari et al. (2022), ACTIVA, Bioinformatics 38(8):2194-2201"
    ),
    licence="10x Genomics data (CC BY 4.0); preprocessed file published by the ACTIVA authors (no licence stated)",
    filename="20kBrainSmall_preprocessed.h5",
    normalised=True,
    n_cells=20000,
    n_genes=17970,
)

PBMC68K = DatasetRecipe(
    name="pbmc68k",
    description="68k PBMCs (Zheng et al. 2017, 10x Fresh 68k PBMCs Donor A), ACTIVA's preprocessed file",
    label_key="cluster",
    split_key="split",
    default_rare_class="2",
    rare_class_reason="cluster 2, the rare population of the paper's augmentation experiment (Fig. 7)",
    url=s3_url("PreprocessedData/68kPBMC_preprocessed.h5ad"),
    citation=(
        "Zheng et al. (2017), Nat. Commun. 8:14049; preprocessed with the scGAN pipeline by Heydari et al. "
        "(2022), ACTIVA, Bioinformatics 38(8):2194-2201"
    ),
    licence="10x Genomics data (CC BY 4.0); preprocessed file published by the ACTIVA authors (no licence stated)",
    filename="68kPBMC_preprocessed.h5ad",
    normalised=True,
    n_cells=68579,
    n_genes=17789,
)

RECIPES = {r.name: r for r in (PBMC3K, BRAIN_SMALL, PBMC68K)}

__all__ = ["DatasetRecipe", "PBMC3K", "BRAIN_SMALL", "PBMC68K", "RECIPES", "s3_url"]
