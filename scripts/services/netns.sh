#!/usr/bin/env bash
# "Hosts" tbh1..tbhN (default N=2) on this one machine: each a network namespace with its own
# address 10.99.0.(10+K), hostname (as seen through its sshd) and sshd; the root namespace is the
# host tbroot at 10.99.0.1 on the bridge tbbr0, with an sshd of its own there. No route leads out.
#   scripts/services/netns.sh [N]
# Idempotent: create what is missing, (re)start only sshds that are not running in the right
# namespace, smoke-test ssh into each host and from each host to tbroot, print one OK line.
# Only the network, /etc/hosts and (through sshd) the hostname differ between these hosts:
# pids and files are shared (shared/TESTBED.md section 6).
set -euo pipefail

N=${1:-2}
BRIDGE=tbbr0
NET=10.99.0
ROOT_NAME=tbroot
ROOT_IP=$NET.1
TAG="# testbed-netns"
SSHD_CONF=/etc/minipar-testbed/sshd-netns.conf
WAIT=${NETNS_WAIT:-30}   # seconds for any one wait below

SCRIPT=netns.sh
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || die "needs root (ip netns, sshd, /etc/hosts)"
[[ $N =~ ^[0-9]+$ ]] && [ "$N" -ge 1 ] && [ "$N" -le 200 ] || die "the number of hosts must be 1..200, got '$N'"
take_lock
work=$(mktemp -d /tmp/minipar-netns.XXXXXX)
trap 'rm -rf "$work"' EXIT
install_missing iproute2 util-linux openssh-client nftables   # nft: tests drop one port inside a host

host_ip() { echo "$NET.$((10 + $1))"; }
HOSTS=()
for k in $(seq "$N"); do HOSTS+=("tbh$k"); done

# write_in_place PATH CONTENT: rewrite only when different, and in place (never mv): the namespaces'
# hosts files are bind-mounted over /etc/hosts, and a bind mount keeps the old inode
write_in_place() {
    if [ "$(cat "$1" 2>/dev/null)" != "$2" ]; then printf '%s\n' "$2" > "$1"; fi
}

# sshd and root's key: sshd.sh makes them; run it only if something it makes is missing
key_authorized() {
    [ -f ~/.ssh/id_ed25519.pub ] && grep -qF "$(cat ~/.ssh/id_ed25519.pub)" ~/.ssh/authorized_keys 2>/dev/null
}
if [ ! -x /usr/sbin/sshd ] || [ ! -d /run/sshd ] || [ ! -f /etc/ssh/ssh_host_ed25519_key ] || ! key_authorized; then
    out=$("$(dirname "$0")/sshd.sh" 2>&1 9>&-) \
        || { echo "$out" >&2; die "sshd.sh failed (needed for the hosts' sshds)"; }
fi

# ---------------------------------------------------------------- network
ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge forward_delay 0 \
    || die "cannot create the bridge $BRIDGE (ip link add ... type bridge)"
ip -4 addr show dev "$BRIDGE" | grep -F " $ROOT_IP/24 " >/dev/null || ip addr add "$ROOT_IP/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
for k in $(seq "$N"); do
    h=tbh$k
    [ -e "/run/netns/$h" ] || ip netns add "$h" || die "ip netns add $h failed"
    if ! ip -n "$h" link show eth0 >/dev/null 2>&1; then
        ip link del "veth-$h" 2>/dev/null || true   # the other end of a namespace that was deleted
        ip link add "veth-$h" type veth peer name eth0 netns "$h" || die "cannot create the veth pair of $h"
    fi
    ip link set "veth-$h" master "$BRIDGE" up
    ip -n "$h" -4 addr show dev eth0 | grep -F " $(host_ip "$k")/24 " >/dev/null \
        || ip -n "$h" addr add "$(host_ip "$k")/24" dev eth0
    ip -n "$h" link set eth0 up
    ip -n "$h" link set lo up
done

