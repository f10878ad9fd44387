"""Simulated engines: thousands of engines speaking the real engine protocol, cheaply.

    python benchmarks/sim_engines.py [--engines 1000 5000] [--idle 10] [--tasks 20000]

Measures what the controller spends on many engines, past what real processes fit on one
machine: the time until a client sees them all registered (``rc.wait_for_engines(n)``),
the controller's CPU while idle (heartbeats only: utime+stime from /proc over ``--idle``
seconds, as % of one core), whether any engine was falsely declared dead meanwhile (the
client's engine count, and the controller's "no heartbeat" warnings), the controller's
CPU seconds per load-balanced no-op task, and that all unregister cleanly at the end.

Each simulated engine is what the controller sees of a real one (minipar/engine/engine.py):
a DEALER on the engine port whose identity is its uuid, which sends a signed
registration_request and answers each apply_request with a signed apply_reply (status ok,
result None, the metadata a real engine sends); a second DEALER there, ``<uuid>:out`` like
the engine's output thread, which answers a steal_request (giving back the asked tasks still
unread on the engine socket, on the engine socket, as the engine does); a DEALER on the pong
port whose identity is its heart id, echoing every ping; and a SUB on the ping port, so the
controller's PUB fans each ping out to every engine as it would. Unlike a real heart, the
echo is sent when the shard's one reading SUB gets the ping (the per-engine SUBs are
conflated and never read), so one Python loop serves thousands of hearts.

A real engine holds a second (conflated) ping SUB besides its heart's: 5 connections to the
controller, where a simulated one holds 4. 5,000 real engines need 25,000 descriptors in the
controller, over the 20,000 hard limit of this machine; when 4 per engine do not fit under
the controller's limit either, the per-engine SUBs are left out (``ping_subs`` in the
results says which), and the ping then reaches only the shards: the controller's idle CPU
lacks the PUB fan-out (measure it at the largest count that fits, e.g. 4,500).

The engines are spread over shard processes (``--per-shard``, default 2000) because each
simulated engine costs the driver 8 descriptors (4 sockets, each a TCP connection and a
zmq mailbox) and a process here may hold 20,000. A shard is
``python sim_engines.py --shard ENGINE_FILE COUNT`` and talks over stdin/stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import select
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import zmq  # noqa: E402

from minipar.connection import read_connection_file, url  # noqa: E402
from minipar.protocol import PROTOCOL_VERSION, ProtocolError, Session, python_version, recv_frames, send_frames  # noqa: E402
from minipar.serialize import serialize_object  # noqa: E402

FDS_PER_ENGINE = 8
CONNECTIONS_PER_ENGINE = 4
PER_SHARD = 2000
REGISTER_BATCH = 100
"""Engines created and registered per turn of a shard's loop, between serving pings."""


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- one shard: many engines in one process ----------------------------------------------

class SimEngine:
    __slots__ = ("uuid", "socket", "out", "pong", "sub", "id", "heart", "answered", "given_back")

    def __init__(self, ctx, urls):
        self.uuid = str(uuid.uuid4())
        self.heart = (self.uuid + ":heart").encode()
        self.id = None
        self.answered = 0
        self.given_back = 0
        self.socket = ctx.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.IDENTITY, self.uuid.encode())
        for s_opt in (zmq.SNDHWM, zmq.RCVHWM):
            self.socket.setsockopt(s_opt, 0)
        self.socket.setsockopt(zmq.LINGER, 2000)
        self.socket.connect(urls["engine"])
        self.out = ctx.socket(zmq.DEALER)
        self.out.setsockopt(zmq.IDENTITY, (self.uuid + ":out").encode())
        self.out.setsockopt(zmq.LINGER, 0)
        self.out.connect(urls["engine"])
        self.pong = ctx.socket(zmq.DEALER)
        self.pong.setsockopt(zmq.IDENTITY, self.heart)
        self.pong.setsockopt(zmq.LINGER, 0)
        self.pong.connect(urls["hb_pong"])
        self.sub = None
        if urls.get("sub"):
            self.sub = ctx.socket(zmq.SUB)
            self.sub.setsockopt(zmq.CONFLATE, 1)
            self.sub.setsockopt(zmq.SUBSCRIBE, b"")
            self.sub.setsockopt(zmq.LINGER, 0)
            self.sub.connect(urls["hb_ping"])

    def close(self):
        for s in (self.socket, self.out, self.pong, self.sub):
            if s is not None:
                s.close()


