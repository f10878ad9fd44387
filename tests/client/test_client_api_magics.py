"""The IPython magics (%px, %%px, %pxresult, %pxconfig, %autopx) in a real InteractiveShell,
and that minipar never needs IPython."""
from __future__ import annotations

import subprocess
import sys

import pytest

import minipar
from helpers import ROOT

pytest.importorskip("IPython")


def test_importing_minipar_does_not_import_ipython():
    code = ("import sys, minipar; bad = [m for m in sys.modules if m.split('.')[0] in ('IPython', 'traitlets')]; "
            "assert not bad, bad; assert callable(minipar.load_ipython_extension)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    assert out.returncode == 0, out.stderr


@pytest.fixture
def ip(tmp_path, monkeypatch, cluster):
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance(config=config)
    shell.user_ns["rc"] = cluster
    yield shell
    shell.run_line_magic("reset", "-f")
    InteractiveShell.clear_instance()


def run(ip, cell):
    return ip.run_cell(cell)


def test_load_ext_gives_px_on_the_namespace_client(ip, capsys, cluster):
    ip.run_line_magic("load_ext", "minipar")
    assert run(ip, "%px import os; value = 21").success
    capsys.readouterr()
    assert run(ip, "%px value * 2").success
    out = capsys.readouterr().out
    assert "Out[0:" in out and "]: 42" in out
    assert out.count(": 42") == 2
    assert cluster[:]["value"] == [21, 21]
    assert "value" not in ip.user_ns


def test_cell_px_labels_output_and_takes_options(ip, capsys, cluster):
    ip.run_line_magic("load_ext", "minipar")
    capsys.readouterr()
    assert run(ip, "%%px\nimport sys\nprint('hello')\nprint('oops', file=sys.stderr)").success
    cap = capsys.readouterr()
    assert "[stdout:0] \nhello\n" in cap.out and "[stdout:1] \nhello\n" in cap.out
    assert "[stderr:0] \noops\n" in cap.err and "[stderr:1] \noops\n" in cap.err
    assert run(ip, "%%px --targets 1\nonly_one = 1").success
    assert cluster[1]["only_one"] == 1
    with pytest.raises(minipar.RemoteError, match="only_one"):
        cluster[0]["only_one"]
    res = run(ip, "%%px --noblock -o saved\nsum(range(4))")
    ar = res.result
    assert isinstance(ar, minipar.AsyncResult)
    assert ip.user_ns["saved"] is ar
    assert ar.get(10) == ["6", "6"]
    capsys.readouterr()
    assert run(ip, "%pxresult").success
    assert capsys.readouterr().out.count("]: 6") == 2
    assert run(ip, "%%px --local\nboth_here = 5").success
    assert ip.user_ns["both_here"] == 5 and cluster[:]["both_here"] == [5, 5]


def test_px_errors_show_each_engine(ip, capsys):
    ip.run_line_magic("load_ext", "minipar")
    res = run(ip, "%px 1 / 0")
    assert isinstance(res.error_in_exec, minipar.CompositeError)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "[0:apply]" in text and "[1:apply]" in text and "ZeroDivisionError" in text


def test_pxresult_without_a_result_is_a_usage_error(ip, capsys):
    ip.run_line_magic("load_ext", "minipar")
    res = run(ip, "%pxresult")
    assert not res.success
    assert "none yet" in capsys.readouterr().err


def test_activate_and_pxconfig(ip, capsys, cluster):
    view = cluster[1]
    view.block = True
    with pytest.warns(RuntimeWarning, match="only work inside IPython"):
        import IPython
        saved = IPython.get_ipython
        IPython.get_ipython = lambda: None
        try:
            cluster[:].activate()
        finally:
            IPython.get_ipython = saved
    view.activate("_one")
    capsys.readouterr()
    assert run(ip, "%px_one import os; os.getpid()").success
    out = capsys.readouterr().out
    pid = cluster[1].apply_sync(__import__("os").getpid)
    assert "Out[1:" in out and out.rstrip().endswith("]: %d" % pid)
    ip.run_line_magic("pxconfig_one", "--noblock --targets 0")
    res = run(ip, "%px_one 7")
    assert isinstance(res.result, minipar.AsyncResult) and res.result.get(10) == "7"


def test_autopx_runs_every_cell_remotely(ip, capsys, cluster):
    ip.run_line_magic("load_ext", "minipar")
    assert run(ip, "%autopx").success
    assert "%autopx enabled" in capsys.readouterr().out
    assert run(ip, "remote_only = 7\nprint(remote_only)").success
    out = capsys.readouterr().out
    assert "[stdout:0] \n7" in out and "[stdout:1] \n7" in out
    assert "remote_only" not in ip.user_ns
    assert run(ip, "%autopx").success
    assert "%autopx disabled" in capsys.readouterr().out
    assert run(ip, "local_only = 8").success
    assert ip.user_ns["local_only"] == 8
    assert cluster[:]["remote_only"] == [7, 7]