# ---------------------------------------------------------------- names
# Each namespace's /etc/hosts (bind-mounted by `ip netns exec`) names every host; tbroot is also
# this machine's hostname, which a controller started with --ip='*' writes into its files.
hosts_lines="$ROOT_IP $ROOT_NAME $(hostname)"
for k in $(seq "$N"); do hosts_lines+=$'\n'"$(host_ip "$k") tbh$k"; done
for h in "${HOSTS[@]}"; do
    mkdir -p "/etc/netns/$h"
    write_in_place "/etc/netns/$h/hosts" "127.0.0.1 localhost
$hosts_lines"
done
# the root /etc/hosts: only append (a reader never sees it empty); rewrite only when a line is stale
wanted="$ROOT_IP $ROOT_NAME $TAG"
for k in $(seq "$N"); do wanted+=$'\n'"$(host_ip "$k") tbh$k $TAG"; done
present=$(grep -F "$TAG" /etc/hosts || true)
if [ "$present" != "$wanted" ]; then
    if [ -n "$present" ]; then
        others=$(grep -vF "$TAG" /etc/hosts || true)
        write_in_place /etc/hosts "$others
$wanted"
    else
        printf '%s\n' "$wanted" >> /etc/hosts
    fi
fi

# ---------------------------------------------------------------- sshds
mkdir -p "$(dirname "$SSHD_CONF")"
conf="# written by minipar scripts/services/netns.sh: the sshd of each netns host
# (ListenAddress and PidFile are given on its command line)
Port 22
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
AllowTcpForwarding yes
MaxStartups 200:30:400
MaxSessions 200
UseDNS no
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server"

pid_file() { echo "/run/sshd-$1.pid"; }
# sshd_in_place NAME: the sshd of NAME runs (not a zombie) in NAME's network namespace
sshd_in_place() {
    local pid stat
    pid=$(cat "$(pid_file "$1")" 2>/dev/null) && [ -n "$pid" ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sshd ] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) && stat=${stat##*) } && [ "${stat%% *}" != Z ] || return 1
    if [ "$1" = "$ROOT_NAME" ]; then
        [ "$(readlink "/proc/$pid/ns/net")" = "$(readlink /proc/self/ns/net)" ]
    else
        [ "$(readlink "/proc/$pid/ns/net")" = "net:[$(stat -L -c %i "/run/netns/$1")]" ]
    fi
}
stop_sshd() {  # NAME: TERM its sshd (by pid file) and wait until it is gone
    local pid
    pid=$(cat "$(pid_file "$1")" 2>/dev/null) || return 0
    rm -f "$(pid_file "$1")"
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sshd ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    sshd_gone() { [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != sshd ] || grep -q '^State:.*Z' "/proc/$pid/status"; }
    poll sshd_gone || die "the old sshd of $1 (pid $pid) did not stop on SIGTERM within ${WAIT}s"
}
listening() {  # NAMESPACE-or-empty IP: something listens on IP:22
    local cmd=(ss -Hltn "src $2:22")
    if [ -n "$1" ]; then cmd=(ip netns exec "$1" "${cmd[@]}"); fi
    [ -n "$("${cmd[@]}" 2>/dev/null)" ]
}

if [ "$(cat "$SSHD_CONF" 2>/dev/null)" != "$conf" ]; then
    for name in "$ROOT_NAME" "${HOSTS[@]}"; do stop_sshd "$name"; done
    printf '%s\n' "$conf" > "$SSHD_CONF.tmp" && mv "$SSHD_CONF.tmp" "$SSHD_CONF"
fi
/usr/sbin/sshd -t -f "$SSHD_CONF" -o "ListenAddress=$ROOT_IP" || die "sshd -t rejects $SSHD_CONF"

