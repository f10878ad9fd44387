"""The checks, in the order an engine meets what they look at (see the package docstring).

Each check prints its line as soon as it is known, so a slow one (a firewall that drops
packets, an ssh login) shows what has been found so far. A check whose subject could not be
reached because an earlier one failed says it was not tried (WARN) rather than failing again:
the verdict names the first failure, which is the one to fix first.
"""
from __future__ import annotations

import math
import socket
import subprocess
from functools import partial
from pathlib import Path

from ..connection import PORT_NAMES, read_connection_file, shared_mode, url
from ..curve import SERVER_KEY_FIELD
from ..error import ConnectionFileError
from ..protocol import PROTOCOL_VERSION, python_version
from ..error import TunnelError
from ..tunnel import open_tunnel, split_server
from .network import (ANSWERED, CLOSED, OTHER, REFUSED, SILENT, TIMEOUT, UNREACHABLE, ZMQ, in_parallel,
                      ipv4_interfaces, is_loopback, resolve, route_source, tcp_probe)
from .probe import ANSWERED as KEY_ANSWERED
from .probe import CANNOT_TRY, REFUSED_HANDSHAKE, UNANSWERED, probe_key
from .report import FAIL, OK, WARN, Finding, verdict

SSH_GRACE = 5.0
"""Seconds an ssh login may take beyond its ConnectTimeout (key exchange, the remote shell)
before the doctor calls it hung; also added to the time a tunnel gets to open."""

TUNNEL_STOP_TIMEOUT = 5.0
"""Seconds the doctor's ssh tunnel gets to exit on SIGTERM before it is killed."""

TUNNEL_FIX = "controller --enginessh=USER@HOST (or engine --ssh=USER@HOST) tunnels every port through one ssh login"
NEW_FILE_FIX = ("copy the controller's current engine connection file here (a controller restarted without --reuse "
                "has a new key and new ports)")


