"""Real services the tests need (sshd, ...): present, or a failure in CI and a skip elsewhere."""
from __future__ import annotations

import os
import subprocess

import pytest


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
