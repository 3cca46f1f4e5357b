#!/usr/bin/env bash
# Set up and start a single-node SLURM cluster on THIS machine (localhost),
# for testing the launch recipe in scripts/slurm/fer_bench.sbatch.
#
# FOR TESTING ONLY: daemons run as root, no accounting database, no cgroups,
# no resource enforcement.  Never run this on a real cluster node.
#
# Idempotent: safe to call again; it only installs/writes/starts what is
# missing, restarts the daemons only if slurm.conf changed, and waits until
# the node is usable.  Needs root (apt-get, /etc, daemons).  Tested on
# Debian 12 (Slurm 22.05.8, munge 0.5.15) in a container without systemd.
# It refuses a machine whose slurm.conf it did not write (a real cluster's).
#
#   scripts/slurm/setup_local.sh          # install, configure, start, wait
#   scripts/slurm/setup_local.sh --stop   # stop the daemons it starts
#
# The test suite runs it (through run_recipe.sh) only under CI=true or with
# FER_BENCH_SYSTEM_INSTALL=1 (tests/test_launch.py).
#
# Environment:
#   SLURM_SETUP_TIMEOUT   seconds to wait for the node to become idle (60)
#   SLURM_MEM_MARGIN_MB   memory kept out of the node's RealMemory (1024)
set -euo pipefail

START_NS=$(date +%s%N)
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
LOG_DIR=/var/log/slurm
CTLD_LOG=$LOG_DIR/slurmctld.log
SLURMD_LOG=$LOG_DIR/slurmd.log
MUNGE_LOG=/var/log/munge/munged.log
TIMEOUT=${SLURM_SETUP_TIMEOUT:-60}
MEM_MARGIN_MB=${SLURM_MEM_MARGIN_MB:-1024}

# The first line of the slurm.conf this script writes: a slurm.conf without it is someone else's.
MARK="# Written by scripts/slurm/setup_local.sh -- single-node TEST cluster only."

log() { echo "setup_local: $*"; }

# die WHAT [LOGFILE]: one clear line naming what failed, then the log tail.
die() {
    echo "setup_local: FAILED: $1" >&2
    if [[ -n ${2:-} && -r $2 ]]; then
        echo "---- last 20 lines of $2 ----" >&2
        tail -n 20 "$2" >&2
    fi
    exit 1
}

case ${1:-} in
    ""|--stop) ;;
    *) echo "usage: $0 [--stop]" >&2; exit 2 ;;
esac
[[ $(id -u) -eq 0 ]] || die "must run as root (installs packages, starts daemons)"
if [[ -e $CONF ]] && ! grep -qxF "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script: this machine has a SLURM of its own; submit scripts/slurm/fer_bench.sbatch to it (docs/slurm.md: On a real cluster)"
fi

# running NAME: true if a process with exactly that command name exists.
running() { pgrep -x "$1" >/dev/null 2>&1; }
pidfile_pid() { [[ -s $1 ]] && cat "$1" || true; }

stop_daemon() {  # stop_daemon NAME PIDFILE (only the pid the daemon recorded, while it is still that daemon's)
    local pid; pid=$(pidfile_pid "$2")
    [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] || return 0
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    die "$1 (pid $pid) did not stop within 10 s"
}

# ------------------------------------------------------------------- stop ---
if [[ ${1:-} == --stop ]]; then
    stop_daemon slurmd /run/slurm/slurmd.pid
    stop_daemon slurmctld /run/slurm/slurmctld.pid
    stop_daemon munged /run/munge/munged.pid
    log "stopped slurmd, slurmctld and munged"
    exit 0
fi

