#!/usr/bin/env bash
# Bring up Son of Grid Engine 8.1.9 on this one host: sge_qmaster + sge_execd, queue all.q (8 slots),
# PEs smp/mpi/make, tuned for tests (1 s scheduling, no load alarms, root jobs, no login shells).
# Idempotent: install, configure, start, wait until usable, run a few real jobs, print one OK line.
# Why each step is there (with the error texts it avoids): shared/TESTBED.md section 4.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "sge.sh: needs root (apt-get, SGE daemons)" >&2; exit 1; }

HOST=$(hostname)
COMMON=/var/lib/gridengine/default/common
SPOOL=/var/spool/gridengine
QMASTER_PID=$SPOOL/qmaster/qmaster.pid
PKGS=(gridengine-master gridengine-exec gridengine-client)
WORK=$(mktemp -d /tmp/minipar-sge.XXXXXX)
LOG=$WORK/log
SMOKE_JOBS=()
cleanup() {
    if [ "${#SMOKE_JOBS[@]}" -gt 0 ]; then qdel "${SMOKE_JOBS[@]}" >/dev/null 2>&1 || true; fi
    cd / && rm -rf "$WORK"
}
trap cleanup EXIT
: > "$LOG"

die() {
    echo "sge.sh: $*" >&2
    if [ -s "$LOG" ]; then echo "--- last lines of this run's log:" >&2; tail -n 20 "$LOG" >&2; fi
    exit 1
}

# wait_until SECONDS CMD...: poll CMD every 0.1 s until it succeeds; fail after SECONDS
wait_until() {
    local end=$(( $(date +%s) + $1 )); shift
    until "$@"; do
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.1
    done
}

