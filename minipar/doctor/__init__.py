"""The connection doctor: why engines on this node can or cannot register with a controller.

``python -m minipar.doctor [--profile P] [--file controller-engine.json]`` runs where engines
would run (a compute node, or a tiny batch job with ``--submit slurm``) and tries what an engine
needs, in the order an engine needs it::

    file         the engine connection file: there, valid, with key, location and ports
    permissions  nobody but its owner can read the key
    location     the name in it resolves here, and not to this host's loopback
    interfaces   this node's IPv4 addresses, and which of them reach the controller
    port NAME    each of the five ports accepts a TCP connection and a ZeroMQ socket greets
    ssh          the ssh server named (--enginessh, or --ssh here) lets us log in without a prompt
    tunnel       through it, every port answers as it would to a tunnelling engine
    key          a signed probe (probe_request) is answered: the HMAC key, and the curve
                 server key when the file has one, are the controller's
    protocol     the controller speaks this minipar's protocol version

Each check prints one line, ``OK|FAIL|WARN <check>: <what was seen>``, with the setting to
change after ``-- fix:`` on a FAIL or WARN; the last line is the verdict, ``engines can
register`` (exit 0) or ``engines cannot register: <first failure>`` (exit 1). Only the standard
library and zmq are used: a bare site Python with pyzmq can run it.
"""
