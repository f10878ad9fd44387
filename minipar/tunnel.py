"""ssh -L tunnels through the system ``ssh`` binary: one process carries every port."""
from __future__ import annotations

import os
import socket
import subprocess
import time

from .error import TunnelError

TUNNEL_TIMEOUT = 20.0
"""Seconds for ssh to log in and open its forwards; logins through a bastion are slow."""


def free_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def split_server(server: str):
    """'user@host:port' -> ('user@host', port or None)."""
    if server.count(":") == 1:
        host, port = server.split(":")
        if port.isdigit():
            return host, int(port)
    return server, None


def open_tunnel(server: str, remote_host: str, remote_ports: dict, timeout: float = TUNNEL_TIMEOUT,
                identity: str | None = None):
    """Forward each remote port to a new local port; returns (process, {name: local_port}).

    The remote host is resolved on the ssh server, so 'localhost' there means the server;
    identity is a private key file for ``ssh -i``."""
    host, ssh_port = split_server(server)
    local = {name: free_local_port() for name in remote_ports}
    cmd = ["ssh", "-N", "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes"]
    if ssh_port:
        cmd += ["-p", str(ssh_port)]
    if identity:
        cmd += ["-i", os.path.expanduser(identity)]
    for name, port in remote_ports.items():
        cmd += ["-L", "127.0.0.1:%d:%s:%d" % (local[name], remote_host, port)]
    cmd.append(host)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + timeout
    pending = set(local.values())
    while pending:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace").strip()
            raise TunnelError("ssh tunnel to %s failed (exit %s): %s" % (server, proc.returncode, err))
        for port in list(pending):
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    pending.discard(port)
        if time.monotonic() > deadline:
            proc.kill()
            raise TunnelError("ssh tunnel to %s did not open within %.0fs" % (server, timeout))
        if pending:
            time.sleep(0.05)
    return proc, local
