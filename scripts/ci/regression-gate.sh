#!/usr/bin/env bash
# CI regression gate: run the committed quick benchmark (results/baselines/quick-pbmc3k.toml: activa,
# scvi, scgan, cscgan, nb, copula + controls, seeds 0,1, pbmc3k, main experiment) and compare it with
# the committed baseline. Exit 1 on any regression or missing value.
#   bash scripts/ci/regression-gate.sh [--reuse RUN_DIR]
# --reuse RUN_DIR: start from a copy of that run dir's store, so the gate reuses the tasks it already
# holds with the same key (same model, parameters, data, seed, profile and code: the same computation;
# CI passes the README main job's run dir, whose seed-0 main tasks of activa, scgan, cscgan, nb and
# the controls the gate would otherwise train again).
set -euo pipefail
cd "$(dirname "$0")/../.."
reuse=""
if [[ "${1:-}" == "--reuse" ]]; then
  reuse="${2:?--reuse needs a run dir}"
fi
out="${BENCH_GATE_DIR:-$(mktemp -d)/gate}"
if [[ -n "$reuse" && -f "$reuse/bench.sqlite" ]]; then
  mkdir -p "$out"
  cp "$reuse/bench.sqlite" "$out/bench.sqlite"
  echo "gate: starting from a copy of $reuse/bench.sqlite"
fi
start=$(date +%s)
bench run --config results/baselines/quick-pbmc3k.toml --out "$out"
echo "gate benchmark took $(( $(date +%s) - start )) s"
bench check "$out" --baseline results/baselines/quick-pbmc3k.json
if [[ -n "${BENCH_ARTIFACTS:-}" ]]; then
  mkdir -p "$BENCH_ARTIFACTS"
  bench report "$out" --html -o "$BENCH_ARTIFACTS/gate-report.html" >/dev/null
  cp "$out/summary.md" "$BENCH_ARTIFACTS/gate-summary.md"
fi
