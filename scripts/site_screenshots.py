"""Screenshots of the report's headline and of the results site into results/site-screenshots/, in
headless Chromium at 1,400 px (the report also at 900 px), printing each page's document scroll width
against the window's. Run from the repository root: ``python scripts/site_screenshots.py`` (needs
chromium; the site pages are docs/site/'s, so run scripts/publish-site.sh first)."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path


def main() -> None:
    sys.path[:0] = ["tests", "."]
    import pandas as pd
    from chromium_helpers import chromium, screenshot, widths
    from test_html import fill_store
    from test_store_params import old_store

    from bench.report import html as bhtml
    from bench.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="site-shots-"))
    out = Path("results/site-screenshots")
    exe = chromium()
    # the committed standard reference run with its store (every figure drawn from it)
    ref = Path("results/reference/pbmc3k-standard-v2")
    shutil.copytree(ref, tmp / "std", ignore=shutil.ignore_patterns("report.html"))
    with Store(tmp / "std", create=False) as store:
        std = bhtml.write_html(store, tmp / "std")
    # the first standard reference (no store committed: rebuilt from values.csv, so no figures)
    old = Path("results/reference/pbmc3k-standard")
    committed = json.loads((old / "summary.json").read_text())
    values = pd.read_csv(
        old / "values.csv", keep_default_na=False, na_values=[""], float_precision="round_trip"
    )
    run_dir = old_store(tmp / "old", values, {"metrics": committed["metric_options"], "profile": "standard"})
    with Store(run_dir, create=False) as store:
        first = bhtml.write_html(store, run_dir)
    # the test fixture's report (every figure drawn)
    with fill_store(tmp / "filled") as store:
        filled = bhtml.write_html(store, tmp / "filled")
    pages = {
        "report-standard-headline-1400.png": (std, "1400,1200"),
        "report-standard-headline-900.png": (std, "900,1400"),
        "report-standard-first-headline-1400.png": (first, "1400,1200"),
        "report-fixture-1400.png": (filled, "1400,3000"),
        "site-index-1400.png": (Path("docs/site/index.html"), "1400,900"),
        "site-dataset-pbmc3k-1400.png": (Path("docs/site/datasets/pbmc3k.html"), "1400,1600"),
        "site-model-nb-1400.png": (Path("docs/site/models/nb.html"), "1400,900"),
        "site-run-pbmc3k-standard-1400.png": (Path("docs/site/run/pbmc3k-standard/index.html"), "1400,1100"),
        "site-run-pbmc3k-standard-v2-1400.png": (
            Path("docs/site/run/pbmc3k-standard-v2/index.html"),
            "1400,1100",
        ),
    }
    for name, (page, size) in pages.items():
        width = int(size.split(",")[0])
        print(name, "document / window width:", *widths(exe, page, width, tmp))
        screenshot(exe, page, out / name, tmp, size)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
