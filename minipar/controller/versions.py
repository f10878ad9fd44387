"""Which engines and clients a controller admits: one protocol, and one Python minor version.

The protocol version (:data:`~..protocol.PROTOCOL_VERSION`) must match the controller's:
another one may frame or fill messages differently. The minipar version may differ while
the protocol is the same (both are named in logs and refusals, to help when it matters).

The Python version is the payload's business, not the controller's (it never unpickles),
but a function that cannot be pickled by name (a lambda, a closure, one defined in
``__main__``) travels as bytecode, which only the Python minor version that made it can
load. So every engine and client of one controller runs the same minor version, and the
controller keeps it that way: the first engine to register or client to connect sets the
cluster's Python minor version (``3.11``) for the controller's lifetime, and any later peer
of another minor version is refused at its registration or connect, with a message naming
both versions and who set the cluster's. A client is never left to meet engines of another
Python mid-task, whatever the order they arrive in; a different patch release (3.11.4 and
3.11.7) is the same minor version. The connection doctor is told the cluster's version, so
it can warn before an engine is started.
"""
from __future__ import annotations

import logging

from ..protocol import MINIPAR_VERSION, PROTOCOL_VERSION, python_minor, python_version

log = logging.getLogger("minipar.controller")

BYTECODE_REASON = ("Functions that cannot be pickled by name (lambdas, closures, functions defined in __main__) "
                   "travel as bytecode, which loads only on the Python minor version that made it, so every "
                   "engine and client of one controller runs the same one")

HOW_TO_FIX = {
    "engine": "start this engine with Python %(cluster)s (the interpreter that runs `-m minipar.engine`: the "
              "Python that runs the Cluster, launcher.ssh.remote_python, or a batch template's python), or give "
              "Python %(peer)s engines a controller of their own",
    "client": "run this client with Python %(cluster)s, or start a controller of its own for Python %(peer)s "
              "(with engines on Python %(peer)s)",
}


def protocol_mismatch(role: str, content: dict):
    """Why a peer of another protocol version is refused, or None when it speaks this one."""
    if content.get("protocol") == PROTOCOL_VERSION:
        return None
    return ("protocol mismatch: the %s speaks minipar protocol %s (minipar %s, Python %s), this controller speaks "
            "protocol %s (minipar %s, Python %s); install the same minipar version on both sides"
            % (role, content.get("protocol"), content.get("minipar", "?"), content.get("python", "?"),
               PROTOCOL_VERSION, MINIPAR_VERSION, python_version()))


def note_other_minipar(who: str, content: dict) -> None:
    """Log a peer admitted with another minipar version: the same protocol, so it works, but
    it is the first thing to look at when something behaves differently on one side."""
    if content.get("minipar") != MINIPAR_VERSION:
        log.info("%s runs minipar %s, this controller minipar %s: both speak protocol %s, so they work together",
                 who, content.get("minipar", "?"), MINIPAR_VERSION, PROTOCOL_VERSION)


class ClusterPython:
    """The Python minor version of a controller's engines and clients: set by the first one
    admitted, then required of every other (see the module's docstring)."""

    def __init__(self):
        self.minor = None
        self.set_by = None

    def refusal(self, role: str, content: dict):
        """Why this engine or client (its registration or connect content) is refused, or None."""
        refused = protocol_mismatch(role, content)
        if refused is not None:
            return refused
        python = content.get("python")
        if not isinstance(python, str):
            return "this %s did not say which Python it runs (python: %.40r)" % (role, python)
        if self.minor is None or python_minor(python) == self.minor:
            return None
        return ("Python mismatch: this %s runs Python %s (minipar %s), but this controller's engines and clients "
                "run Python %s, as the first of them to join did (%s). %s. Fix: %s."
                % (role, python, content.get("minipar", "?"), self.minor, self.set_by, BYTECODE_REASON,
                   HOW_TO_FIX[role] % {"cluster": self.minor, "peer": python_minor(python)}))

    def admitted(self, content: dict, who: str) -> None:
        """A peer passed :meth:`refusal` and was let in: the first one sets the version."""
        if self.minor is None:
            self.minor = python_minor(content["python"])
            self.set_by = "%s, Python %s" % (who, content["python"])

    def as_content(self) -> dict:
        """What replies to connects and probes say of it: None until a peer sets it."""
        return {"cluster_python": self.minor}
