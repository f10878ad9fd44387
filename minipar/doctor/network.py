"""This node's side of the path to a controller, with the standard library only: its IPv4
interfaces, name lookups with a time limit, and TCP connections that tell a firewall (no
answer) from a closed port (refused) and a ZeroMQ socket from anything else listening."""
from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import threading

SIOCGIFADDR = 0x8915
"""Linux's ioctl for an interface's (first) IPv4 address."""

GREETING_BYTE = 0xFF
"""A ZeroMQ socket (ZMTP 2 and 3) opens every connection with this byte, unasked."""

ZMQ, OTHER, SILENT, CLOSED, REFUSED, TIMEOUT, UNREACHABLE, ERROR = (
    "zmq", "other", "silent", "closed", "refused", "timeout", "unreachable", "error")
"""What a TCP probe met: a ZeroMQ greeting; another service's bytes; a connection nobody spoke
on; one closed at once (through ssh: its server could not connect on); a refusal (nothing
listens); no answer at all (packets dropped); no route; anything else."""

ANSWERED = (ZMQ, OTHER, SILENT, CLOSED, REFUSED)
"""Outcomes that prove the host itself is reachable, whatever listens on the port."""

_UNREACHABLE_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EINVAL}


class Probe:
    """The outcome of one TCP connection attempt (see the module constants)."""

    __slots__ = ("kind", "detail")

    def __init__(self, kind: str, detail: str = ""):
        self.kind = kind
        self.detail = detail

    def __repr__(self) -> str:
        return "Probe(%r, %r)" % (self.kind, self.detail)


def tcp_probe(host: str, port: int, timeout: float, source: str = "") -> Probe:
    """Connect to host:port (from the address ``source``, if given) and read what is said first."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            if source:
                s.bind((source, 0))
            s.connect((host, port))
            return _first_words(s)
    except socket.timeout:
        return Probe(TIMEOUT, "no answer within %gs" % timeout)
    except ConnectionRefusedError:
        return Probe(REFUSED, "connection refused")
    except OSError as e:
        kind = UNREACHABLE if e.errno in _UNREACHABLE_ERRNOS else ERROR
        return Probe(kind, e.strerror or str(e))


def _first_words(s) -> Probe:
    try:
        data = s.recv(16)
    except socket.timeout:
        return Probe(SILENT, "connected, but nothing was said")
    except ConnectionResetError:
        return Probe(CLOSED, "connected, then reset at once")
    if not data:
        return Probe(CLOSED, "connected, then closed at once")
    if data[0] == GREETING_BYTE:
        return Probe(ZMQ, "a ZeroMQ socket answers")
    return Probe(OTHER, "something that is not ZeroMQ answers (it said %r)" % data)


def ipv4_interfaces() -> list:
    """[(name, address)] of the interfaces that have an IPv4 address (Linux; [] elsewhere)."""
    try:
        import fcntl
        names = socket.if_nameindex()
    except (ImportError, AttributeError, OSError):
        return []
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in names:
            try:
                packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:  # no IPv4 address on it
                continue
            found.append((name, socket.inet_ntoa(packed[20:24])))
    return found


def route_source(address: str) -> str:
    """The local address the kernel picks to reach ``address`` (no packet is sent), or ""."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((address, 9))
            return s.getsockname()[0]
    except OSError:
        return ""


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def resolve(name: str, timeout: float):
    """``(addresses, problem)``: the IPv4 addresses ``name`` has here, as ZeroMQ (IPv4 unless
    told otherwise) would look them up, or [] and why not. The lookup runs in a thread so a
    resolver that never answers costs ``timeout`` seconds, not minutes."""
    if is_ip(name):
        return [name], ""
    answer: dict = {}

    def look_up():
        try:
            infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
            answer["addresses"] = list(dict.fromkeys(info[4][0] for info in infos))
        except (OSError, UnicodeError) as e:
            answer["problem"] = getattr(e, "strerror", None) or str(e)

    thread = threading.Thread(target=look_up, name="doctor-dns", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return [], "the lookup did not finish within %gs" % timeout
    return answer.get("addresses", []), answer.get("problem", "")


def in_parallel(calls: dict) -> dict:
    """{key: result} of each zero-argument call, run at once in threads: probes that may each
    wait the whole timeout (a firewall) then cost one timeout, not one per port."""
    results: dict = {}

    def run(key, call):
        results[key] = call()

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in calls.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
