#!/usr/bin/env bash
# Prepare a fresh Debian 12 CI machine for the docker tests of scgenbench (run as root; idempotent).
#
#  1. docker.io + debootstrap from apt (if missing)
#  2. a Docker engine (dockerd started in the background when none answers)
#  3. a local base image scgenbench/base:bookworm built WITHOUT any registry: debootstrap a Debian
#     bookworm rootfs (minbase + python3, venv, pip, CA certificates), copy this machine's CA bundle in,
#     create /opt/venv and pre-install the scGAN image's Python dependencies into it from the host side
#     (chroot, host network), tar it and `docker import` it
#  4. the scGAN image on top of it (bench images build scgan --base-image scgenbench/base:bookworm),
#     which records the base in the user's settings file ([docker] base_image), where `bench run`
#     finds it with no variable; the base also carries the label org.scgenbench.base (docs/docker.md)
#  5. the image of the `paper` evaluation protocol (Debian's r-cran-seurat; scripts/ci/seurat-image.sh),
#     built in the background beside 3 and 4
#  6. the image of the R example generator examples/r-nb on the same base (a manifest plugin; the first
#     `bench run --models r-nb` would build it too)
#
# Environment: BENCH_BASE_IMAGE (default scgenbench/base:bookworm), DEBIAN_MIRROR
# (default http://deb.debian.org/debian), BENCH_SETUP_WORKDIR (default /var/tmp/scgenbench-base).
set -euo pipefail

BASE_IMAGE="${BENCH_BASE_IMAGE:-scgenbench/base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
WORK="${BENCH_SETUP_WORKDIR:-/var/tmp/scgenbench-base}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SCGAN_DIR="$REPO/generators/scgan"
CA_BUNDLE="$(pip config list 2>/dev/null | sed -n "s/^global\.cert='\(.*\)'$/\1/p" | head -n1)"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
T0=$(date +%s)
log() { echo "[docker-setup +$(( $(date +%s) - T0 ))s] $*"; }

# 1. packages ------------------------------------------------------------------------------------
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

# 2. engine --------------------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: /tmp/dockerd.log)"
  nohup dockerd >/tmp/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not come up; see /tmp/dockerd.log" >&2; tail -20 /tmp/dockerd.log >&2; exit 1; }
fi
log "docker engine answers ($(docker version --format '{{.Server.Version}}'))"

# 5. (in the background) the paper protocol's Seurat image: its own rootfs, downloads and `docker import`,
# independent of 3 and 4 until step 6 builds on it; from scratch on the 2-core VM the two chains took
# 433 s and 408 s side by side, 453 s in all (docs/docker.md; mostly downloads and unpacking)
bash "$REPO/scripts/ci/seurat-image.sh" &
SEURAT_PID=$!

# 3. offline base image --------------------------------------------------------------------------
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  log "base image $BASE_IMAGE exists"
else
  ROOT="$WORK/rootfs"
  if [ ! -x "$ROOT/usr/bin/python3" ] || [ ! -f "$ROOT/.debootstrap-done" ]; then
    rm -rf "$ROOT"; mkdir -p "$ROOT"
    log "debootstrap bookworm (minbase) from $MIRROR"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
      bookworm "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
      || { tail -30 "$WORK/debootstrap.log" >&2; exit 1; }
    touch "$ROOT/.debootstrap-done"
  fi
  # this machine's CA bundle (may contain a TLS-intercepting proxy's CA) so pip can reach PyPI
  cp "$CA_BUNDLE" "$ROOT/etc/ssl/certs/ca-certificates.crt"
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$ROOT/etc/pip.conf"
  # venv + the image's Python dependencies, installed from the host side (the host reaches PyPI;
  # containers may not), so building the model image needs no network
  [ -x "$ROOT/opt/venv/bin/python" ] || chroot "$ROOT" python3 -m venv --system-site-packages /opt/venv
  cp "$SCGAN_DIR/requirements.txt" "$SCGAN_DIR/requirements-tf.txt" "$ROOT/tmp/"
  mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
  trap 'umount "$ROOT/proc" 2>/dev/null || true' EXIT
  log "pip install (TensorFlow + anndata) into the rootfs venv"
  env -i PATH=/opt/venv/bin:/usr/bin:/bin HOME=/root PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PIP_DEFAULT_TIMEOUT=180 "$(command -v chroot)" "$ROOT" /opt/venv/bin/pip install -q \
    -r /tmp/requirements-tf.txt -r /tmp/requirements.txt
  umount "$ROOT/proc"; trap - EXIT
  rm -f "$ROOT/tmp/requirements.txt" "$ROOT/tmp/requirements-tf.txt"
  rm -rf "$ROOT/var/cache/apt/archives/"*.deb "$ROOT/var/lib/apt/lists/"* "$ROOT/root/.cache"
  log "docker import -> $BASE_IMAGE"
  tar -C "$ROOT" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV VIRTUAL_ENV=/opt/venv' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'LABEL org.scgenbench.base=bookworm' \
    --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
fi

# 4. model image ---------------------------------------------------------------------------------
log "building the scgan image on $BASE_IMAGE"
if command -v bench >/dev/null 2>&1 && bench images build --help >/dev/null 2>&1; then
  bench images build scgan --base-image "$BASE_IMAGE"
else
  python3 -m bench.cli images build scgan --base-image "$BASE_IMAGE"
fi

# 5. the paper protocol's Seurat image, started above ----------------------------------------------
wait "$SEURAT_PID" || { echo "the Seurat image was not built (its lines above say why)" >&2; exit 1; }

# 6. the R example's image (examples/r-nb, a manifest plugin) on the Seurat base ----------------------
log "building the image of examples/r-nb (a generator in R, docs/plugins.md)"
if command -v bench >/dev/null 2>&1 && bench images build --help >/dev/null 2>&1; then
  bench images build "$REPO/examples/r-nb"
else
  python3 -m bench.cli images build "$REPO/examples/r-nb"
fi
log "done in $(( $(date +%s) - T0 ))s"
