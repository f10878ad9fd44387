#!/usr/bin/env bash
# Bring up sshd on localhost with a passwordless key for the current user (root).
# Idempotent: install, configure, start, wait until `ssh localhost true` works, print one OK line.
set -euo pipefail

need_root() { [ "$(id -u)" = 0 ] || { echo "sshd.sh: needs root (apt-get, sshd)"; exit 1; }; }

if ! command -v sshd >/dev/null 2>&1 && [ ! -x /usr/sbin/sshd ]; then
    need_root
    apt-get install -y -q openssh-server openssh-client >/dev/null
fi
need_root
mkdir -p /run/sshd
ssh-keygen -A >/dev/null
mkdir -p /etc/ssh/sshd_config.d
cat > /etc/ssh/sshd_config.d/minipar-tests.conf <<'CONF'
Port 22
ListenAddress 127.0.0.1
ListenAddress ::1
PermitRootLogin prohibit-password
PasswordAuthentication no
AllowTcpForwarding yes
MaxStartups 200:30:400
MaxSessions 200
UseDNS no
CONF
/usr/sbin/sshd -t
if ! { [ -f /run/sshd.pid ] && kill -0 "$(cat /run/sshd.pid)" 2>/dev/null; }; then
    /usr/sbin/sshd
fi

mkdir -p ~/.ssh && chmod 700 ~/.ssh
[ -f ~/.ssh/id_ed25519 ] || ssh-keygen -q -t ed25519 -N '' -f ~/.ssh/id_ed25519
touch ~/.ssh/authorized_keys && chmod 600 ~/.ssh/authorized_keys
grep -qF "$(cat ~/.ssh/id_ed25519.pub)" ~/.ssh/authorized_keys || cat ~/.ssh/id_ed25519.pub >> ~/.ssh/authorized_keys
for name in localhost 127.0.0.1 "$(hostname)"; do ssh-keygen -R "$name" >/dev/null 2>&1 || true; done
for i in $(seq 50); do
    if ssh-keyscan -T 2 localhost 127.0.0.1 "$(hostname)" 2>/dev/null >> ~/.ssh/known_hosts.new; then break; fi
    sleep 0.1
done
cat ~/.ssh/known_hosts.new >> ~/.ssh/known_hosts && rm -f ~/.ssh/known_hosts.new
# a rehash killed part way leaves this lock behind and stalls every later login shell for 60 s
find ~/.pyenv/shims -maxdepth 1 -name .pyenv-shim -mmin +1 -delete 2>/dev/null || true

for i in $(seq 100); do
    if ssh -o BatchMode=yes -o ConnectTimeout=5 localhost true 2>/dev/null; then
        echo "OK sshd on localhost:22 ($(ssh -V 2>&1))"
        exit 0
    fi
    sleep 0.1
done
echo "sshd.sh: sshd started but 'ssh localhost true' does not work" >&2
exit 1
