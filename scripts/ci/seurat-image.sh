#!/usr/bin/env bash
# The image of the `paper` evaluation protocol (bench.protocols.seurat; docs/metrics.md, "Evaluation
# protocols"), built WITHOUT any registry (run as root; idempotent; called by docker-setup.sh):
#
#  1. a base image scgenbench/seurat-base:bookworm: debootstrap a Debian bookworm rootfs (minbase),
#     install Debian's r-cran-seurat (4.3.x), r-cran-matrix and r-cran-jsonlite (the R example generator,
#     examples/r-nb, reads its spec.json with it) into it from the host side (chroot
#     apt-get, host network), tar it and `docker import` it; skipped when the image exists
#  2. the protocol image on it (R script + non-root user), tagged scgenbench/seurat-paper:<hash of the
#     build files and the base image's id>; skipped when that tag exists
#
# Environment: BENCH_SEURAT_BASE_IMAGE (default scgenbench/seurat-base:bookworm), DEBIAN_MIRROR
# (default http://deb.debian.org/debian), BENCH_SEURAT_WORKDIR (default /var/tmp/scgenbench-seurat),
# PYTHON (the interpreter that has scgenbench installed; default python3).
set -euo pipefail

SEURAT_BASE="${BENCH_SEURAT_BASE_IMAGE:-scgenbench/seurat-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
WORK="${BENCH_SEURAT_WORKDIR:-/var/tmp/scgenbench-seurat}"
# the interpreter with scgenbench: $PYTHON, else the first of python3, python and the `bench`
# command's shebang that imports it (`bench` may be a pyenv shim, a bash script: its shebang is no
# interpreter, so every candidate is tried, not trusted)
if [ -z "${PYTHON:-}" ]; then
  for cand in python3 python "$(head -n1 "$(command -v bench 2>/dev/null || echo /dev/null)" | sed -n 's/^#!//p')"; do
    [ -n "$cand" ] || continue
    if $cand -c 'import bench' >/dev/null 2>&1; then PYTHON="$cand"; break; fi
  done
  [ -n "${PYTHON:-}" ] || { echo "seurat-image: no python here imports scgenbench (pip install -e . first, or set PYTHON)" >&2; exit 1; }
fi
T0=$(date +%s)
log() { echo "[seurat-image +$(( $(date +%s) - T0 ))s] $*"; }

if docker image inspect "$SEURAT_BASE" >/dev/null 2>&1; then
  log "base image $SEURAT_BASE exists"
else
  ROOT="$WORK/rootfs"
  mkdir -p "$WORK"
  if [ ! -f "$ROOT/.debootstrap-done" ]; then
    rm -rf "$ROOT"; mkdir -p "$ROOT"
    log "debootstrap bookworm (minbase) from $MIRROR"
    debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
      || { tail -30 "$WORK/debootstrap.log" >&2; exit 1; }
    touch "$ROOT/.debootstrap-done"
  fi
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
  mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
  trap 'umount "$ROOT/proc" 2>/dev/null || true' EXIT
  if ! chroot "$ROOT" Rscript -e 'suppressMessages(library(Seurat)); library(Matrix); library(jsonlite)' >/dev/null 2>&1; then
    log "apt-get install r-cran-seurat r-cran-matrix into the rootfs (log: $WORK/apt.log)"
    echo "deb $MIRROR bookworm main" >"$ROOT/etc/apt/sources.list"
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root DEBIAN_FRONTEND=noninteractive \
      "$(command -v chroot)" "$ROOT" sh -c \
      'apt-get update -qq && apt-get install -y -qq --no-install-recommends r-cran-seurat r-cran-matrix r-cran-jsonlite' \
      >"$WORK/apt.log" 2>&1 || { tail -30 "$WORK/apt.log" >&2; exit 1; }
  fi
  chroot "$ROOT" Rscript -e 'cat("Seurat", as.character(packageVersion("Seurat")), "\n")'
  umount "$ROOT/proc"; trap - EXIT
  chroot "$ROOT" apt-get clean
  rm -rf "$ROOT/var/lib/apt/lists/"* "$ROOT/root/.cache" "$ROOT/usr/share/doc/"* "$ROOT/usr/share/man/"*
  log "docker import -> $SEURAT_BASE"
  tar -C "$ROOT" --numeric-owner -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' - "$SEURAT_BASE" >/dev/null
fi

log "building the paper-protocol image on $SEURAT_BASE"
BENCH_SEURAT_BASE_IMAGE="$SEURAT_BASE" "$PYTHON" -c \
  "from bench.protocols.seurat import build_image; print(build_image())"
log "done in $(( $(date +%s) - T0 ))s"