# alive PIDFILE COMM: the pid in PIDFILE is a live process named COMM (a zombie counts as dead)
alive() {
    local pid state
    [ -s "$1" ] || return 1
    pid=$(tr -dc 0-9 < "$1")
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# execd names its spool dir after its reverse lookup (localhost here), so look in all of them
execd_pidfile() {
    local f
    for f in "$SPOOL"/execd/*/execd.pid; do
        if alive "$f" sge_execd; then echo "$f"; return 0; fi
    done
    return 1
}

# another engineer may be running apt: wait for its locks (bounded) instead of failing
apt_get() {
    local end=$(( $(date +%s) + 300 )) out
    while :; do
        if out=$(DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@" 2>&1); then
            echo "$out" >> "$LOG"; return 0
        fi
        echo "$out" >> "$LOG"
        if grep -qE 'Could not get lock|Unable to acquire|Unable to lock' <<< "$out" && [ "$(date +%s)" -lt "$end" ]; then
            sleep 2; continue
        fi
        return 1
    done
}

# two bring-ups at once would race on the daemons and the configuration
exec 9> /run/minipar-sge.lock
flock -w 300 9 || die "another sge.sh still holds /run/minipar-sge.lock after 300 s"

# a rehash killed part way leaves this lock behind and stalls every later login shell for 60 s
find ~/.pyenv/shims -maxdepth 1 -name .pyenv-shim -mmin +1 -delete 2>/dev/null || true

# --- 1. install (the postinst runs init_cluster from the preseeded answers) ---
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if dpkg-query -W -f='${Status}' slurm-wlm-torque 2>/dev/null | grep -q 'ok installed'; then
        die "slurm-wlm-torque is installed and conflicts with gridengine-client; not removing it"
    fi
    debconf-set-selections <<EOF
gridengine-common shared/gridengineconfig boolean true
gridengine-common shared/gridenginecell string default
gridengine-common shared/gridenginemaster string $HOST
EOF
    if apt-cache policy "${missing[@]}" 2>/dev/null | grep -qE 'Candidate: \(none\)' \
        || [ "$(apt-cache policy "${missing[@]}" 2>/dev/null | grep -c 'Candidate:')" -lt "${#missing[@]}" ]; then
        apt_get update || die "apt-get update failed"
    fi
    # --no-remove: never take away another engineer's packages to make room
    if ! apt_get install -y -q --no-remove "${PKGS[@]}"; then
        apt_get update || die "apt-get update failed"
        apt_get install -y -q --no-remove "${PKGS[@]}" || die "apt-get install ${PKGS[*]} failed"
    fi
fi
if [ ! -s "$COMMON/bootstrap" ]; then
    # installed without the preseed: the postinst only initialises a cluster on a fresh install
    install -d -o sgeadmin -g sgeadmin "$SPOOL/qmaster" "$SPOOL/qmaster/job_scripts" "$SPOOL/spooldb"
    su -s /bin/sh -c "/usr/share/gridengine/scripts/init_cluster /var/lib/gridengine default $SPOOL/spooldb sgeadmin" \
        sgeadmin >> "$LOG" 2>&1 || die "init_cluster failed"
fi
if [ "$(cat "$COMMON/act_qmaster" 2>/dev/null)" != "$HOST" ]; then
    echo "$HOST" > "$COMMON/act_qmaster"
    chown sgeadmin:sgeadmin "$COMMON/act_qmaster"
fi

# --- 2. host_aliases (fix a: "client IP resolved to host name "localhost". This is not identical to ...") ---
aliases=("$HOST")
add_alias() {
    local n a
    for n in "$@"; do
        for a in "${aliases[@]}"; do [ "$a" = "$n" ] && continue 2; done
        aliases+=("$n")
    done
}
for addr in $(getent ahosts "$HOST" | awk '{print $1}' | sort -u); do
    add_alias $(getent hosts "$addr" | awk '{for (i = 2; i <= NF; i++) print $i}')
done
add_alias localhost
if [ "$(cat "$COMMON/host_aliases" 2>/dev/null)" != "${aliases[*]}" ]; then
    echo "${aliases[*]}" > "$COMMON/host_aliases"
    chown sgeadmin:sgeadmin "$COMMON/host_aliases"
fi

# --- 3. qmaster ---
qmaster_started=0
if ! alive "$QMASTER_PID" sge_qmaster; then
    qmaster_started=1
    /usr/sbin/sge_qmaster >> "$LOG" 2>&1 || die "sge_qmaster did not start; see $SPOOL/qmaster/messages"
fi
wait_until 60 qstat >/dev/null 2>&1 \
    || die "qstat fails 60 s after starting sge_qmaster: $(qstat 2>&1 | head -2); see $SPOOL/qmaster/messages"

# --- 4. configuration, from full files ---
mkdir -p "$WORK/cfg"
# flat: an object's dump as "key value" lines, continuation lines joined, comments dropped
flat() {
    awk '/^#/ && !cont { next }
         { if (cont) { sub(/^[ \t]+/, ""); line = line " " $0 } else line = $0
           cont = sub(/[ \t]*\\$/, "", line)
           if (!cont) { print line; line = "" } }'
}
# merged BASE WANT: BASE with every key of WANT set to WANT's value (added if BASE lacks it)
merged() {
    awk 'NR == FNR { k = $1; $1 = ""; sub(/^ +/, ""); want[k] = $0; order[++n] = k; next }
         { k = $1; if (k in want) { printf "%-26s %s\n", k, want[k]; seen[k] = 1 } else print }
         END { for (i = 1; i <= n; i++) if (!(order[i] in seen)) printf "%-26s %s\n", order[i], want[order[i]] }' \
        "$2" <(flat < "$1")
}
# differs CURRENT WANT: some key of WANT has another value in CURRENT (whitespace aside)
differs() {
    ! awk 'NR == FNR { k = $1; $1 = ""; want[k] = $0; next }
           { k = $1; $1 = ""; if (k in want) { have[k] = 1; if ($0 != want[k]) bad = 1 } }
           END { for (k in want) if (!(k in have)) bad = 1; exit bad }' "$1" <(flat < "$2")
}
# configure KIND NAME WANT_FILE: create (-A) or modify (-M) the object so it has WANT's values;
# leaves it alone when it already has them. Returns 0 if it changed something, 1 if not.
configure() {
    local kind=$1 name=$2 want=$3 exists=1 cur=$WORK/cfg/current file=$WORK/cfg/$2 out
    case $kind in
        conf)  qconf -sconf "$name" > "$cur" 2>> "$LOG" || die "qconf -sconf $name failed" ;;
        sconf) qconf -ssconf > "$cur" 2>> "$LOG" || die "qconf -ssconf failed" ;;
        hgrp)  qconf -shgrpl 2>/dev/null | grep -qxF "$name" && qconf -shgrp "$name" > "$cur" || exists=0 ;;
        p)     qconf -spl 2>/dev/null | grep -qxF "$name" && qconf -sp "$name" > "$cur" || exists=0 ;;
        q)     qconf -sql 2>/dev/null | grep -qxF "$name" && qconf -sq "$name" > "$cur" || exists=0 ;;
    esac
    if [ "$exists" = 1 ]; then
        differs "$want" "$cur" || return 1
    else
        # a new queue starts from qmaster's template; the other objects are given in full
        if [ "$kind" = q ]; then qconf -sq > "$cur"; else : > "$cur"; fi
    fi
    # the file's basename must be the object's name: -Mconf x.conf gives 'can't resolve hostname "x.conf"'
    merged "$cur" "$want" > "$file"
    local op=-M; [ "$exists" = 1 ] || op=-A
    out=$(qconf "$op$kind" "$file" 2>&1) || die "qconf $op$kind for $name failed: $out"
    echo "$out" >> "$LOG"
    if grep -qiE 'error|denied|unknown|does not exist|invalid' <<< "$out"; then die "qconf $op$kind for $name: $out"; fi
    return 0
}

# global (fix b: root jobs need min_uid/min_gid 0, and an execd started before that keeps failing them;
# fix e: login_shells none, so jobs don't run ~/.bashrc and pyenv)
cat > "$WORK/want-global" <<'EOF'
min_uid 0
min_gid 0
login_shells none
EOF
global_changed=0
configure conf global "$WORK/want-global" && global_changed=1
# scheduler (fix d: the 15 s default interval and load adjustments stall tests)
cat > "$WORK/want-sched" <<'EOF'
schedule_interval 0:0:1
flush_submit_sec 1
flush_finish_sec 1
job_load_adjustments NONE
queue_sort_method seqno
EOF
configure sconf sched "$WORK/want-sched" || true
if ! qconf -ss 2>/dev/null | grep -qxF "$HOST"; then
    qconf -as "$HOST" >> "$LOG" 2>&1 || die "qconf -as $HOST failed"
fi
printf 'group_name @allhosts\nhostlist %s\n' "$HOST" > "$WORK/want-hgrp"
configure hgrp @allhosts "$WORK/want-hgrp" || true
pe() {  # pe NAME ALLOCATION_RULE JOB_IS_FIRST_TASK
    cat > "$WORK/want-pe-$1" <<EOF
pe_name $1
slots 999
user_lists NONE
xuser_lists NONE
start_proc_args NONE
stop_proc_args NONE
allocation_rule $2
control_slaves TRUE
job_is_first_task $3
urgency_slots min
accounting_summary TRUE
qsort_args NONE
EOF
    configure p "$1" "$WORK/want-pe-$1" || true
}
pe smp '$pe_slots' TRUE
pe mpi '$fill_up' TRUE
pe make '$round_robin' FALSE
# queue (fix c: `qconf -aq` with an unchanged file creates slots 1 / hostlist NONE, so give the whole file;
# fix d: load_thresholds np_load_avg=1.75 puts the queue in alarm under load)
cat > "$WORK/want-q" <<'EOF'
qname all.q
hostlist @allhosts
load_thresholds NONE
pe_list make smp mpi
slots 8
shell /bin/bash
EOF
configure q all.q "$WORK/want-q" || true

# --- 5. execd, only after min_uid/min_gid are 0 ---
if pidfile=$(execd_pidfile) && [ "$global_changed$qmaster_started" != 00 ]; then
    # after a global change: it keeps applying the configuration it started with (fix b);
    # after a qmaster restart: its queue stays 'u' until its next load report, up to 40 s later
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    wait_until 30 eval '! alive "$pidfile" sge_execd' || die "sge_execd (pid $pid) did not stop within 30 s"
fi
if ! execd_pidfile > /dev/null; then
    /usr/sbin/sge_execd >> "$LOG" 2>&1 || die "sge_execd did not start; see $SPOOL/execd/*/messages"
fi
queue_state() {  # the states column of all.q@HOST in qstat -f ('' when usable), or '?' if absent
    qstat -f 2>/dev/null | awk -v q="all.q@$HOST" '$1 == q { s = (NF >= 6) ? $6 : ""; found = 1 }
        END { if (found) print s; else print "?" }'
}
queue_usable() {
    local s; s=$(queue_state)
    case $s in
        *E*) qmod -cq "all.q@$HOST" >> "$LOG" 2>&1 || true ;;  # error state left by an earlier failed job
        *d*) qmod -eq "all.q@$HOST" >> "$LOG" 2>&1 || true ;;  # disabled
    esac
    [ -z "$s" ]
}
wait_until 60 queue_usable \
    || die "all.q@$HOST is not usable 60 s after starting sge_execd (states: '$(queue_state)'); qstat -f: $(qstat -f 2>&1 | tail -n +3 | head -3)"

