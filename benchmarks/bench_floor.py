"""The floor under minipar's task rate: the same processes and sockets doing nothing else.

    python benchmarks/bench_floor.py [--tasks 10000] [--rounds 5] [--engines 2]

A task through minipar crosses four processes (client, controller, engine, controller,
client) and four ZeroMQ hops. This benchmark keeps exactly that: a client DEALER, a
controller with two ROUTERs handing each request to the engine holding the fewest (up to
the same high-water mark), engines that answer every request, with frames of the real
sizes (a signed ``apply_request`` of a no-op and its ``apply_reply``, built once) sent and
received with ``minipar.protocol.send_frames``/``recv_frames``. What it leaves out is all
minipar does per task: signing and verifying, parsing headers, scheduling policy, task
records, pickling, output capture and AsyncResults. Each round runs ``--tasks`` no-op
tasks on the floor and then through a real minipar cluster (``lview.apply_async``, submit
all, wait all), and reports the rate and the CPU each process spent per task (from
/proc), medians over the rounds. The gap between the two rows is minipar's own work; the
floor row is what any design with these processes and hops costs on this machine.

A third row, ``floor+work``, is the same skeleton doing the work this design requires of each
task and nothing more, written plainly with the standard library: the client JSON-encodes a
header, signs it (HMAC-SHA256 over the envelope's four JSON parts), pickles the call and keeps a Future;
the controller verifies, parses the header and metadata, keeps a record of the task and of its
reply and forwards the frames untouched; the engine verifies, parses, unpickles and calls the
function, and signs a reply with its timings and a pickled result; the client verifies, parses
it, unpickles the value and sets the Future. It has no output capture, no dependencies, no
retries, no stealing, no AsyncResult, no background thread: a bound for minipar's design, which
needs all of those. Minipar pickles a ``__main__`` function by value (bytecode) where this
row pickles it by name.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import zmq  # noqa: E402

from concurrent.futures import Future  # noqa: E402

from minipar.protocol import DELIM, Session, recv_frames, send_frames  # noqa: E402
from minipar.serialize import pack_apply_message  # noqa: E402

HWM = 16
KEY = b"floor-key"
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def envelope(parts) -> bytes:
    """The signature and the four JSON parts in one frame, as minipar's protocol has them."""
    body = b"\n".join(parts)
    return hmac.new(KEY, body, hashlib.sha256).hexdigest().encode() + b"\n" + body


def verified(frames):
    """frames from the delimiter on; the envelope's four JSON parts, checked against its signature"""
    signature, body = frames[1].split(b"\n", 1)
    if not hmac.compare_digest(signature, hmac.new(KEY, body, hashlib.sha256).hexdigest().encode()):
        raise ValueError("bad signature")
    return body.split(b"\n")


def header(session, n, msg_type) -> bytes:
    return _dumps({"msg_id": "%s-%d" % (session, n), "msg_type": msg_type, "session": session,
                   "date": time.time()}).encode()


def noop():
    pass


def real_frames():
    """A real request's and reply's frames (after the routing id), signed once."""
    session = Session("floor-key")
    header, request = session.build("apply_request", {}, None, {})
    _, reply = session.build("apply_reply", {"status": "ok", "engine_info": {"engine_id": 0, "method": "apply"}},
                             header, {"status": "ok", "engine_id": 0, "engine_uuid": "x" * 36, "started": time.time(),
                                      "completed": time.time(), "stdout": "", "stderr": ""})
    return request + pack_apply_message(noop, (), {}), reply + [b"\x80\x05N."]


def run_controller(client_port_file, work=False):
    ctx = zmq.Context()
    clients, engines = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    for s in (clients, engines):
        s.setsockopt(zmq.SNDHWM, 0)
        s.setsockopt(zmq.RCVHWM, 0)
    ports = clients.bind_to_random_port("tcp://127.0.0.1"), engines.bind_to_random_port("tcp://127.0.0.1")
    Path(client_port_file).write_text("%d %d" % ports)
    load, queue, client, records = {}, [], None, {}
    poller = zmq.Poller()
    poller.register(clients, zmq.POLLIN)
    poller.register(engines, zmq.POLLIN)

    def dispatch():
        while queue:
            engine = min(load, key=load.get)
            if load[engine] >= HWM:
                return
            load[engine] += 1
            send_frames(engines, [engine] + queue.pop(0)[1:])

    while True:
        for sock, _ in poller.poll():
            for _ in range(1000):
                frames = recv_frames(sock, zmq.NOBLOCK)
                if frames is None:
                    break
                if sock is clients:
                    client = frames[0]
                    if work:
                        parts = verified(frames[1:])
                        head = json.loads(parts[0])
                        json.loads(parts[2])
                        records[head["msg_id"]] = {"header": parts[0], "submitted": head["date"],
                                                   "client": client, "buffers": frames[3:]}
                    queue.append(frames)
                elif frames[1] == b"ready":
                    load[frames[0]] = 0
                else:
                    load[frames[0]] -= 1
                    if work:
                        parts = verified(frames[1:])
                        json.loads(parts[0])
                        md = json.loads(parts[2])
                        records[json.loads(parts[1])["msg_id"]].update(
                            result_header=parts[0], result_metadata=parts[2], result_buffers=frames[3:],
                            started=md["started"], completed=md["completed"], received=time.time())
                    send_frames(clients, [client] + frames[1:])
        dispatch()


