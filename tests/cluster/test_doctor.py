"""``python -m minipar.doctor``: from the host tbh1 (a network namespace, scripts/services/netns.sh)
against a real controller on tbroot (this namespace, 10.99.0.1), with a port dropped by a
firewall rule inside tbh1, wrong locations, wrong keys, a controller on loopback only and an
ssh tunnel; then submitted as a batch job to the real Slurm and Grid Engine and to the fake PBS.
The doctor runs as ``ip netns exec tbh1 python -m minipar.doctor``: it sees tbh1's network only.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from fakes.batch import fake_batch_env, stop_all_jobs
from fixtures.services import bring_up, require
from helpers import ROOT, Profile, pid_gone, wait_for
from minipar.doctor import report
from minipar.doctor.__main__ import main
from minipar.doctor.report import FAIL, OK, WARN, Finding

ROOT_IP = "10.99.0.1"
HOST = "tbh1"
TIMEOUT = "2"  # seconds per check: the blocked-port tests wait this long
NFT_TABLE = "minipar_doctor_test"
REAL_BATCH = {"slurm": ("slurm.sh", "single-node Slurm"), "sge": ("sge.sh", "Grid Engine")}


class Ran:
    """A doctor's run: exit code, output, and its lines by check name."""

    def __init__(self, proc):
        self.code, self.out, self.err = proc.returncode, proc.stdout, proc.stderr
        self.lines = self.out.splitlines()
        self.verdict = self.lines[-1] if self.lines else ""

    def line(self, check: str) -> str:
        found = [line for line in self.lines if line.split(" ", 1)[-1].startswith(check + ":")]
        assert len(found) == 1, "one %r line expected in:\n%s" % (check, self.out + self.err)
        return found[0]

    def status(self, check: str) -> str:
        return self.line(check).split(" ", 1)[0]

    def statuses(self) -> dict:
        return {line.split(" ", 1)[1].split(":", 1)[0]: line.split(" ", 1)[0] for line in self.lines
                if line.startswith((OK + " ", WARN + " ", FAIL + " "))}

    def __repr__(self) -> str:
        return "exit %s\n%s%s" % (self.code, self.out, self.err)


def doctor_env(extra=None) -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), **(extra or {}))


def doctor_on_host(*args) -> Ran:
    """The doctor on tbh1: its network is tbh1's; files are shared, as on a shared file system."""
    cmd = ["ip", "netns", "exec", HOST, sys.executable, "-m", "minipar.doctor", "--timeout", TIMEOUT, *args]
    return Ran(subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                              cwd=str(ROOT), env=doctor_env()))


def doctor_here(*args, env=None, timeout=120) -> Ran:
    cmd = [sys.executable, "-m", "minipar.doctor", "--timeout", TIMEOUT, *args]
    return Ran(subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                              cwd=str(ROOT), env=env or doctor_env()))


@pytest.fixture(scope="module")
def controller(netns_hosts, tmp_path_factory):
    """One controller on tbroot for the module, listening on every interface, location 10.99.0.1."""
    p = Profile(tmp_path_factory.mktemp("doctor"))
    p.controller("--ip=*", "--location=%s" % ROOT_IP)
    yield p
    p.stop_all()


def engine_file(controller: Profile, to, **changes):
    """The controller's engine file as a user would have copied it, with ``changes`` made."""
    info = json.loads(controller.engine_file().read_text())
    info.update(changes)
    path = to / "controller-engine.json"
    path.write_text(json.dumps(info))
    path.chmod(0o600)
    return path


@pytest.fixture
def drop_on_host(netns_hosts):
    """drop(port): a firewall rule inside tbh1 that drops what it sends to tbroot's port."""
    require("nft (nftables)", shutil.which("nft") is not None, "scripts/services/netns.sh (as root)")
    nft = ["ip", "netns", "exec", HOST, "nft"]

    def drop(port: int):
        subprocess.run(nft + ["add", "table", "inet", NFT_TABLE], check=True, timeout=30)
        subprocess.run(nft + ["add", "chain", "inet", NFT_TABLE, "out",
                              "{ type filter hook output priority 0; policy accept; }"], check=True, timeout=30)
        subprocess.run(nft + ["add", "rule", "inet", NFT_TABLE, "out", "ip", "daddr", ROOT_IP, "tcp", "dport",
                              str(port), "drop"], check=True, timeout=30)

    yield drop
    subprocess.run(nft + ["delete", "table", "inet", NFT_TABLE], capture_output=True, timeout=30)


