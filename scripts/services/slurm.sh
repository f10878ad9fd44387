#!/usr/bin/env bash
# A single-node Slurm (munged + slurmctld + slurmd) on this machine: node $(hostname) at
# 127.0.0.1 advertising 8 CPUs, partition `debug`.
# Idempotent: install what is missing, (re)write slurm.conf, start only the daemons that are not
# running (by their pid files), resume the node if it is down, wait until the node is usable,
# smoke-test sbatch and scancel, print one OK line.
set -euo pipefail

PACKAGES=(munge slurmctld slurmd slurm-client)
CONF=/etc/slurm/slurm.conf
MUNGED_PID=/run/munge/munged.pid
SLURMCTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
WAIT=${SLURM_WAIT:-60}   # seconds for any one wait below
NODE=$(hostname)

SCRIPT=slurm.sh
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || die "needs root (apt-get, daemons)"
take_lock
install_missing "${PACKAGES[@]}"

# pid_alive PID COMM: a live (not zombie) process named COMM; alive PIDFILE COMM: same, pid from the file
pid_alive() {
    local stat
    [ -n "$1" ] && stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}
alive() { pid_alive "$(cat "$1" 2>/dev/null)" "$2"; }
dead() { ! alive "$@"; }
# stop PIDFILE COMM: TERM the process of that pid file and wait until it is gone
stop() {
    alive "$1" "$2" || return 0
    kill -TERM "$(cat "$1")" 2>/dev/null || true
    poll dead "$1" "$2" || die "$2 (pid $(cat "$1")) did not stop on SIGTERM within ${WAIT}s"
}
wait_for() { local what=$1; shift; poll "$@" || die "timed out after ${WAIT}s waiting for $what"; }

# munge: the postinst makes the key; make one if it is somehow missing
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
if ! alive "$MUNGED_PID" munged; then
    runuser -u munge -- /usr/sbin/munged --force 9>&-
fi
munge_works() { munge -n | unmunge; }
wait_for "munge -n | unmunge" munge_works

install -d -m 0755 /etc/slurm /var/log/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd
conf="# written by minipar scripts/services/slurm.sh: a single-node test bed
ClusterName=minipar
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=$SLURMCTLD_PID
SlurmdPidFile=$SLURMD_PID
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
SchedulerParameters=batch_sched_delay=0
EnforcePartLimits=ALL
ReturnToService=2
KillWait=5
MinJobAge=60
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=8 Sockets=1 CoresPerSocket=8 ThreadsPerCore=1 RealMemory=4096 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
if [ "$(cat "$CONF" 2>/dev/null)" != "$conf" ]; then
    # a changed config (another hostname, a newer version of this script) needs fresh daemons
    stop "$SLURMD_PID" slurmd
    stop "$SLURMCTLD_PID" slurmctld
    printf '%s\n' "$conf" > "$CONF.tmp" && mv "$CONF.tmp" "$CONF"
fi

ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
if ! alive "$SLURMCTLD_PID" slurmctld; then
    /usr/sbin/slurmctld 9>&- || die "slurmctld did not start; see /var/log/slurm/slurmctld.log"
fi
wait_for "slurmctld to answer 'scontrol ping'" ctld_up

if ! alive "$SLURMD_PID" slurmd; then
    /usr/sbin/slurmd 9>&- || die "slurmd did not start; see /var/log/slurm/slurmd.log"
fi
# The node is usable when its state has no flag suffix (idle* = slurmd not responding).
# idle is what a fresh bring-up gives; mixed/allocated mean jobs of earlier tests still run.
node_usable() {
    local state
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null)
    case $state in
        idle|mixed|allocated) return 0 ;;
        down|drained|draining|drain|fail|failing)  # slurmd answers, but the node was taken out
            scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
    esac
    return 1
}
if ! poll node_usable; then
    die "node $NODE not usable after ${WAIT}s: sinfo says '$(sinfo -h -n "$NODE" -o %T 2>&1)'; see /var/log/slurm/"
fi

# Smoke tests: a batch job writes a file; a sleeping job is cancelled and its process ends.
work=$(mktemp -d /tmp/minipar-slurm.XXXXXX)
trap 'rm -rf "$work"' EXIT
start=$EPOCHREALTIME
job=$(sbatch --parsable -J minipar-smoke -o "$work/%j.out" --wrap "echo hi > $work/hi") \
    || die "sbatch failed"
file_says_hi() { [ "$(cat "$work/hi" 2>/dev/null)" = hi ]; }
wait_for "job $job to write $work/hi" file_says_hi
took=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')

job=$(sbatch --parsable -J minipar-smoke -o "$work/%j.out" --wrap "echo \$\$ > $work/pid; exec sleep 300") \
    || die "sbatch failed"
has_pid() { [ -s "$work/pid" ]; }
wait_for "job $job to start" has_pid
pid=$(cat "$work/pid")
scancel "$job" || die "scancel $job failed"
job_over() {  # squeue forgets the job, says 'Invalid job id', or shows a final state
    local out
    out=$(squeue -h -j "$job" -o %T 2>&1) || { [[ $out == *"Invalid job id"* ]]; return; }
    case $out in ""|CANCELLED|COMPLETED|FAILED|TIMEOUT|NODE_FAIL|PREEMPTED|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE) return 0 ;; esac
    return 1
}
wait_for "cancelled job $job to end" job_over
pid_gone() { ! pid_alive "$pid" sleep; }
wait_for "process $pid of cancelled job $job to end" pid_gone

echo "OK slurm: $(sinfo --version) single node $NODE (8 CPUs, partition debug) at 127.0.0.1," \
     "munge $(munged --version 2>&1 | awk 'NR == 1 { print $1 }' | sed 's/^munge-//'); sbatch to output ${took}s;" \
     "pids munged $(cat "$MUNGED_PID") slurmctld $(cat "$SLURMCTLD_PID") slurmd $(cat "$SLURMD_PID")"
