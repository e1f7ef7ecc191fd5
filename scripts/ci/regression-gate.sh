#!/usr/bin/env bash
# CI regression gate: run the committed quick benchmark (scgan, cscgan, nb, copula + controls, seeds 0,1,
# pbmc3k) and compare it with the committed baseline. Exit 1 on any regression or missing value.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${BENCH_GATE_DIR:-$(mktemp -d)/gate}"
start=$(date +%s)
bench run --config results/baselines/quick-pbmc3k.toml --out "$out"
echo "gate benchmark took $(( $(date +%s) - start )) s"
bench check "$out" --baseline results/baselines/quick-pbmc3k.json
if [[ -n "${BENCH_ARTIFACTS:-}" ]]; then
  mkdir -p "$BENCH_ARTIFACTS"
  bench report "$out" --html -o "$BENCH_ARTIFACTS/gate-report.html" >/dev/null
  cp "$out/summary.md" "$BENCH_ARTIFACTS/gate-summary.md"
fi