# ------------------------------------------------------------ what it prints

def test_a_finding_is_one_line_with_the_fix_on_fail_and_warn_only():
    assert Finding(OK, "port engine", "tcp://h:1 answers", "never shown").line() == "OK port engine: tcp://h:1 answers"
    assert Finding(FAIL, "key", "no answer", "copy the file").line() == "FAIL key: no answer -- fix: copy the file"
    assert Finding(WARN, "permissions", "mode 0644", "chmod 600 f").line() == \
        "WARN permissions: mode 0644 -- fix: chmod 600 f"
    assert "\n" not in Finding(FAIL, "a", "b", "c").line()


def test_the_verdict_names_the_first_failure_and_sets_the_exit_code():
    findings = [Finding(OK, "file", "fine"), Finding(WARN, "permissions", "shared"),
                Finding(FAIL, "location", "'x' does not resolve"), Finding(FAIL, "key", "no answer")]
    line = report.verdict(findings)
    assert line == "engines cannot register: location: 'x' does not resolve"
    assert report.exit_code(line) == 1
    assert report.verdict(findings[:2]) == "engines can register"
    assert report.verdict(findings[:1], "through the ssh tunnel via h") == \
        "engines can register (through the ssh tunnel via h)"
    assert report.exit_code(report.verdict(findings[:2])) == 0
    assert report.exit_code("no verdict: the job did not start") == 1
    assert report.verdict_in("srun: noise\nOK file: f\nengines can register\nsrun: more\n") == "engines can register"
    assert report.verdict_in("OK file: f\n") == ""


def test_the_probe_is_in_the_protocol_table():
    from minipar import protocol
    table = [line.split()[:2] for line in protocol.__doc__.splitlines() if line.startswith("probe_")]
    assert table == [["probe_request", "D→H"], ["probe_reply", "H→D"]]


# ------------------------------------------------------------ bad input

def test_a_missing_file_is_a_failure_that_says_what_to_do(tmp_path, capsys):
    code = main(["--file", str(tmp_path / "nowhere.json")])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[1].startswith("FAIL file: connection file %s does not exist" % (tmp_path / "nowhere.json"))
    assert "-- fix: start the controller (it writes this file), or copy its" in out[1]
    assert out[-1].startswith("engines cannot register: file: connection file")
    assert len(out) == 3  # nothing else can be checked


@pytest.mark.parametrize("text, said", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "does not hold a JSON object"),
    ('{"location": "h", "ports": {}}', "lacks key"),
    ('{"location": "h", "key": 5, "ports": {}}', "key must be a string"),
    ('{"location": "h", "key": "k", "ports": {"engine": "x"}}', "'ports' must map client, engine"),
], ids=["garbage", "list", "no-key", "key-not-string", "ports-not-ints"])
def test_a_damaged_file_is_a_clear_failure_without_a_traceback(tmp_path, text, said):
    path = tmp_path / "controller-engine.json"
    path.write_text(text)
    ran = doctor_here("--file", str(path))
    assert ran.code == 1, ran
    assert ran.status("file") == FAIL and said in ran.line("file"), ran
    assert "copy the controller's current engine connection file here" in ran.line("file")
    assert ran.verdict.startswith("engines cannot register: file: ")
    assert "Traceback" not in ran.err, ran


