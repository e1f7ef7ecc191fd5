#!/usr/bin/env bash
# Publish the committed runs (every folder under results/ with a summary.json) into docs/site/, the
# results site (docs/report.md, "A results site"). Their stores are not committed, so the site is built
# from their summary.json; reports and summary files are linked where they lie (--link).
# tests/test_site.py checks that docs/site/ is what this script writes.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC2046
# the committed runs only (a local run dir under results/, e.g. results/quick, is not published)
bench site --link $(git ls-files -- ':(glob)results/**/summary.json' | xargs -n1 dirname | sort -u) -o docs/site
