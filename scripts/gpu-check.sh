#!/usr/bin/env bash
# GPU check (README "GPU check"): ACTIVA training and generation speed, MMD time and peak GPU memory
# on synthetic data of pbmc68k's shape; writes results/gpu/gpucheck-<device>-<time>.json and prints
# a summary. Needs only PyTorch and this package. Flags: see `scripts/gpu-check.sh --help`
# (e.g. --device cpu for the small CPU run that CI makes).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m bench.gpucheck "$@"