def test_usage_errors_exit_2(tmp_path, capsys):
    for argv in (["--timeout", "0", "--file", "x"], ["--submit", "nosuch"], ["--no-such-flag"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
    ran = doctor_here("--profile-dir", str(tmp_path / "none"))
    assert ran.code == 2 and "error: profile dir %s does not exist" % (tmp_path / "none") in ran.err, ran
    assert "Traceback" not in ran.err


def test_a_file_others_can_read_is_a_warning(tmp_path, capsys):
    path = tmp_path / "controller-engine.json"
    path.write_text(json.dumps({"location": "127.0.0.1", "key": "k", "ports": dict.fromkeys(
        ("client", "engine", "notification", "hb_ping", "hb_pong"), 1)}))
    path.chmod(0o644)
    main(["--file", str(path), "--timeout", "1"])
    out = capsys.readouterr().out
    assert "WARN permissions: mode 0644: other users can read the key, and with it run code on your engines " \
           "-- fix: chmod 600 %s" % path in out


# ------------------------------------------------------------ from another host

def test_all_ok_from_another_host_and_no_engine_registers(controller, tmp_path):
    ran = doctor_on_host("--file", str(engine_file(controller, tmp_path)))
    assert ran.code == 0, ran
    assert ran.verdict == "engines can register"
    assert ran.lines[0].startswith("minipar doctor on ")
    assert ran.statuses() == dict.fromkeys(["file", "permissions", "location", "interfaces", "port client",
                                            "port engine", "port notification", "port hb_ping", "port hb_pong",
                                            "ssh", "key", "protocol"], OK), ran
    assert "eth0 10.99.0.11" in ran.line("interfaces") and "answers through eth0" in ran.line("interfaces")
    assert "a ZeroMQ socket answers" in ran.line("port engine")
    assert "the key and the curve server key are right" in ran.line("key")  # --ip=* turns curve on
    rc = controller.client()
    assert rc.ids == []  # the probe registered nothing
    rc.close()


def test_a_port_a_firewall_drops_fails_as_timed_out(controller, tmp_path, drop_on_host):
    path = engine_file(controller, tmp_path)
    port = json.loads(path.read_text())["ports"]["hb_pong"]
    drop_on_host(port)
    ran = doctor_on_host("--file", str(path))
    assert ran.code == 1, ran
    line = ran.line("port hb_pong")
    assert line.startswith("FAIL port hb_pong: tcp://%s:%d timed out: no answer within 2s" % (ROOT_IP, port)), ran
    assert "a firewall" in line and "--enginessh" in line and "controller.ports" in line
    assert [c for c, s in ran.statuses().items() if s != OK] == ["port hb_pong"], ran
    assert ran.verdict.startswith("engines cannot register: port hb_pong: tcp://%s:%d timed out" % (ROOT_IP, port))


@pytest.mark.parametrize("location, said", [
    ("nosuch.invalid", "'nosuch.invalid' does not resolve here"),
    ("localhost", "localhost resolves to 127.0.0.1: a loopback address, which names this very host, and no "
                  "controller listens here"),
    ("127.0.0.1", "127.0.0.1: a loopback address"),
], ids=["unresolvable", "loopback-name", "loopback-address"])
def test_a_wrong_location_fails_naming_location(controller, tmp_path, location, said):
    ran = doctor_on_host("--file", str(engine_file(controller, tmp_path, location=location)))
    assert ran.code == 1, ran
    line = ran.line("location")
    assert line.startswith("FAIL location: " + said), ran
    assert "-- fix: start the controller with" in line and "--location=" in line
    assert ran.status("ports") == WARN and ran.status("key") == WARN  # not tried, not failed again
    assert ran.verdict.startswith("engines cannot register: location: ")


def test_a_wrong_key_fails_the_key_check(controller, tmp_path):
    ran = doctor_on_host("--file", str(engine_file(controller, tmp_path, key="not-the-controllers-key")))
    assert ran.code == 1, ran
    assert ran.status("port engine") == OK
    assert ran.line("key").startswith("FAIL key: no answer within 2s to a signed probe at tcp://%s:" % ROOT_IP), ran
    assert "the key differs from the controller's" in ran.line("key")
    assert ran.line("protocol") == "WARN protocol: not known: the controller did not answer the probe"
    assert ran.verdict.startswith("engines cannot register: key: no answer within 2s")


def test_a_wrong_curve_server_key_fails_the_handshake(controller, tmp_path):
    import zmq
    other, _ = zmq.curve_keypair()
    ran = doctor_on_host("--file", str(engine_file(controller, tmp_path, curve_serverkey=other.decode())))
    assert ran.code == 1, ran
    assert "the encrypted handshake with tcp://%s:" % ROOT_IP in ran.line("key"), ran
    assert "the curve server key in the file is not the controller's" in ran.line("key")


def test_another_protocol_version_is_named_with_both(controller, monkeypatch, capsys):
    from minipar.doctor import checks
    monkeypatch.setattr(checks, "PROTOCOL_VERSION", "0")
    doctor = checks.Doctor(controller.engine_file(), 2.0)
    assert report.exit_code(doctor.run()) == 1
    out = capsys.readouterr().out
    assert "FAIL protocol: the controller speaks minipar protocol 2 (Python %d.%d." % sys.version_info[:2] in out
    assert "this minipar speaks protocol 0 (Python %d.%d." % sys.version_info[:2] in out and "run the same minipar version on both sides" in out


def test_a_controller_on_loopback_only_refuses_and_the_fix_names_ip(netns_hosts, profile, tmp_path):
    profile.controller("--location=%s" % ROOT_IP)  # listens on 127.0.0.1 only
    ran = doctor_on_host("--file", str(engine_file(profile, tmp_path)))
    assert ran.code == 1, ran
    line = ran.line("port engine")
    assert line.startswith("FAIL port engine: tcp://%s:" % ROOT_IP) and "refused the connection" in line, ran
    assert "the file says the controller listens on 127.0.0.1 only (its --ip)" in line
    assert "-- fix: " in line and "--ip='*'" in line and "controller.ports" in line
    assert ran.verdict.startswith("engines cannot register: port client: tcp://%s:" % ROOT_IP)


def test_through_ssh_the_tunnel_works_when_the_direct_port_is_blocked(controller, tmp_path, drop_on_host):
    path = engine_file(controller, tmp_path)
    drop_on_host(json.loads(path.read_text())["ports"]["engine"])
    ran = doctor_on_host("--file", str(path), "--ssh", "tbroot")
    assert ran.code == 0, ran
    assert ran.line("port engine").startswith("WARN port engine: tcp://%s:" % ROOT_IP) and "timed out" in ran.line(
        "port engine") and "engines tunnel through tbroot instead" in ran.line("port engine")
    assert ran.line("ssh").startswith("OK ssh: `ssh -o BatchMode=yes -o ConnectTimeout=2 tbroot true` logs in"), ran
    assert ran.line("tunnel").startswith("OK tunnel: through tbroot (ssh pid ")
    assert "every port answers at %s as tbroot sees it" % ROOT_IP in ran.line("tunnel")
    assert ran.line("key").startswith("OK key: the controller at tcp://127.0.0.1:")
    assert ran.verdict == "engines can register (through the ssh tunnel via tbroot)"
    tunnel = int(ran.line("tunnel").split("ssh pid ")[1].split(")")[0])
    wait_for(lambda: pid_gone(tunnel), 10, "the doctor's ssh tunnel (pid %d) to end" % tunnel)


def test_an_ssh_server_that_cannot_be_reached_fails_the_ssh_check(controller, tmp_path):
    ran = doctor_on_host("--file", str(engine_file(controller, tmp_path, ssh="tbroot:2")))
    assert ran.code == 1, ran
    assert ran.line("ssh").startswith("FAIL ssh: `ssh -o BatchMode=yes -o ConnectTimeout=2 -p 2 tbroot true` failed"), ran
    assert "--enginessh" in ran.line("ssh")
    assert ran.line("tunnel") == "WARN tunnel: not tried: the ssh login failed"
    assert ran.status("port engine") == OK  # the direct path works, but engines would tunnel
    assert ran.verdict.startswith("engines cannot register: ssh: ")


# ------------------------------------------------------------ as a batch job

@pytest.fixture(params=["slurm", "sge", "pbs"])
def batch_system(request, tmp_path):
    """The doctor's environment for a real Slurm or Grid Engine (brought up once), or the fake PBS."""
    name = request.param
    if name in REAL_BATCH:
        require("root, to bring up %s" % name, os.geteuid() == 0, "running the tests as root")
        bring_up(*REAL_BATCH[name])
        return name, doctor_env()
    env = fake_batch_env(tmp_path, kill_delay=0.5, base=doctor_env())
    request.addfinalizer(lambda: stop_all_jobs(env))
    return name, env


def test_submitted_as_a_job_the_verdict_comes_back(controller, batch_system):
    system, env = batch_system
    ran = doctor_here("--profile-dir", str(controller.dir), "--submit", system, env=env)
    assert ran.code == 0, ran
    assert "submitted the doctor as %s job " % system in ran.err
    assert ran.verdict == "engines can register", ran
    assert ran.status("file") == OK and ran.status("key") == OK and ran.status("port engine") == OK
    assert list((controller.dir / "batch").glob("doctor-%s-*" % system))
    assert not list((controller.dir / "batch").glob("%s-engines-*" % system))  # no engine script overwritten


def test_a_job_that_does_not_start_in_time_is_cancelled(controller, tmp_path):
    env = fake_batch_env(tmp_path, start_delay=60, base=doctor_env())
    try:
        ran = doctor_here("--profile-dir", str(controller.dir), "--submit", "pbs", "--submit-timeout", "1", env=env)
        assert ran.code == 1, ran
        assert ran.verdict.startswith("no verdict: the pbs job 1[].fakeserver did not start within 1s "
                                      "(--submit-timeout): cancelled it"), ran
        listed = subprocess.run(["qstat", "1[].fakeserver"], capture_output=True, text=True, env=env, timeout=30)
        assert "Unknown Job Id" in listed.stderr, listed.stdout + listed.stderr
    finally:
        stop_all_jobs(env)
