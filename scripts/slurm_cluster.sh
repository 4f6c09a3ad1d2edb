#!/usr/bin/env bash
# A single-node Slurm cluster on localhost, for the integration tests (tests/test_slurm.py)
# and for trying `launcher=slurm` on one machine. Needs root (slurmd launches the jobs).
#
#   bash scripts/slurm_cluster.sh install         # apt-get install slurm-wlm munge if missing
#   bash scripts/slurm_cluster.sh start [DIR]     # start munged, slurmctld, slurmd; prints SLURM_CONF
#   bash scripts/slurm_cluster.sh stop [DIR]      # cancel its jobs, stop the daemons it started, by pid
#   bash scripts/slurm_cluster.sh status [DIR]
#
# Everything (configs, sockets, state, logs, pid files) lives in DIR (default
# /tmp/transferlab-slurm); nothing under /etc is changed, so a machine's own Slurm or munge is
# left alone. Clients find this cluster through `export SLURM_CONF=DIR/slurm.conf`.
# No accounting database (slurmdbd): transferlab follows its jobs with squeue and the records
# on disk, never with sacct.
set -euo pipefail

cmd=${1:-}
DIR=$(realpath -m "${2:-${TRANSFERLAB_SLURM_DIR:-/tmp/transferlab-slurm}}")
DAEMONS=(slurmd slurmctld munged)  # stop order

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null; then
        return 0
    fi
    [ "$(id -u)" = 0 ] || { echo "installing Slurm needs root (apt-get)" >&2; return 1; }
    echo "installing slurm-wlm and munge (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

pid_of() {  # the pid in DIR/<daemon>.pid if that process is alive
    local f="$DIR/$1.pid"
    [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"
}

write_configs() {
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/munge"
    chmod 700 "$DIR/munge"
    # A fresh key per cluster, readable by root only (munged refuses anything looser).
    [ -s "$DIR/munge/munge.key" ] || dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
    cat > "$DIR/slurm.conf" <<EOF
# Written by scripts/slurm_cluster.sh: one node, no cgroups, no accounting.
ClusterName=transferlab
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire=10: a requeued job may start again after 10 s instead of 120 s.
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=${TRANSFERLAB_SLURMCTLD_PORT:-6817}
SlurmdPort=${TRANSFERLAB_SLURMD_PORT:-6818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobRequeue=1
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MinJobAge=300
KillWait=5
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs=${TRANSFERLAB_SLURM_CPUS:-2} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

wait_idle() {  # until the node accepts jobs, at most 60 s
    for _ in $(seq 120); do
        state=$(SLURM_CONF="$DIR/slurm.conf" sinfo -h -N -o %T 2>/dev/null | head -1 || true)
        case "$state" in idle*|mix*|alloc*) return 0 ;; esac
        sleep 0.5
    done
    echo "the Slurm node did not become idle (state: ${state:-none}); logs in $DIR/log" >&2
    return 1
}

start() {
    [ "$(id -u)" = 0 ] || { echo "starting a Slurm cluster needs root" >&2; return 1; }
    install
    if [ -n "$(pid_of slurmctld || true)" ]; then
        echo "already running in $DIR" >&2
    else
        write_configs
        munged --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
            --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" \
            --seed-file="$DIR/munge/munged.seed" --force
        export SLURM_CONF="$DIR/slurm.conf"
        slurmctld -i   # -i: ignore state left by an earlier cluster in DIR
        slurmd -N localhost
    fi
    wait_idle || { stop; return 1; }
    echo "export SLURM_CONF=$DIR/slurm.conf"
}

stop() {
    if [ -n "$(pid_of slurmctld || true)" ]; then
        SLURM_CONF="$DIR/slurm.conf" scancel --full --quiet --partition=debug 2>/dev/null || true
        sleep 1
    fi
    for d in "${DAEMONS[@]}"; do
        pid=$(pid_of "$d" || true)
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
        rm -f "$DIR/$d.pid"
    done
}

status() {
    for d in munged slurmctld slurmd; do
        pid=$(pid_of "$d" || true)
        echo "$d: ${pid:-not running}"
    done
    [ -z "$(pid_of slurmctld || true)" ] || SLURM_CONF="$DIR/slurm.conf" sinfo
}

case "$cmd" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 install | start [DIR] | stop [DIR] | status [DIR]" >&2; exit 2 ;;
esac
