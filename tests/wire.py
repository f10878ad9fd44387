"""What crosses the wire: TCP traffic to or from some ports, captured from an interface."""
from __future__ import annotations

import os
import socket
import threading

CAN_CAPTURE = hasattr(socket, "AF_PACKET") and os.geteuid() == 0
"""Capturing packets needs root and AF_PACKET (Linux)."""

ETH_P_ALL = 0x0003


class Capture:
    """With-block: every Ethernet frame on ``interface`` carrying TCP to or from ``ports``
    ends up in ``self.data``, read by a thread from a raw socket."""

    def __init__(self, interface: str, ports):
        self.interface = interface
        self.ports = set(ports)
        self.data = bytearray()
        self.packets = 0
        self._stop = threading.Event()

    def __enter__(self):
        self._raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._raw.bind((self.interface, 0))
        self._raw.settimeout(0.1)
        self._thread = threading.Thread(target=self._run, name="capture-%s" % self.interface)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            try:
                frame = self._raw.recv(65536)
            except socket.timeout:
                continue
            ip = frame[14:]
            if len(ip) > 40 and ip[0] >> 4 == 4 and ip[9] == 6:  # IPv4, TCP
                tcp = ip[(ip[0] & 0xF) * 4:]
                if {int.from_bytes(tcp[0:2], "big"), int.from_bytes(tcp[2:4], "big")} & self.ports:
                    self.data.extend(frame)
                    self.packets += 1

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self._raw.close()
