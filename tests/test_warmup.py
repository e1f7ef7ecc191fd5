"""Setup's numba warm-up (bench/warmup.py) compiles what a run would otherwise compile on first use."""

from __future__ import annotations

import os
import subprocess
import sys


def test_warmup_fills_the_numba_cache_of_every_library_a_run_compiles(tmp_path):
    # a cache of its own (NUMBA_CACHE_DIR), so the site-packages one that setup filled does not hide
    # a warm-up that compiles nothing
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "bench.warmup"], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    assert "numba's cache filled" in out.stdout
    index = [p.name for p in tmp_path.rglob("*.nbi")]
    # the functions a README main job compiled from an empty cache (42 index files on 2026-12-07):
    # UMAP's, pynndescent's, scanpy's sparse mean/variance (gene selection) and its Wilcoxon ranking
    assert any(n.startswith("layouts.") for n in index), index
    assert sum(n.startswith(("distances.", "rp_trees.", "utils.")) for n in index) >= 30, index
    assert any(n.startswith("_utils.sparse_mean_var") for n in index), index
    assert any(n.startswith("_rank_genes_groups.rankdata") for n in index), index
