#!/usr/bin/env bash
# Prepare a fresh Debian 12 CI machine as a one-node Slurm cluster for the slurm tests of
# scgenbench (run as root; idempotent: a second run finds everything up and only re-checks it).
#
#  1. slurm-wlm + munge from apt (if missing)
#  2. a munge key (if none) and munged
#  3. /etc/slurm/slurm.conf for this one node: NodeName=$(hostname -s) with the CPU topology and
#     RealMemory that `slurmd -C` reads from the machine, partition `debug` (Default=YES),
#     select/cons_tres, proctrack/linuxproc and task/none (cgroups may not work in a container),
#     no accounting storage (so `sacct` does not work: scgenbench does not need it)
#  4. slurmctld and slurmd as root in the background (logs in /var/log/slurm/)
#  5. wait until `sinfo` shows the node idle, then a smoke test: `sbatch --wrap` and wait for it
#
# Environment: SLURM_SETUP_TIMEOUT (seconds to wait for the node / smoke job, default 120).
set -euo pipefail

TIMEOUT="${SLURM_SETUP_TIMEOUT:-120}"
T0=$(date +%s)
log() { echo "[slurm-setup +$(($(date +%s) - T0))s] $*"; }
die() {
  echo "[slurm-setup] ERROR: $*" >&2
  for f in /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log /var/log/munge/munged.log; do
    [ -f "$f" ] && { echo "--- tail $f" >&2; tail -n 30 "$f" >&2; }
  done
  exit 1
}
[ "$(id -u)" -eq 0 ] || die "run as root"

# 1. packages ------------------------------------------------------------------------------------
need=()
for cmd in slurmctld slurmd sbatch munged; do
  command -v "$cmd" >/dev/null 2>&1 || need=(slurm-wlm munge)
done
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

# 2. munge ---------------------------------------------------------------------------------------
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  log "creating /etc/munge/munge.key"
  if command -v mungekey >/dev/null 2>&1; then
    mungekey --create --keyfile=/etc/munge/munge.key --force
  else
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged --force
  for _ in $(seq 1 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
  munge -n | unmunge >/dev/null || die "munged does not answer"
fi

# 3. slurm.conf ----------------------------------------------------------------------------------
HOST="$(hostname -s)"
# `slurmd -C` prints this machine's line, e.g.
# NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105
NODE_LINE="$(slurmd -C | head -n1)"
CPUS="$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$NODE_LINE")"
[ -n "$CPUS" ] || CPUS="$(nproc)"
MEM="$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$NODE_LINE")"
[ -n "$MEM" ] || MEM="$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)"
TOPO="$(grep -o 'Boards=[0-9]* SocketsPerBoard=[0-9]* CoresPerSocket=[0-9]* ThreadsPerCore=[0-9]*' <<<"$NODE_LINE" || true)"
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
CONF="$(
  cat <<EOF
# one-node CI cluster written by scgenbench scripts/ci/slurm-setup.sh
ClusterName=scgenbench-ci
SlurmctldHost=${HOST}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmctldTimeout=120
SlurmdTimeout=120
InactiveLimit=0
MinJobAge=300
KillWait=30
Waittime=0
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} ${TOPO} RealMemory=${MEM} State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
EOF
)"
changed=0
if [ ! -f /etc/slurm/slurm.conf ] || [ "$(cat /etc/slurm/slurm.conf)" != "$CONF" ]; then
  log "writing /etc/slurm/slurm.conf (${HOST}: CPUs=${CPUS} RealMemory=${MEM} MB)"
  printf '%s\n' "$CONF" >/etc/slurm/slurm.conf
  changed=1
fi

# 4. daemons -------------------------------------------------------------------------------------
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if running /run/slurmctld.pid && [ "$changed" -eq 1 ]; then
  log "configuration changed: scontrol reconfigure"
  scontrol reconfigure || true
fi
if ! running /run/slurmctld.pid; then
  log "starting slurmctld (log /var/log/slurm/slurmctld.log)"
  /usr/sbin/slurmctld -i
fi
for _ in $(seq 1 "$TIMEOUT"); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 1; done
scontrol ping | grep -q UP || die "slurmctld does not answer"
if ! running /run/slurmd.pid; then
  log "starting slurmd (log /var/log/slurm/slurmd.log)"
  /usr/sbin/slurmd
fi

# 5. node idle, then a smoke job -----------------------------------------------------------------
state=""
for _ in $(seq 1 "$TIMEOUT"); do
  state="$(sinfo -h -n "$HOST" -o '%T' 2>/dev/null | head -n1)"
  case "$state" in
    idle | mixed | allocated) break ;;
    down* | drain* | fail*) scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
  esac
  sleep 1
done
case "$state" in idle | mixed | allocated) ;; *) die "node $HOST is '$state', not idle" ;; esac
log "node $HOST is $state"

OUT="$(mktemp -d /tmp/slurm-smoke.XXXXXX)"
JOB="$(sbatch --parsable -p debug -n 1 -t 2 -o "$OUT/%j.out" --wrap 'echo smoke-ok $(hostname -s)')"
log "smoke job $JOB submitted"
for _ in $(seq 1 "$TIMEOUT"); do
  squeue -h -j "$JOB" -o '%T' 2>/dev/null | grep -q . || break
  squeue -h -j "$JOB" -o '%T' 2>/dev/null | grep -Eq 'COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL' && break
  sleep 1
done
grep -q smoke-ok "$OUT/$JOB.out" 2>/dev/null || die "smoke job $JOB wrote no output ($(cat "$OUT/$JOB.out" 2>&1))"
rm -rf "$OUT"
log "smoke job $JOB ran; cluster ready: $(sinfo -h -o '%P %D %T %c CPUs %m MB' | head -n1)"
