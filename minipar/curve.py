"""CurveZMQ: encryption of every connection to the controller, on by default off loopback.

The HMAC key signs messages but hides nothing: on a shared login or compute node anyone who
can capture the traffic reads every pickle, and with it any secret a task carries. With curve,
the controller's sockets are CURVE servers; its public key travels in both connection files as
``curve_serverkey`` (Z85) beside the HMAC key, so users do nothing extra, and every client and
engine makes a keypair of its own for the process. A peer that does not know the server key
cannot even complete the handshake: it is given nothing, and the controller keeps serving.

``[controller] curve``: ``"auto"`` (the default) turns it on when the controller listens beyond
loopback and libzmq has curve (pyzmq's wheels do); ``"true"`` forces it, also on loopback;
``"false"`` turns it off, with a warning when listening beyond loopback. The server's secret
key is kept in ``security/controller[-ID]-curve.key`` (0600) so a ``--reuse`` restart keeps the
public key the engines and clients already hold.
"""
from __future__ import annotations

import ipaddress
import json
import logging
from pathlib import Path

import zmq

from .connection import write_connection_file
from .error import CurveError

log = logging.getLogger("minipar.curve")

SERVER_KEY_FIELD = "curve_serverkey"


def available() -> bool:
    return bool(zmq.has("curve"))


def listens_beyond_loopback(ip: str) -> bool:
    if ip in ("*", "0.0.0.0", "", "::"):
        return True
    try:
        return not ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return ip != "localhost"


def wanted(setting: str, ip: str) -> bool:
    """Whether the controller encrypts, from ``[controller] curve`` and where it listens."""
    beyond = listens_beyond_loopback(ip)
    if setting == "true":
        if not available():
            raise CurveError("controller.curve = \"true\", but this libzmq (%s) was built without curve; "
                             "install pyzmq's wheels (they bundle a libzmq with curve) or set curve = \"false\""
                             % zmq.zmq_version())
        return True
    if setting == "false":
        if beyond:
            log.warning("controller.curve = \"false\" while listening on %s: everything sent to and from "
                        "this controller crosses the network unencrypted (the key only signs it)", ip)
        return False
    if beyond and not available():
        log.warning("libzmq %s has no curve: traffic to this controller on %s is not encrypted",
                    zmq.zmq_version(), ip)
        return False
    return beyond


def key_file(profile_dir, cluster_id: str) -> Path:
    return Path(profile_dir) / "security" / ("controller%s-curve.key" % ("-" + cluster_id if cluster_id else ""))


def server_keys(profile_dir, cluster_id: str, reuse: bool):
    """(public, secret) Z85 bytes: the stored pair with --reuse, else a new one, stored."""
    path = key_file(profile_dir, cluster_id)
    if reuse and path.exists():
        try:
            stored = json.loads(path.read_text())
            return stored["public"].encode(), stored["secret"].encode()
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise CurveError("--reuse: cannot read the controller's curve key %s: %s; remove it to make a "
                             "new one (engines and clients then need the new connection files)" % (path, e)) from None
    public, secret = zmq.curve_keypair()
    write_connection_file(path, {"public": public.decode(), "secret": secret.decode()})  # atomic, 0600
    return public, secret


def make_server(sock, secret: bytes) -> None:
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret)


class ClientKeys:
    """One keypair per process, for every socket it connects to a curve controller; or nothing,
    for a controller whose connection info has no server key."""

    def __init__(self, info: dict):
        server = info.get(SERVER_KEY_FIELD)
        self.server = server.encode() if isinstance(server, str) and server else None
        if self.server is not None:
            if not available():
                raise CurveError("the controller encrypts its connections (curve_serverkey in its connection "
                                 "file), but this libzmq (%s) was built without curve; install pyzmq's wheels"
                                 % zmq.zmq_version())
            self.public, self.secret = zmq.curve_keypair()

    def apply(self, setsockopt) -> None:
        """Before connect: ``setsockopt`` is a socket's, or a device's setsockopt_in/_out."""
        if self.server is not None:
            setsockopt(zmq.CURVE_SERVERKEY, self.server)
            setsockopt(zmq.CURVE_PUBLICKEY, self.public)
            setsockopt(zmq.CURVE_SECRETKEY, self.secret)