class Shard:
    """Serves ``count`` simulated engines in one loop; commands arrive as lines on stdin."""

    def __init__(self, info: dict, count: int, ping_subs: bool = True):
        self.info = info
        self.count = count
        self.session = Session(info["key"])
        self.ctx = zmq.Context()
        self.ctx.MAX_SOCKETS = count * 4 + 100
        self.urls = {n: url(info, n) for n in ("engine", "hb_ping", "hb_pong")}
        self.urls["sub"] = ping_subs
        self.engines: list = []
        self.by_socket: dict = {}
        self.pings = self.ctx.socket(zmq.SUB)
        self.pings.setsockopt(zmq.SUBSCRIBE, b"")
        self.pings.connect(self.urls["hb_ping"])
        self.poller = zmq.Poller()
        self.poller.register(self.pings, zmq.POLLIN)
        self.stdin = sys.stdin.fileno()
        self.poller.register(self.stdin, zmq.POLLIN)
        self.pinged = 0
        self.refused = 0
        self.result = serialize_object(None)
        self.leaving = False

    def add_engines(self, n):
        for _ in range(n):
            e = SimEngine(self.ctx, self.urls)
            self.engines.append(e)
            self.by_socket[e.socket] = e
            self.by_socket[e.out] = e
            self.poller.register(e.socket, zmq.POLLIN)
            self.poller.register(e.out, zmq.POLLIN)
            self.session.send(e.socket, "registration_request", {
                "uuid": e.uuid, "heart": e.heart.decode(), "protocol": PROTOCOL_VERSION,
                "python": python_version(), "pid": os.getpid(), "hostname": "sim"})

    def status(self) -> dict:
        return {"created": len(self.engines), "registered": sum(e.id is not None for e in self.engines),
                "answered": sum(e.answered for e in self.engines),
                "given_back": sum(e.given_back for e in self.engines), "pinged": self.pinged, "refused": self.refused}

    def serve(self):
        out = sys.stdout
        while True:
            if len(self.engines) < self.count and not self.leaving:
                self.add_engines(min(REGISTER_BATCH, self.count - len(self.engines)))
                timeout = 0
            else:
                timeout = 1000
            for sock, _ in self.poller.poll(timeout):
                if sock is self.pings:
                    self.echo()
                elif sock == self.stdin:
                    line = os.read(self.stdin, 4096).decode()
                    if not line:
                        return
                    for cmd in line.split():
                        if cmd == "status":
                            out.write(json.dumps(self.status()) + "\n")
                            out.flush()
                        elif cmd == "unregister":
                            self.unregister()
                        elif cmd == "exit":
                            return
                else:
                    e = self.by_socket[sock]
                    if sock is e.out:
                        self.handle_control(e)
                    else:
                        self.handle(e)

    def echo(self):
        while True:
            try:
                ping = self.pings.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.pinged += 1
            if self.leaving:
                continue
            for e in self.engines:
                e.pong.send(ping)

    def receive(self, sock):
        """The messages waiting on a socket, parsed; a bad one is counted and dropped."""
        msgs = []
        while True:
            raw = recv_frames(sock, zmq.NOBLOCK)
            if raw is None:
                return msgs
            try:
                msgs.append(self.session.parse(raw))
            except ProtocolError:
                self.refused += 1

    def handle_control(self, e):
        """A steal_request: as a real engine does, give back the asked tasks not started
        (here: those still waiting unread on the engine socket) and run the others."""
        for msg in self.receive(e.out):
            if msg.msg_type != "steal_request":
                continue
            wanted = set(msg.content.get("msg_ids") or ())
            waiting = self.receive(e.socket)
            taken = [m.msg_id for m in waiting if m.msg_id in wanted and m.msg_type.endswith("_request")]
            self.session.send(e.socket, "steal_reply", {"msg_ids": taken}, parent=msg.header)
            e.given_back += len(taken)
            gone = set(taken)
            for m in waiting:
                if m.msg_id not in gone:
                    self.dispatch(e, m)

    def handle(self, e):
        for msg in self.receive(e.socket):
            self.dispatch(e, msg)

    def dispatch(self, e, msg):
        t = msg.msg_type
        if t == "registration_reply":
            if msg.content.get("status") == "ok":
                e.id = msg.content["id"]
            else:
                self.refused += 1
        elif t == "apply_request" or t == "execute_request":
            self.reply(e, msg)

    def reply(self, e, msg):
        now = time.time()
        kind = msg.msg_type.split("_")[0]
        content = {"status": "ok", "engine_info": {"engine_id": e.id, "engine_uuid": e.uuid, "method": kind}}
        if kind == "execute":
            content["execution_count"] = 0
        md = {"started": now, "completed": now, "stdout": "", "stderr": "", "status": "ok",
              "engine_id": e.id, "engine_uuid": e.uuid}
        _, frames = self.session.build(kind + "_reply", content, msg.header, md)
        send_frames(e.socket, frames, self.result)
        e.answered += 1

    def unregister(self):
        self.leaving = True
        for e in self.engines:
            if e.id is not None:
                self.session.send(e.socket, "unregistration_request", {"id": e.id})
        sys.stdout.write(json.dumps({"unregistering": len(self.engines)}) + "\n")
        sys.stdout.flush()

    def close(self):
        for e in self.engines:
            e.close()
        self.pings.close()
        self.ctx.term()


