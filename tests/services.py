"""Real services the tests need (sshd, ...): present, or a failure in CI and a skip elsewhere."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parent.parent / "scripts" / "services"
COLD_TIMEOUT = 900  # apt downloads included


def require(name: str, available: bool, how: str):
    if available:
        return
    message = "%s is not available here; bring it up with %s" % (name, how)
    if os.environ.get("CI") == "true":
        pytest.fail("CI must have %s: %s" % (name, message))
    pytest.skip(message)


def ssh_localhost_works() -> bool:
    try:
        return subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "localhost", "true"],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def sshd():
    require("sshd on localhost", ssh_localhost_works(), "scripts/services/sshd.sh (as root)")
    return "localhost"


class Run:
    def __init__(self, args, timeout):
        start = time.monotonic()
        try:
            proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
            self.returncode, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as e:
            self.returncode = None
            self.stdout = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            self.stderr = "timed out after %ss" % timeout
        self.seconds = time.monotonic() - start
        self.ok_lines = [line for line in self.stdout.splitlines() if line.startswith("OK ")]

    def summary(self) -> str:
        tail = (self.stdout + self.stderr).strip().splitlines()[-15:]
        return "exit %s after %.1fs:\n%s" % (self.returncode, self.seconds, "\n".join(tail))


def run_script(name: str, *args: str, timeout: float = COLD_TIMEOUT) -> Run:
    return Run([str(SERVICES / name), *args], timeout)


def bring_up(name: str, what: str, *args: str) -> Run:
    run = run_script(name, *args)
    require(what, run.returncode == 0 and len(run.ok_lines) == 1,
            "scripts/services/%s (as root); it ended %s" % (name, run.summary()))
    return run


NETNS_HOSTS = ("tbh1", "tbh2")


@pytest.fixture(scope="session")
def netns_hosts():
    """Hosts tbh1 and tbh2 (network namespaces at 10.99.0.11 and .12, each with its own sshd and
    hostname) and tbroot (this namespace, 10.99.0.1 on the bridge tbbr0): scripts/services/netns.sh."""
    require("network-namespace hosts", hasattr(os, "geteuid") and os.geteuid() == 0,
            "scripts/services/netns.sh, which needs root (ip netns, sshd)")
    bring_up("netns.sh", "network-namespace hosts %s and tbroot" % ", ".join(NETNS_HOSTS))
    return NETNS_HOSTS