# --- 6. smoke test: a job round trip, a qdel, a parallel environment ---
cd "$WORK"
submit() {  # submit VAR QSUB_ARGS...: sets VAR to the job id (the command's words go separately: fix f)
    local var=$1 id; shift
    id=$(qsub -terse -w e -b y -cwd "$@" 2>> "$LOG") || die "qsub $* failed"
    id=${id%%.*}
    [[ $id =~ ^[0-9]+$ ]] || die "qsub $* printed '$id', not a job id"
    SMOKE_JOBS+=("$id")
    printf -v "$var" %s "$id"
}
job_gone() { local out; out=$(qstat -j "$1" 2>&1) && return 1; grep -q 'do not exist' <<< "$out"; }
job_running() { qstat 2>/dev/null | awk -v j="$1" '$1 == j && $5 == "r" { ok = 1 } END { exit !ok }'; }
nslots_is_2() { [ "$(cat nslots.out 2>/dev/null)" = 2 ]; }

submit touch_job -N minipar-touch /usr/bin/touch smoke-a smoke-b
submit sleep_job -N minipar-sleep sleep 60
submit pe_job -N minipar-pe -pe smp 2 -j y -o nslots.out /usr/bin/printenv NSLOTS
wait_until 60 test -e smoke-b || die "job $touch_job did not write $WORK/smoke-b within 60 s: $(qstat -j "$touch_job" 2>&1 | grep -iE 'error|reason' | head -3)"
[ -e smoke-a ] || die "job $touch_job wrote smoke-b but not smoke-a (arguments were not passed as words)"
wait_until 60 nslots_is_2 || die "job $pe_job (-pe smp 2) did not print NSLOTS=2 within 60 s (got '$(cat nslots.out 2>/dev/null)')"
wait_until 60 job_running "$sleep_job" || die "job $sleep_job (sleep 60) was not running within 60 s"
qdel "$sleep_job" >> "$LOG" 2>&1 || die "qdel $sleep_job failed"
for j in "$sleep_job" "$touch_job" "$pe_job"; do
    wait_until 60 job_gone "$j" || die "job $j still known to qstat -j 60 s later"
done
SMOKE_JOBS=()

version=$(qstat -help 2>/dev/null | head -1 || true)
echo "OK ${version:-SGE} on $HOST: qmaster pid $(cat "$QMASTER_PID"), execd pid $(cat "$(execd_pidfile)"), all.q 8 slots, PEs smp mpi make; job, qdel and -pe smp 2 checked"