def shard_main(engine_file, count, ping_subs):
    raise_fd_limit()
    shard = Shard(read_connection_file(engine_file), count, ping_subs)
    try:
        shard.serve()
    finally:
        shard.close()


# -- the driver: shards as processes -------------------------------------------------------

class SimulatedEngines:
    """``n`` simulated engines of the controller whose engine connection file is given."""

    def __init__(self, engine_file, n: int, per_shard: int = PER_SHARD, ping_subs: bool = True):
        self.engine_file = str(engine_file)
        self.n = n
        sizes = [per_shard] * (n // per_shard) + ([n % per_shard] if n % per_shard else [])
        self.sizes = sizes
        self.ping_subs = ping_subs
        self.procs: list = []

    def start(self):
        for size in self.sizes:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--shard", self.engine_file, str(size)]
            if not self.ping_subs:
                cmd.append("--no-ping-subs")
            self.procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                               bufsize=1))
        return self

    def _ask(self, cmd, timeout=30.0) -> list:
        for p in self.procs:
            p.stdin.write(cmd + "\n")
            p.stdin.flush()
        answers = []
        deadline = time.monotonic() + timeout
        for p in self.procs:
            ready, _, _ = select.select([p.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("a shard did not answer %r within %gs" % (cmd, timeout))
            answers.append(json.loads(p.stdout.readline()))
        return answers

    def status(self) -> dict:
        total: dict = {}
        for a in self._ask("status"):
            for k, v in a.items():
                total[k] = total.get(k, 0) + v
        return total

    def unregister(self):
        self._ask("unregister")

    def pids(self) -> list:
        return [p.pid for p in self.procs]

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.stdin.write("exit\n")
                    p.stdin.flush()
                except (BrokenPipeError, OSError):
                    pass
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            for f in (p.stdin, p.stdout):
                try:
                    f.close()
                except OSError:
                    pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# -- measuring a controller ----------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads: the zmq I/O thread too)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _set_soft_fd_limit(n):
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


class Controller:
    """A controller process in its own profile dir, its stderr kept for the warnings."""

    def __init__(self, tmp, args=(), soft_fd_limit=None, root=ROOT):
        self.dir = Path(tmp)
        self.log = open(self.dir / "controller.err", "w+")
        env = dict(os.environ, MINIPAR_DIR=str(self.dir), PYTHONPATH=str(root))
        self.proc = subprocess.Popen([sys.executable, "-m", "minipar.controller", "--log-level=WARNING", *args],
                                     env=env, cwd=str(root), stderr=self.log, stdout=self.log,
                                     preexec_fn=(lambda: _set_soft_fd_limit(soft_fd_limit)) if soft_fd_limit else None)
        security = self.dir / "profile_default" / "security"
        self.client_file = security / "controller-client.json"
        self.engine_file = security / "controller-engine.json"
        deadline = time.monotonic() + 30
        while not (self.client_file.exists() and self.engine_file.exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("controller did not start: %s" % self.errors())
            time.sleep(0.05)

    @property
    def pid(self):
        return self.proc.pid

    def errors(self) -> str:
        self.log.flush()
        return (self.dir / "controller.err").read_text()

    def heartbeat_deaths(self) -> int:
        return self.errors().count("no heartbeat")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def noop():
    pass


def measure(n, idle, tasks, per_shard, ping_subs=True, controller_args=(), root=ROOT):
    import minipar

    limit = raise_fd_limit()
    if ping_subs and CONNECTIONS_PER_ENGINE * n + 200 > limit:
        ping_subs = False
    with tempfile.TemporaryDirectory() as tmp:
        ctl = Controller(tmp, controller_args, root=root)
        sim = SimulatedEngines(ctl.engine_file, n, per_shard, ping_subs)
        rc = None
        try:
            rc = minipar.Client(url_file=str(ctl.client_file))
            cpu0 = cpu_seconds(ctl.pid)
            t0 = time.perf_counter()
            sim.start()
            rc.wait_for_engines(n, timeout=600)
            register_s = time.perf_counter() - t0
            register_cpu = cpu_seconds(ctl.pid) - cpu0
            time.sleep(2)  # let the last engines' first echoes land
            lowest = len(rc.ids)
            cpu0, w0 = cpu_seconds(ctl.pid), time.perf_counter()
            end = w0 + idle
            while time.perf_counter() < end:
                time.sleep(0.25)
                lowest = min(lowest, len(rc.ids))
            idle_pct = 100 * (cpu_seconds(ctl.pid) - cpu0) / (time.perf_counter() - w0)
            per_task_us = tasks_s = None
            if tasks:
                lview = rc.load_balanced_view()
                cpu0, w0 = cpu_seconds(ctl.pid), time.perf_counter()
                ars = [lview.apply_async(noop) for _ in range(tasks)]
                for ar in ars:
                    ar.get(600)
                tasks_s = tasks / (time.perf_counter() - w0)
                per_task_us = 1e6 * (cpu_seconds(ctl.pid) - cpu0) / tasks
                engines_used = len({ar.engine_id for ar in ars})
                rc.purge_hub_results("all")
            else:
                engines_used = 0
            lowest = min(lowest, len(rc.ids))
            status = sim.status()
            deaths = ctl.heartbeat_deaths()
            t1 = time.perf_counter()
            sim.unregister()
            deadline = time.monotonic() + 120
            while rc.ids and time.monotonic() < deadline:
                time.sleep(0.1)
            unregister_s = time.perf_counter() - t1
            left = len(rc.ids)
        finally:
            sim.stop()
            if rc is not None:
                rc.close()
            ctl.stop()
    return {"engines": n, "register_s": register_s, "register_cpu_s": register_cpu, "idle_cpu_pct": idle_pct,
            "lowest_count_while_idle": lowest, "heartbeat_deaths": deaths, "tasks": tasks, "tasks_per_s": tasks_s,
            "controller_us_per_task": per_task_us, "engines_used": engines_used, "unregister_s": unregister_s,
            "left_after_unregister": left, "pings_echoed_by_shards": status["pinged"], "ping_subs": ping_subs,
            "tasks_given_back_by_steals": status["given_back"]}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--shard":
        shard_main(sys.argv[2], int(sys.argv[3]), "--no-ping-subs" not in sys.argv)
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--engines", type=int, nargs="+", default=[1000, 5000])
    p.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement")
    p.add_argument("--tasks", type=int, default=20000, help="load-balanced no-op tasks (0: none)")
    p.add_argument("--per-shard", type=int, default=PER_SHARD)
    p.add_argument("--no-ping-subs", action="store_true", help="no SUB per engine on the ping port")
    p.add_argument("--controller-from", metavar="DIR", action="append", default=[],
                   help="also run the controller of another checkout (before/after), alternating with this one")
    args = p.parse_args()
    roots = [ROOT] + [Path(d).resolve() for d in args.controller_from]
    rows = []
    for n in args.engines:
        for i, root in enumerate(roots if n % 2 == 0 else roots[::-1]):
            r = measure(n, args.idle, args.tasks, args.per_shard, not args.no_ping_subs, root=root)
            r["controller"] = "this checkout" if root == ROOT else str(root)
            print(json.dumps(r), flush=True)
            rows.append(r)
    print()
    print("| controller | engines | SUB per engine | register all | idle controller CPU | falsely dead | controller CPU/task | tasks/s "
          "| engines used | unregister all |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| {controller} | {engines:,} | {ping_subs} | {register_s:.2f} s | {idle_cpu_pct:.1f} % of a core | {dead} | {cpu} | {rate} | "
              "{engines_used:,} | {unregister_s:.2f} s ({left_after_unregister} left) |".format(
                  dead=r["heartbeat_deaths"] + (r["engines"] - r["lowest_count_while_idle"]),
                  cpu="%.0f µs" % r["controller_us_per_task"] if r["controller_us_per_task"] else "-",
                  rate="%.0f" % r["tasks_per_s"] if r["tasks_per_s"] else "-", **r))


if __name__ == "__main__":
    main()