if ! sshd_in_place "$ROOT_NAME"; then
    stop_sshd "$ROOT_NAME"
    /usr/sbin/sshd -f "$SSHD_CONF" -o "ListenAddress=$ROOT_IP" -o "PidFile=$(pid_file "$ROOT_NAME")" \
        2>"$work/sshd.err" 9>&- || die "the sshd of $ROOT_NAME did not start: $(cat "$work/sshd.err")"
fi
for k in $(seq "$N"); do
    h=tbh$k
    sshd_in_place "$h" && continue
    stop_sshd "$h"   # e.g. one left in a namespace that was deleted and made again
    ip netns exec "$h" unshare --uts sh -c 'hostname "$0" && exec "$@"' "$h" \
        /usr/sbin/sshd -f "$SSHD_CONF" -o "ListenAddress=$(host_ip "$k")" -o "PidFile=$(pid_file "$h")" \
        2>"$work/sshd.err" 9>&- \
        || die "the sshd of $h did not start (ip netns exec $h unshare --uts ... sshd): $(cat "$work/sshd.err")"
done
poll listening "" "$ROOT_IP" || die "no sshd listens on $ROOT_IP:22 (the host $ROOT_NAME) after ${WAIT}s"
for k in $(seq "$N"); do
    poll listening "tbh$k" "$(host_ip "$k")" || die "no sshd listens on $(host_ip "$k"):22 in tbh$k after ${WAIT}s"
    poll sshd_in_place "tbh$k" || die "the sshd of tbh$k is not running in its namespace ($(pid_file "tbh$k"))"
done

# ---------------------------------------------------------------- known hosts
# Every sshd here uses this machine's host keys; add a name only when its entry is missing or stale.
mkdir -p ~/.ssh && chmod 700 ~/.ssh && touch ~/.ssh/known_hosts
know() {  # NAME IP
    local key
    key=$(ssh-keyscan -T 5 -t ed25519 "$2" 2>/dev/null | awk '$2 == "ssh-ed25519" && !n++ { print $2 " " $3 }' || true)
    [ -n "$key" ] || die "ssh-keyscan got no ed25519 host key from $2 ($1)"
    ssh-keygen -F "$1" 2>/dev/null | grep -F "$key" >/dev/null && return 0
    ssh-keygen -R "$1" >/dev/null 2>&1 || true
    echo "$1 $key" >> ~/.ssh/known_hosts
}
know "$ROOT_NAME" "$ROOT_IP"
know "$ROOT_IP" "$ROOT_IP"
for k in $(seq "$N"); do
    know "tbh$k" "$(host_ip "$k")"
    know "$(host_ip "$k")" "$(host_ip "$k")"
done
# a rehash killed part way leaves this lock behind and stalls every later login shell for 60 s
find ~/.pyenv/shims -maxdepth 1 -name .pyenv-shim -mmin +1 -delete 2>/dev/null || true

# ---------------------------------------------------------------- smoke test
# into each host, then from it back to tbroot: names, keys, sshds, the bridge both ways
ssh_opts=(-o BatchMode=yes -o ConnectTimeout=10)
for h in "${HOSTS[@]}"; do
    timeout -k 5 60 ssh "${ssh_opts[@]}" "$h" \
        "hostname; ssh ${ssh_opts[*]} $ROOT_NAME hostname" >"$work/$h" 2>&1 </dev/null 9>&- &
done
wait || true
for h in "${HOSTS[@]}"; do
    said=$(cat "$work/$h")
    [ "$said" = "$h"$'\n'"$(hostname)" ] \
        || die "ssh $h 'hostname; ssh $ROOT_NAME hostname' should print $h and $(hostname), got: $said"
done

pids=$ROOT_NAME=$(cat "$(pid_file "$ROOT_NAME")")
for h in "${HOSTS[@]}"; do pids+=" $h=$(cat "$(pid_file "$h")")"; done
echo "OK netns: hosts ${HOSTS[*]} at $NET.11-$((10 + N)) on bridge $BRIDGE, $ROOT_NAME ($(hostname)) at $ROOT_IP;" \
     "an sshd on each (pids $pids)"
