#!/usr/bin/env bash
# CI regression gate: run the committed quick benchmark (results/baselines/quick-pbmc3k.toml: activa,
# scvi, scgan, cscgan, nb, copula + controls, seeds 0,1, pbmc3k, main experiment) and compare it with
# the committed baseline. Exit 1 on any regression or missing value.
#   bash scripts/ci/regression-gate.sh [--reuse RUN_DIR]
# --reuse RUN_DIR: first copy that run dir's finished tasks into the gate's store (Store.merge_from),
# so the gate reuses those with the same key (same model, parameters, data, seed, profile and code:
# the same computation; CI passes the README main job's run dir, whose seed-0 main tasks of activa,
# scgan, cscgan, nb and the controls the gate would otherwise train again).
set -euo pipefail
cd "$(dirname "$0")/../.."
reuse=""
if [[ $# -gt 0 ]]; then
  if [[ $# -ne 2 || "$1" != "--reuse" ]]; then
    echo "usage: regression-gate.sh [--reuse RUN_DIR]" >&2
    exit 2
  fi
  reuse="$2"
fi
out="${BENCH_GATE_DIR:-$(mktemp -d)/gate}"
if [[ -n "$reuse" ]]; then
  python3 - "$reuse" "$out" <<'PY'
import sys

from bench.api.errors import UserError
from bench.store import Store

try:
    source = Store(sys.argv[1], create=False)
except UserError as exc:
    print(f"regression-gate.sh --reuse: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)
print(f"gate: {Store(sys.argv[2]).merge_from(source)} finished task(s) of {sys.argv[1]} copied in for reuse")
PY
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
