#!/usr/bin/env bash
# Screenshot a scgenbench HTML report with headless Chromium, for CI artifacts.
#
#   scripts/ci/screenshot.sh RUN_DIR|REPORT.html [OUT.png]
#
# Given a run dir, writes RUN_DIR/report.html first (`bench report RUN_DIR --html`). The screenshot
# goes to OUT.png (default: $BENCH_ARTIFACTS/report.png, else results/ci-artifacts/report.png).
# Exits 1 when the page logs any console message (the report has no script, so any is a fault).
set -euo pipefail

target="${1:?usage: $0 RUN_DIR|REPORT.html [OUT.png]}"
artifacts="${BENCH_ARTIFACTS:-results/ci-artifacts}"
out="${2:-$artifacts/report.png}"
chromium="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [[ -z "$chromium" ]]; then
  echo "error: chromium not found (Debian: apt-get install chromium)" >&2
  exit 2
fi

if [[ -d "$target" ]]; then
  bench report "$target" --html >/dev/null
  page="$target/report.html"
else
  page="$target"
fi
mkdir -p "$(dirname "$out")"
profile="$(mktemp -d)"
log="$(mktemp)"
trap 'rm -rf "$profile" "$log"' EXIT

"$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --enable-logging=stderr --v=0 \
  --screenshot="$out" --window-size=1400,4000 "file://$(realpath "$page")" 2>"$log" >/dev/null

if grep -E "Uncaught|:CONSOLE[:(]|Failed to load resource|net::ERR_" "$log"; then
  echo "error: the report logged console errors (above)" >&2
  exit 1
fi
echo "screenshot: $out"