# ---------------------------------------------------------------- install ---
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    log "installing slurm-wlm and munge with apt-get"
    # Package postinst scripts try to start services; without systemd that
    # can fail or hang, so forbid it for the duration (policy-rc.d exit 101).
    added_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        added_policy=1
    fi
    trap '[[ $added_policy -eq 1 ]] && rm -f /usr/sbin/policy-rc.d' EXIT
    export DEBIAN_FRONTEND=noninteractive
    apt_log=/tmp/slurm-setup-apt.log
    if ! { apt-get install -y --no-install-recommends slurm-wlm munge >"$apt_log" 2>&1 ||
           { apt-get update >>"$apt_log" 2>&1 &&
             apt-get install -y --no-install-recommends slurm-wlm munge >>"$apt_log" 2>&1; }; }; then
        die "apt-get install slurm-wlm munge" "$apt_log"
    fi
    if [[ $added_policy -eq 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
    trap - EXIT
fi
command -v slurmctld >/dev/null || die "slurmctld not found after install"
log "$(slurmd -V)"

# ------------------------------------------------------------------ munge ---
id munge >/dev/null 2>&1 || die "user 'munge' missing (munge package broken?)"
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
chown munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 700 /etc/munge /var/lib/munge /var/log/munge
chmod 755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile=/etc/munge/munge.key --force
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_ok; then
    log "starting munged"
    rm -f /run/munge/munged.pid  # stale pid file from a previous container
    runuser -u munge -- /usr/sbin/munged || die "starting munged" "$MUNGE_LOG"
    for _ in $(seq 50); do munge_ok && break; sleep 0.1; done
    munge_ok || die "munged is not answering (munge -n | unmunge)" "$MUNGE_LOG"
fi

# ------------------------------------------------------------- slurm.conf ---
NODE=$(hostname -s)
getent hosts "$NODE" >/dev/null || die "hostname '$NODE' does not resolve (add it to /etc/hosts)"
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo)
REAL_MEM=$((MEM_MB - MEM_MARGIN_MB))
(( REAL_MEM > 256 )) || REAL_MEM=$((MEM_MB / 2))

mkdir -p "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd /run/slurm
new_conf=$(mktemp)
cat >"$new_conf" <<EOF
$MARK
ClusterName=local
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# No cgroups: containers often lack cgroup delegation.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Use the CPU/memory numbers written below, even if slurmd detects others.
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=$CTLD_LOG
SlurmdLogFile=$SLURMD_LOG
SlurmctldDebug=info
SlurmdDebug=info
# Keep finished jobs visible to 'scontrol show job' for 10 minutes.
MinJobAge=600
KillWait=10
# No mail on this test box (the default /bin/mail is usually missing).
MailProg=/bin/true
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MEM State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
conf_changed=0
if ! cmp -s "$new_conf" "$CONF"; then
    log "writing $CONF (node $NODE: CPUs=$CPUS RealMemory=${REAL_MEM}MB)"
    [[ -e $CONF ]] && cp "$CONF" "$CONF.bak"
    install -m 644 "$new_conf" "$CONF"
    conf_changed=1
fi
rm -f "$new_conf"

# ---------------------------------------------------------------- daemons ---
if (( conf_changed )); then
    running slurmd && { log "slurm.conf changed: stopping slurmd"; stop_daemon slurmd /run/slurm/slurmd.pid; }
    running slurmctld && { log "slurm.conf changed: stopping slurmctld"; stop_daemon slurmctld /run/slurm/slurmctld.pid; }
fi

wait_for() {  # wait_for SECONDS CMD...: poll CMD every 0.2 s
    local end=$((SECONDS + $1)); shift
    until "$@"; do (( SECONDS < end )) || return 1; sleep 0.2; done
}
# Liveness = the daemon answers RPCs (a process that is still shutting down
# or hung does not count).
slurmctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
slurmd_up() { scontrol show slurmd >/dev/null 2>&1; }

ensure_daemon() {  # ensure_daemon NAME LOGFILE
    local name=$1 logf=$2
    "${name}_up" && return 0
    # A process of that name may be starting up or shutting down: let it settle.
    settled() { "${name}_up" || ! running "$name"; }
    wait_for 15 settled || true
    "${name}_up" && return 0
    running "$name" && die "$name is running (pid $(pgrep -x "$name" | tr '\n' ' ')) but not answering" "$logf"
    log "starting $name"
    "$name" || die "starting $name" "$logf"
    wait_for "$TIMEOUT" "${name}_up" || {
        running "$name" || die "$name exited right after start" "$logf"
        die "$name started but not answering after ${TIMEOUT}s" "$logf"
    }
}
ensure_daemon slurmctld "$CTLD_LOG"
ensure_daemon slurmd "$SLURMD_LOG"

# ------------------------------------------------------- wait for the node ---
node_state() { sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n1; }
end=$((SECONDS + TIMEOUT))
state=""
while :; do
    state=$(node_state)
    case $state in
        idle|mixed|allocated|completing) break ;;
        down|drained|draining|fail|failing|"down~"|drain)
            log "node $NODE is '$state' ($(sinfo -h -N -n "$NODE" -o %E)); resuming"
            scontrol update NodeName="$NODE" State=RESUME || true ;;
    esac
    (( SECONDS < end )) || {
        running slurmd || die "slurmd died (node state '$state')" "$SLURMD_LOG"
        die "node $NODE not idle after ${TIMEOUT}s (state '$state', reason: $(sinfo -h -N -n "$NODE" -o %E 2>/dev/null))" "$SLURMD_LOG"
    }
    sleep 0.5
done

END_NS=$(date +%s%N)
printf 'setup_local: SLURM ready (node %s %s, %s CPUs) in %.1f s\n' \
    "$NODE" "$state" "$CPUS" "$(awk -v a="$START_NS" -v b="$END_NS" 'BEGIN{print (b-a)/1e9}')"