def run_engine(port, work=False):
    _, reply = real_frames()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect("tcp://127.0.0.1:%s" % port)
    send_frames(sock, [b"ready"])
    session, n = "engine-%d" % os.getpid(), 0
    while True:
        frames = recv_frames(sock)
        if not work:
            send_frames(sock, reply)
            continue
        request = verified(frames)
        json.loads(request[0])
        f, args, kwargs = pickle.loads(frames[2])
        started = time.time()
        result = f(*args, **kwargs)
        md = _dumps({"status": "ok", "engine_id": 0, "started": started, "completed": time.time()}).encode()
        n += 1
        parts = [header(session, n, "apply_reply"), request[0], md, b'{"status":"ok"}']
        send_frames(sock, [DELIM, envelope(parts)] + [pickle.dumps(result, 5)])


def cpu_seconds(pid) -> float:
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(pids, run, tasks):
    before = [cpu_seconds(p) for p in pids]
    own = time.process_time()
    t0 = time.perf_counter()
    run()
    wall = time.perf_counter() - t0
    own = time.process_time() - own
    per = [(cpu_seconds(p) - b) / tasks * 1e6 for p, b in zip(pids, before)]
    return {"rate": tasks / wall, "client": own / tasks * 1e6, "controller": per[0], "engines": sum(per[1:])}


class Floor:
    def __init__(self, engines, work=False):
        self.work = work
        self.tmp = tempfile.TemporaryDirectory()
        port_file = Path(self.tmp.name) / "ports"
        me = [sys.executable, __file__] + (["--work"] if work else [])
        self.procs = [subprocess.Popen(me + ["--role", "controller", str(port_file)])]
        deadline = time.monotonic() + 20
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline:
                raise SystemExit("the floor controller did not start")
            time.sleep(0.01)
        client_port, engine_port = port_file.read_text().split()
        self.procs += [subprocess.Popen(me + ["--role", "engine", engine_port]) for _ in range(engines)]
        self.pids = [q.pid for q in self.procs]
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.connect("tcp://127.0.0.1:%s" % client_port)
        self.request, _ = real_frames()
        time.sleep(0.5)  # the engines' "ready" must be in before the first task: a benchmark, not a product
        self.run(200)

    def run(self, tasks):
        if self.work:
            return self.run_work(tasks)
        request = [DELIM] + self.request
        for _ in range(tasks):
            send_frames(self.sock, request)
        for _ in range(tasks):
            recv_frames(self.sock)

    def run_work(self, tasks):
        futures, session, empty = {}, "client-%d" % os.getpid(), b"{}"
        for n in range(tasks):
            head = header(session, n, "apply_request")
            parts = [head, empty, empty, empty]
            payload = pickle.dumps((noop, (), {}), 5)
            future = futures["%s-%d" % (session, n)] = Future()
            future.set_running_or_notify_cancel()
            send_frames(self.sock, [DELIM, envelope(parts)] + [payload])
        for _ in range(tasks):
            frames = recv_frames(self.sock)
            parts = verified(frames)
            json.loads(parts[0])
            parent = json.loads(parts[1])
            json.loads(parts[2])
            json.loads(parts[3])
            futures.pop(parent["msg_id"]).set_result(pickle.loads(frames[2]))

    def close(self):
        for p in self.procs:
            p.kill()
            p.wait()
        self.sock.close(0)
        self.ctx.term()
        self.tmp.cleanup()


class Minipar:
    """A real cluster (bench_data's), and the pids of its controller and engines."""

    def __init__(self, engines):
        from bench_data import MiniparCluster

        self.cluster = MiniparCluster(engines)
        rc = self.cluster.rc
        controller = int(next((Path(self.cluster.tmp.name) / "pid").glob("controller*.pid")).read_text())
        self.pids = [controller] + rc[:].apply_sync(os.getpid)
        self.lview = rc.load_balanced_view()
        self.run(200)

    def run(self, tasks):
        ars = [self.lview.apply_async(noop) for _ in range(tasks)]
        for ar in ars:
            ar.get(120)
        self.cluster.rc.purge_results("all")

    def close(self):
        self.cluster.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--engines", type=int, default=2)
    p.add_argument("--role", choices=("controller", "engine"), help=argparse.SUPPRESS)
    p.add_argument("--work", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("role_arg", nargs="?", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role == "controller":
        return run_controller(args.role_arg, args.work)
    if args.role == "engine":
        return run_engine(args.role_arg, args.work)
    systems = {"floor": Floor(args.engines), "floor+work": Floor(args.engines, work=True),
               "minipar": Minipar(args.engines)}
    results = {name: [] for name in systems}
    try:
        for r in range(args.rounds):
            for name in (list(systems) if r % 2 == 0 else list(systems)[::-1]):
                s = systems[name]
                results[name].append(timed(s.pids, lambda: s.run(args.tasks), args.tasks))
    finally:
        for s in systems.values():
            s.close()
    print("%d no-op tasks, %d engines, medians of %d rounds; CPU per task in each process (µs)"
          % (args.tasks, args.engines, args.rounds))
    print("| system | tasks/s | client | controller | engines (sum) | total CPU/task |")
    print("|---|---|---|---|---|---|")
    for name, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print("| %s | %.0f | %.0f | %.0f | %.0f | %.0f |" % (name, med["rate"], med["client"], med["controller"],
                                                           med["engines"], med["client"] + med["controller"]
                                                           + med["engines"]))


if __name__ == "__main__":
    sys.exit(main())
