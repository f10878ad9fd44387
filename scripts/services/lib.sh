# Shared by the bring-up scripts: source it after setting SCRIPT (the script's name).

die() { echo "$SCRIPT: $*" >&2; exit 1; }

# poll CMD...: run CMD every 0.1 s until it succeeds; give up (status 1) after $WAIT seconds (the script sets WAIT)
poll() {
    local deadline=$((SECONDS + WAIT))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# take_lock: one run of this script at a time; daemons started later must close fd 9 (9>&-)
take_lock() {
    mkdir -p /run/lock
    exec 9>"/run/lock/minipar-$SCRIPT.lock"
    flock -w 900 9 || die "another $SCRIPT has held /run/lock/minipar-$SCRIPT.lock for 15 minutes"
}

installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

# install_missing PKG...: apt-get install what is not installed yet; update the lists only
# when an install fails (they may be stale); other bring-up scripts may hold apt's lock
install_missing() {
    local missing=() p
    for p in "$@"; do installed "$p" || missing+=("$p"); done
    [ ${#missing[@]} -gt 0 ] || return 0
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get -y -q -o DPkg::Lock::Timeout=300) log="/tmp/minipar-${SCRIPT%.sh}-apt.log"
    if ! "${apt[@]}" install --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
        "${apt[@]}" update >/dev/null
        "${apt[@]}" install --no-install-recommends "${missing[@]}" >"$log" 2>&1 \
            || { tail -n 20 "$log" >&2; die "apt-get install ${missing[*]} failed"; }
    fi
}
