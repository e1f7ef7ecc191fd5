"""`bench site RUN_DIR... -o DIR`: a static results site across runs.

Plain HTML files with the report's CSS inlined, no script and no external resource, relative links
only, so the site works opened from disk and served by any static host:

* ``index.html``: one row per run (dataset, profile, protocols, models, seeds, date, commit,
  machine), with links to the run's page and its full report; links to the dataset and model pages;
* ``datasets/<dataset>.html``: every model across the runs that hold the dataset: the mean scaled
  score and each value the metrics declare for the headline (``Metric.headline``), mean ± sd (n);
* ``models/<model>.html``: one model's scores across datasets, runs, profiles and protocols;
* ``run/<name>/index.html``: the run's headline (bench.report.headline) and its files; the full
  report is copied (a store's is generated) next to it, or linked where it lies (``--link``).

A run is a run dir with a store (``bench.sqlite``: everything is read from it) or, for the committed
reference runs whose stores are not committed, a folder with the ``summary.json`` that
``bench run`` / ``bench report`` wrote. The pages hold no date of their own, so a site rebuilt from
the same runs is byte-identical (the test that the published ``docs/site/`` is up to date relies on
it).
This package: the runs and their values in :mod:`.runs`, the pages in :mod:`.pages`, the site
written here (:func:`build_site`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bench.api.errors import UserError
from bench.report.summary import order_models
from bench.site.pages import dataset_page, index_page, model_page, run_page, slug
from bench.site.runs import SiteRun, cells, headline_values, load_run, profiles_of, unique_names


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def build_site(paths: list[str | Path], out: str | Path, *, link: bool = False) -> list[Path]:
    """Write the site for ``paths`` (run dirs or folders with a summary.json) into ``out``; ``link``:
    link each run's full report and files where they lie (relative paths) instead of copying them.
    Returns the pages written."""
    out = Path(out)
    runs = sorted((load_run(Path(p)) for p in paths), key=lambda r: str(r.path))
    if not runs:
        raise UserError("bench site: no run given", "pass one or more run dirs: bench site RUN_DIR... -o DIR")
    unique_names(runs)
    for sub in ("run", "datasets", "models"):
        if (out / sub).is_dir():
            shutil.rmtree(out / sub)
    all_cells = {r.name: cells(r) for r in runs}
    values = headline_values([r.summary for r in runs])
    datasets = sorted({d for r in runs for d in r.datasets})
    models = order_models(sorted({m for r in runs for m in r.models}))
    written = [_write(out / "index.html", index_page(runs, datasets, models))]
    for d in datasets:
        written.append(_write(out / "datasets" / f"{slug(d)}.html", dataset_page(d, runs, all_cells, values)))
    for m in models:
        written.append(_write(out / "models" / f"{slug(m)}.html", model_page(m, runs, all_cells, values)))
    for r in runs:
        folder = out / "run" / r.name
        folder.mkdir(parents=True, exist_ok=True)
        files: list[tuple[str, str]] = []
        if r.generated is not None:
            _write(folder / "report.html", r.generated)
            files.append(("full report", "report.html"))
            r.report_href = "report.html"
        for src in [*([r.report] if r.report else []), *r.files]:
            if link:
                href = Path(os.path.relpath(src.resolve(), folder.resolve())).as_posix()
            else:
                shutil.copyfile(src, folder / src.name)
                href = src.name
            files.append(("full report" if src.name == "report.html" else src.name, href))
            if src.name == "report.html":
                r.report_href = href
        written.append(_write(folder / "index.html", run_page(r, files)))
    # the index links the full reports: rewrite it now that their places are known
    _write(out / "index.html", index_page(runs, datasets, models))
    return written


__all__ = ["SiteRun", "build_site", "cells", "headline_values", "load_run", "profiles_of"]
