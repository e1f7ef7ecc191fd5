#!/usr/bin/env bash
# scgenbench setup, one command.
#   bash scripts/setup.sh             Python side: torch (CPU build if none is installed), scgenbench + dev/test
#                                     tools + TensorFlow (for the scGAN `process` backend)
#   bash scripts/setup.sh --services  also, as root on Debian/Ubuntu: a Docker engine with a local base image,
#                                     the scGAN image and the Seurat image of the `paper` evaluation protocol,
#                                     a one-node Slurm cluster, Chromium (HTML report test)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! "$PY" -c "import torch" 2>/dev/null; then
  # install torch first so the project's torch range is already satisfied (else pip may pick a multi-GB CUDA build)
  "$PY" -m pip install "torch==2.13.0" || "$PY" -m pip install "torch>=2.2,<=2.14.1"
fi
"$PY" -m pip install -e ".[dev,tf,scvi,protocols]"
# compile the numba code of UMAP, pynndescent and scanpy into numba's on-disk cache now (about a
# minute), not in the user's first run (bench/warmup.py)
"$PY" -m bench.warmup

if [[ "${1:-}" == "--services" ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup.sh --services needs root (apt-get, dockerd, slurmctld)" >&2
    exit 2
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! command -v chromium >/dev/null; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  fi
  bash scripts/ci/docker-setup.sh
  bash scripts/ci/slurm-setup.sh
fi
echo "scgenbench is set up: try  bench run --models activa,nb --dataset pbmc3k"
