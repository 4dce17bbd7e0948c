#!/usr/bin/env bash
# Starts a real single-node Slurm cluster (munged, slurmctld, slurmd) without systemd, for
# the Slurm driver's tests and for trying `driver: slurm` on one machine.
#
#   scripts/ci/slurm-up.sh [BASE]        # BASE: $LORACTL_SLURM_BASE, default /tmp/loractl-slurm
#   . BASE/env                           # exports SLURM_CONF and LORACTL_SLURM_TEST=1
#   scripts/ci/slurm-down.sh [BASE]      # stops the daemons by PID
#
# Everything (config, munge key and socket, state, spool, logs, fake GPU devices, pid files)
# lives under BASE, so the cluster leaves nothing behind in /etc or /var. The node advertises
# 16 CPUs and 2 GPUs (character devices like /dev/null) whatever the machine has, so jobs
# that ask for GPUs run and several jobs run at once.
#
# Ports: $LORACTL_SLURM_PORT for slurmctld and the next one for slurmd; by default the first
# free pair from 16817 on, so a system Slurm on the default ports, or a second test cluster
# under another BASE, is not disturbed.
set -euo pipefail

base=${1:-${LORACTL_SLURM_BASE:-/tmp/loractl-slurm}}

die() { echo "slurm-up: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (slurmd starts jobs as their user)"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  echo "slurm-up: installing slurm-wlm and munge" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge >&2 ||
    { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge >&2; }
fi

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if alive "$base/run/slurmctld.pid" && alive "$base/run/slurmd.pid" && alive "$base/munge/munged.pid"; then
  echo "slurm-up: already running under $base" >&2
  echo "$base/env"
  exit 0
fi
# A half-started or crashed cluster: stop what is left and start clean.
"$(dirname "$0")/slurm-down.sh" "$base" >/dev/null 2>&1 || true

# listening PORT: something accepts connections on 127.0.0.1:PORT.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ctld_port=${LORACTL_SLURM_PORT:-}
if [ -z "$ctld_port" ]; then
  ctld_port=16817
  while listening "$ctld_port" || listening $((ctld_port + 1)); do
    ctld_port=$((ctld_port + 2))
    [ "$ctld_port" -lt 16917 ] || die "no free port pair between 16817 and 16917"
  done
fi
slurmd_port=$((ctld_port + 1))

base=$(mkdir -p "$base" && cd "$base" && pwd)
mkdir -p "$base"/{etc,state,spool,log,run,munge,dev}
# munged refuses a socket directory that others cannot traverse (clients are any user).
chmod 755 "$base" "$base/munge"
# A fresh controller state restarts job ids at 1, so the old job-completion log would
# describe other jobs under the same ids: start both clean.
rm -rf "$base/state/"* "$base/spool/"* "$base/log/jobcomp.txt"

key="$base/munge/munge.key"
if [ ! -s "$key" ]; then
  dd if=/dev/urandom of="$key" bs=1 count=1024 status=none
fi
chmod 400 "$key"

node=$(hostname -s)
cpus=16
mem=16000

for i in 0 1; do
  [ -c "$base/dev/nvidia$i" ] || mknod "$base/dev/nvidia$i" c 1 3
done

cat >"$base/etc/slurm.conf" <<EOF
# Written by scripts/ci/slurm-up.sh: a single-node test cluster under $base.
ClusterName=loractl
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$base/munge/munge.socket,cred_expire=${LORACTL_SLURM_CRED_EXPIRE:-5}
StateSaveLocation=$base/state
SlurmdSpoolDir=$base/spool/slurmd-%n
SlurmctldPidFile=$base/run/slurmctld.pid
SlurmdPidFile=$base/run/slurmd.pid
SlurmctldLogFile=$base/log/slurmctld.log
SlurmdLogFile=$base/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$base/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
GresTypes=gpu
ReturnToService=2
SlurmdParameters=config_overrides
# Finished jobs stay visible to scontrol/squeue for an hour; sacct -c covers the rest.
MinJobAge=3600
KillWait=10
InactiveLimit=0
Waittime=0
MpiDefault=none
# Jobs in "urgent" preempt jobs in "debug" by requeueing them, as a shared cluster's
# high-priority partition does; GraceTime gives the preempted trainer time to checkpoint.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP PriorityTier=1 GraceTime=5
PartitionName=urgent Nodes=$node MaxTime=INFINITE State=UP PriorityTier=10
EOF

cat >"$base/etc/gres.conf" <<EOF
NodeName=$node Name=gpu File=$base/dev/nvidia[0-1]
EOF

export SLURM_CONF="$base/etc/slurm.conf"

munged --socket="$base/munge/munge.socket" --key-file="$key" \
  --pid-file="$base/munge/munged.pid" --log-file="$base/log/munged.log" \
  --seed-file="$base/munge/munged.seed" --force
slurmctld -f "$SLURM_CONF" -i
slurmd -f "$SLURM_CONF" -N "$node"

cat >"$base/env" <<EOF
# Source this file to use the test cluster under $base.
export SLURM_CONF='$SLURM_CONF'
export LORACTL_SLURM_TEST=1
export LORACTL_SLURM_BASE='$base'
EOF

# Ready when the node is idle (slurmd registered) and the controller answers.
for _ in $(seq 1 60); do
  if state=$(sinfo -h -n "$node" -o %T 2>/dev/null) && [ "$state" = idle ]; then
    echo "slurm-up: cluster up under $base (node $node, ports $ctld_port/$slurmd_port)" >&2
    echo "$base/env"
    exit 0
  fi
  sleep 0.5
done
echo "slurm-up: node $node did not become idle; logs:" >&2
tail -n 20 "$base/log/slurmctld.log" "$base/log/slurmd.log" >&2 || true
exit 1