class Doctor:
    """Runs every check against one engine connection file and prints a line for each."""

    def __init__(self, path, timeout: float, ssh: str = "", say=print):
        self.path = Path(path)
        self.timeout = timeout
        self.ssh_override = ssh
        self.say = say
        self.findings: list = []
        self.info: dict = {}
        self.ssh = ""
        self.address = ""  # the location's address here, where direct connections go
        self.tunnel = None  # the ssh process carrying the tunnel, while it is open

    def note(self, status: str, check: str, seen: str, fix: str = "") -> None:
        finding = Finding(status, check, seen, fix)
        self.findings.append(finding)
        self.say(finding.line())

    def run(self) -> str:
        """Every check, then the verdict line (printed and returned)."""
        self.say("minipar doctor on %s (Python %s, minipar protocol %s), %gs per check"
                 % (socket.gethostname(), python_version(), PROTOCOL_VERSION, self.timeout))
        route = ""
        try:
            if self.check_file():
                self.check_permissions()
                self.ssh = self.ssh_override or self.info.get("ssh") or ""
                self.check_location()
                self.check_interfaces()
                engine_url = self.check_ports()
                if self.ssh:
                    engine_url = self.check_tunnel() if self.check_ssh() else self.tunnel_not_tried()
                    route = "through the ssh tunnel via %s" % self.ssh
                else:
                    self.note(OK, "ssh", "none named: engines connect directly")
                reply = self.check_key(engine_url)
                self.check_protocol(reply)
        finally:
            self.close_tunnel()
        line = verdict(self.findings, route)
        self.say(line)
        return line

    # -- the file ----------------------------------------------------------------------

    def check_file(self) -> bool:
        exists = self.path.exists()
        try:
            self.info = read_connection_file(self.path, hint="", warn_if_shared=False)
        except ConnectionFileError as e:
            fix = (NEW_FILE_FIX if exists else "start the controller (it writes this file), or copy its "
                   "controller[-ID]-engine.json here and pass --file")
            self.note(FAIL, "file", str(e), fix)
            return False
        info = self.info
        self.note(OK, "file", "%s: location %s, ports %s, a key%s" % (
            self.path, info["location"], " ".join(str(info["ports"][p]) for p in PORT_NAMES),
            ", a curve server key (encrypted)" if info.get(SERVER_KEY_FIELD) else ", no curve server key (not encrypted)"))
        return True

    def check_permissions(self) -> None:
        mode = shared_mode(self.path)
        if mode is None:
            self.note(OK, "permissions", "only its owner can read the key")
            return
        self.note(WARN, "permissions", "mode %04o: other users can read the key, and with it run code on your engines"
                  % mode, "chmod 600 %s" % self.path)

    # -- where the controller is -------------------------------------------------------

    def check_location(self) -> None:
        location = self.info["location"]
        addresses, problem = resolve(location, self.timeout)
        if self.ssh:
            self.address = addresses[0] if addresses and not is_loopback(addresses[0]) else ""
            self.note(OK, "location", "%s, looked up by the ssh server %s, which engines tunnel through"
                      % (location, self.ssh))
            return
        if not addresses:
            self.note(FAIL, "location", "%r does not resolve here: %s" % (location, problem),
                      "start the controller with --location=<an address or name of its host that this node "
                      "resolves> (controller.location)")
            return
        seen = location if location == addresses[0] else "%s resolves to %s" % (location, ", ".join(addresses))
        if is_loopback(addresses[0]):
            self.check_loopback_location(seen, addresses[0])
            return
        self.address = addresses[0]
        self.note(OK, "location", seen)

    def check_loopback_location(self, seen: str, address: str) -> None:
        """A loopback location is right only on the controller's own host: is a controller here?"""
        port = self.info["ports"]["engine"]
        fix = ("start the controller with --ip='*' (or an interface engines reach) and --location=<its address "
               "as engines see it>, or tunnel: %s" % TUNNEL_FIX)
        if tcp_probe(address, port, self.timeout).kind == ZMQ:
            self.address = address
            self.note(WARN, "location", "%s: loopback, so this file serves engines on the controller's own host "
                      "(this one) only" % seen, "for engines elsewhere, " + fix)
            return
        self.note(FAIL, "location", "%s: a loopback address, which names this very host, and no controller "
                  "listens here on its engine port %d: the controller is on another host" % (seen, port), fix)

    def check_interfaces(self) -> None:
        interfaces = ipv4_interfaces()
        listed = ", ".join("%s %s" % pair for pair in interfaces) or "none found"
        if not self.address:
            why = "engines tunnel" if self.ssh else "the location has no usable address here"
            self.note(OK, "interfaces", "%s (not probed: %s)" % (listed, why))
            return
        target, port = self.address, self.info["ports"]["engine"]
        tried = [(name, a) for name, a in interfaces if is_loopback(a) == is_loopback(target)]
        probes = in_parallel({pair: partial(tcp_probe, target, port, self.timeout, pair[1]) for pair in tried})
        routed = route_source(target)
        reached = ["%s%s" % (name, " (the kernel's route)" if a == routed else "")
                   for (name, a), p in probes.items() if p.kind in ANSWERED]
        missed = ["%s (%s)" % (name, p.detail) for (name, a), p in probes.items() if p.kind not in ANSWERED]
        if reached:
            seen = "%s; %s answers through %s" % (listed, target, ", ".join(reached))
            self.note(OK, "interfaces", seen + ("; not through %s" % ", ".join(missed) if missed else ""))
            return
        self.note(WARN, "interfaces", "%s; %s answers through none of them: %s" % (listed, target, ", ".join(missed)),
                  "see the port checks; the controller may need a --location on a network this node is on")

    # -- the ports, directly -----------------------------------------------------------

    def check_ports(self) -> str:
        """One line per port; the engine port's URL when a ZeroMQ socket answers there, else ""."""
        if not self.address:
            status = OK if self.ssh else WARN
            why = "engines tunnel through %s (see the tunnel check)" % self.ssh if self.ssh else \
                "the location has no usable address here (see the location check)"
            self.note(status, "ports", "not tried directly: %s" % why)
            return ""
        ports = self.info["ports"]
        probes = in_parallel({name: partial(tcp_probe, self.address, ports[name], self.timeout)
                              for name in PORT_NAMES})
        for name in PORT_NAMES:
            status, seen, fix = self.judge_port(ports[name], probes[name])
            if self.ssh and status == FAIL:
                status, fix = WARN, "engines tunnel through %s instead (see the tunnel check)" % self.ssh
            self.note(status, "port %s" % name, "tcp://%s:%d %s" % (self.address, ports[name], seen), fix)
        if probes["engine"].kind != ZMQ:
            return ""
        return url(self.info, "engine", host=self.address)

    def judge_port(self, port: int, probe) -> tuple:
        """(status, what was seen, fix) for a direct connection to one of the controller's ports."""
        kind, address = probe.kind, self.address
        if kind == ZMQ:
            return OK, "accepts connections: a ZeroMQ socket answers", ""
        if kind == REFUSED:
            bound = self.info.get("ip", "")
            why = "; the file says the controller listens on %s only (its --ip)" % bound if is_loopback(bound) else ""
            return FAIL, "refused the connection: nothing listens there" + why, (
                "the controller listens on another interface, or has stopped or moved: start it with --ip='*' "
                "(or --ip=%s, the address in location); if it was restarted on other ports, copy the new file, "
                "or keep its ports with controller.ports (or --reuse)" % address)
        if kind == TIMEOUT:
            return FAIL, "timed out: %s; something drops the packets, usually a firewall" % probe.detail, (
                "ask the admins to let this node reach %s port %d (controller.ports or controller.port_range "
                "pin the controller's ports), or tunnel: %s" % (address, port, TUNNEL_FIX))
        if kind == UNREACHABLE:
            return FAIL, "unreachable: %s; this node has no route to %s" % (probe.detail, address), (
                "start the controller with --location=<its address on a network this node is on> (and --ip "
                "to listen there), or tunnel: %s" % TUNNEL_FIX)
        if kind == OTHER:
            return FAIL, probe.detail, "these are not the controller's ports: " + NEW_FILE_FIX
        if kind == SILENT:
            return WARN, "%s within %gs: not a ZeroMQ socket?" % (probe.detail, self.timeout), NEW_FILE_FIX
        if kind == CLOSED:
            return FAIL, probe.detail, "something between this node and %s ends connections; tunnel: %s" % (
                address, TUNNEL_FIX)
        return FAIL, probe.detail, ""

    # -- through ssh -------------------------------------------------------------------

    def check_ssh(self) -> bool:
        host, port = split_server(self.ssh)
        cmd = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=%d" % max(1, math.ceil(self.timeout))]
        cmd += ["-p", str(port)] if port else []
        shown = " ".join(cmd + [host, "true"])
        fix = ("make `ssh %s` work from this node without a password or a prompt (a key in ~/.ssh/authorized_keys "
               "there, its host key in ~/.ssh/known_hosts here), or name another server: controller "
               "--enginessh=USER@HOST (or here --ssh)" % host)
        try:
            done = subprocess.run(cmd + [host, "true"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=self.timeout + SSH_GRACE)
        except FileNotFoundError:
            self.note(FAIL, "ssh", "no ssh command on this node", "install an OpenSSH client, or connect directly "
                      "(a controller without --enginessh)")
            return False
        except subprocess.TimeoutExpired:
            self.note(FAIL, "ssh", "`%s` did not finish within %gs" % (shown, self.timeout + SSH_GRACE), fix)
            return False
        if done.returncode != 0:
            said = (done.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
            self.note(FAIL, "ssh", "`%s` failed (exit %d): %s" % (shown, done.returncode, said), fix)
            return False
        self.note(OK, "ssh", "`%s` logs in without a prompt" % shown)
        return True

    def check_tunnel(self) -> str:
        """Open the tunnel an engine would, and look at each port through it; the engine port's
        local URL when all answer, else ""."""
        location, ports = self.info["location"], self.info["ports"]
        try:
            self.tunnel, local = open_tunnel(self.ssh, location, dict(ports), timeout=self.timeout + SSH_GRACE)
        except TunnelError as e:
            self.note(FAIL, "tunnel", str(e), "ssh -L must be allowed on %s (AllowTcpForwarding)" % self.ssh)
            return ""
        probes = in_parallel({name: partial(tcp_probe, "127.0.0.1", local[name], self.timeout)
                              for name in PORT_NAMES})
        bad = ["%s %d (%s)" % (name, ports[name], probes[name].detail) for name in PORT_NAMES
               if probes[name].kind != ZMQ]
        if bad:
            self.note(FAIL, "tunnel", "through %s, not every port answers at %s as %s sees it: %s"
                      % (self.ssh, location, self.ssh, "; ".join(bad)),
                      "location must name the controller's host as the ssh server sees it (--location; 127.0.0.1 "
                      "when the server is that host) and the controller must listen there (--ip)")
            return ""
        self.note(OK, "tunnel", "through %s (ssh pid %d), every port answers at %s as %s sees it"
                  % (self.ssh, self.tunnel.pid, location, self.ssh))
        return "tcp://127.0.0.1:%d" % local["engine"]

    def tunnel_not_tried(self) -> str:
        self.note(WARN, "tunnel", "not tried: the ssh login failed")
        return ""

    def close_tunnel(self) -> None:
        if self.tunnel is None:
            return
        self.tunnel.terminate()
        try:
            self.tunnel.wait(TUNNEL_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.tunnel.kill()
            self.tunnel.wait(TUNNEL_STOP_TIMEOUT)
        self.tunnel = None

    # -- the key and the protocol ------------------------------------------------------

    def check_key(self, engine_url: str) -> dict:
        """The controller's probe_reply content, or {} when it did not answer."""
        if not engine_url:
            self.note(WARN, "key", "not tried: the controller's engine port was not reached")
            return {}
        encrypted = bool(self.info.get(SERVER_KEY_FIELD))
        probe = probe_key(engine_url, self.info, self.timeout)
        if probe.outcome == KEY_ANSWERED:
            self.note(OK, "key", "the controller at %s answered a signed probe: %s"
                      % (engine_url, "the key and the curve server key are right" if encrypted else "the key is right"))
            return probe.reply
        if probe.outcome == CANNOT_TRY:
            self.note(FAIL, "key", probe.note)
        elif probe.outcome == REFUSED_HANDSHAKE:
            seen = ("the curve server key in the file is not the controller's" if encrypted else
                    "the controller encrypts (controller.curve) but the file has no curve server key")
            self.note(FAIL, "key", "the encrypted handshake with %s did not complete within %gs: %s"
                      % (engine_url, self.timeout, seen), NEW_FILE_FIX)
        elif probe.outcome == UNANSWERED:
            self.note(FAIL, "key", "no answer within %gs to a signed probe at %s: the key differs from the "
                      "controller's (or it is not a minipar controller, or an older one)%s"
                      % (self.timeout, engine_url, "; " + probe.note if probe.note else ""), NEW_FILE_FIX)
        else:
            self.note(FAIL, "key", "no answer within %gs at %s: the key differs from the controller's (or the "
                      "controller is not minipar / not running)" % (self.timeout, engine_url), NEW_FILE_FIX)
        return {}

    def check_protocol(self, reply: dict) -> None:
        if not reply:
            self.note(WARN, "protocol", "not known: the controller did not answer the probe")
            return
        theirs = "minipar protocol %s (Python %s)" % (reply.get("protocol"), reply.get("python", "?"))
        if reply.get("protocol") == PROTOCOL_VERSION:
            self.note(OK, "protocol", "the controller speaks %s, as this minipar does (Python %s)"
                      % (theirs, python_version()))
            return
        self.note(FAIL, "protocol", "the controller speaks %s, this minipar speaks protocol %s (Python %s)"
                  % (theirs, PROTOCOL_VERSION, python_version()),
                  "run the same minipar version on both sides: the controller refuses engines of another protocol")
