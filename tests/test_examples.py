"""The examples the README points newcomers to run and print what they promise."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.parametrize("example", ["pi_cluster.py", "pi_manual_start.py"])
def test_pi_examples(tmp_path, example):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / example), "--engines", "2", "--samples", "400000"],
                         capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MINIPAR_DIR": str(tmp_path / "mp")})
    assert out.returncode == 0, out.stderr
    assert re.search(r"^engines: \[0, 1\] pids: \[\d+, \d+\]$", out.stdout, re.M)
    pi = float(re.search(r"pi ~= ([\d.]+) from 400000 samples on 2 engines", out.stdout).group(1))
    assert abs(pi - 3.14159) < 0.02
