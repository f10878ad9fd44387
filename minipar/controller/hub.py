"""The hub: one thread, one poll loop, every socket of the controller.

::

     clients (DEALER)                                   engines
         |                                  DEALER (tasks, replies, output)
         v                                       |           SUB ping / DEALER pong
   +-----------+     +-----------------------------------+      |
   | client    |---->|  Hub.serve_forever (one thread)   |<-----+ engine ROUTER
   | ROUTER    |<----|   drain each ready socket, then   |----->|
   +-----------+     |   heartbeat tick, then schedule    |      |
   +-----------+     |                                   |  +---------+  +---------+
   | notify PUB|<----|   table: TaskTable (engines, what |->| ping PUB|  |pong     |
   +-----------+     |          each holds)              |  +---------+  |ROUTER   |
         |           |   scheduler: Scheduler (policy)   |<--------------+---------+
         v           +-----------------------------------+
   clients (SUB)                 | db.add_record / update_record

Clients send requests to the client ROUTER. A direct request (metadata ``dest``) is
forwarded straight to that engine, whose socket keeps them in order; a load-balanced one
goes to the :class:`~.scheduler.Scheduler`, pure policy that returns decisions (assign a
task to an engine, steal prefetched tasks for an idle engine, fail a task that can never
run), which :meth:`Hub.carry_out` performs on the sockets and the
:class:`~.tasks.TaskTable`. A steal asks the victim engine's side channel for tasks it
has not started (``steal_request``); its ``steal_reply`` names those it gave back, which
go to the thief. Requests are forwarded as the very frames that arrived: the hub
verifies the signature and reads the JSON header and metadata, but never touches a
payload; a task sent a second time (a retry, or after a steal) gets a re-signed header
over the same frames (:meth:`Session.with_header`). Replies come back on the engine
ROUTER and go to the client that asked, and into the task database. Whatever the hub
sends goes into its outbox (:meth:`Hub.send`, :meth:`Hub.forward`) and out, in order,
after the batch being handled (or every ``OUTBOX_BATCH`` messages) and before each poll.
A broadcast request (metadata ``broadcast``) is sent to each of its engines as a direct
task of its own, sharing the payload frames; see :mod:`broadcast`.

Engines register on the engine ROUTER and are watched by :mod:`heartbeat`. One may ask
for an id (its MPI rank, or ``engine.id``); :func:`grant_engine_id` decides. When one
goes silent, or unregisters, every task it held is answered by the hub itself with an
EngineError, so no client waits for it. An engine that drains before its batch job ends
(``drain_notification``) gets no new tasks and gives back those it has not started, which
go to other engines; tasks lost when a job ends do not use up their retries. The connection
doctor (``python -m minipar.doctor``) sends a signed ``probe_request`` to the same ROUTER and
gets the controller's versions back, with nothing kept: proof that its key is the
controller's. Output an engine prints while a task runs is republished on the notification
PUB, along with engine (un)registration news. When a
poll finds nothing to do after tasks finished, the freed C heap goes back to the kernel
(:mod:`..heap`), so a burst does not leave the controller at its high-water mark.
"""
from __future__ import annotations

import gc
import logging
import threading
import time
import zmq

from .. import protocol
from ..connection import (PORT_NAMES, bind_address, connection_file_path, default_location,
                          read_connection_file, write_connection_file)
from .. import curve
from ..context import new_context
from ..error import ConnectionFileError, ControllerStartError, CurveError, ProtocolError
from ..protocol import PROTOCOL_VERSION, Session, id_list, recv_frames, send_frames, versions
from ..logs import DropLog, problem_kind
from ..signals import drain_fd, signal_wakeup_fd
from ..heap import TRIM_INTERVAL, return_free_memory
from .broadcast import Coalescer, broadcast_targets
from .heartbeat import HeartMonitor
from .db.base import NoRecords
from .record_requests import RecordRequests, now_utc, utc
from ..dependency import Dependency
from .scheduler import SCHEMES, Assign, Fail, Scheduler, Steal
from .tasks import EngineState, Task, TaskTable
from .versions import ClusterPython, note_other_minipar

log = logging.getLogger("minipar.controller")

LISTEN_BACKLOG = 4096
"""Pending TCP connections each listening socket holds (ZeroMQ's default is 100). Thousands of
engines start at once on a big allocation, each opening 4 or 5 connections: past the backlog the
kernel drops their SYNs and they retry only after 1, 3, 7 s..., which made 5,000 engines take
17-30 s to register with the controller idle. Linux caps it at net.core.somaxconn."""

DRAIN_LIMIT = 256
"""Messages taken from one socket before looking at the others: fairness vs. batching."""

GC_THRESHOLDS = (50000, 20, 100)
"""The hub allocates a few small objects per message and keeps many records alive: with the
default thresholds the collector runs every few tasks and keeps rescanning the records."""

OUTBOX_BATCH = 16
"""Messages the outbox gathers before sending while a batch is still being handled: enough
to wake ZeroMQ's I/O thread once for many, few enough that engines are not kept waiting."""

POLL_CEILING = 0.25
"""Longest poll, in seconds, so a stop request is seen promptly."""

MAX_JOB_LOSSES = 3
"""Times a task may be lost to the end of an engine's batch job and run again without using
up one of its retries: more, and the task itself is likely too long for the jobs' walltime."""

JOB_END_NOTE = "; the end of a batch job does not count against a task's retries"

JOB_END_SLACK = 60.0
"""Seconds before the end of its allocation (as the engine gave it, by its host's clock) from
which an engine whose heartbeats stop is taken to have been killed by that end."""


class Hub(RecordRequests):
    def __init__(self, cfg, profile_dir, open_db):
        self.cfg = cfg
        self.profile_dir = profile_dir
        self.open_db = open_db
        self.outbox = []
        self.db = None
        self.watchers: dict = {}
        self.cluster_id = cfg.cluster_id
        self.hwm = max(1, cfg.engine_hwm)
        if cfg.scheme not in SCHEMES:
            raise ControllerStartError("controller.scheme: %r is not a scheme; use one of %s"
                                       % (cfg.scheme, ", ".join(SCHEMES)))
        self.scheduler = Scheduler(cfg.scheme, self.hwm)
        self.table = TaskTable()
        self.trim_due, self.trimmed_at = False, 0.0
        self.engines = self.table.engines
        self.pending = self.table.pending
        self.steal_check_at = None
        self.next_id = 0
        self.stopping = False
        self.drops = DropLog(log)
        self.python = ClusterPython()
        self.engines_version = 0  # engine (un)registrations so far: clients order what they hear by it
        self.deaths = None  # engine_died messages met while another one drains the engine socket
        self.info: dict = {}

    # -- setup -------------------------------------------------------------------------

    def _previous_info(self):
        for role in ("engine", "client"):
            path = connection_file_path(self.profile_dir, role, self.cluster_id)
            if path.exists():
                try:
                    return read_connection_file(path)
                except ConnectionFileError as e:
                    raise ControllerStartError("--reuse: %s" % e) from None
        return None

    def bind(self):
        cfg = self.cfg
        previous = self._previous_info() if cfg.reuse else None
        if cfg.reuse and previous is None:
            log.info("--reuse: no earlier connection file for this profile; making a new one")
        key = previous["key"] if previous else protocol.new_key()
        try:
            encrypt = curve.wanted(cfg.curve, cfg.ip)
            curve_keys = curve.server_keys(self.profile_dir, self.cluster_id, reuse=previous is not None) \
                if encrypt else None
        except CurveError as e:
            raise ControllerStartError(str(e)) from None
        self.session = Session(key)
        # --reuse is the same controller back (after a crash, say): it keeps recording where
        # the last one did, so get_result finds what finished before the restart
        self.db_session = (previous or {}).get("db_session") or self.session.id
        self.db = self.open_db(self.db_session)
        self.ctx = new_context()
        ip = bind_address(cfg.ip)
        wanted = self._wanted_ports(previous)
        kinds = {"client": zmq.ROUTER, "engine": zmq.ROUTER, "notification": zmq.PUB,
                 "hb_ping": zmq.PUB, "hb_pong": zmq.ROUTER}
        self.sockets = {}
        ports = {}
        for name in PORT_NAMES:
            sock = self.ctx.socket(kinds[name])
            sock.setsockopt(zmq.LINGER, 1000)
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.setsockopt(zmq.RCVHWM, 0)
            sock.setsockopt(zmq.BACKLOG, LISTEN_BACKLOG)
            if curve_keys is not None:
                curve.make_server(sock, curve_keys[1])
            if kinds[name] == zmq.ROUTER:
                sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
            ports[name] = self._bind_one(sock, name, ip, wanted)
            self.sockets[name] = sock
        location = cfg.location or default_location(cfg.ip)
        self.info = {
            "transport": "tcp", "ip": cfg.ip, "location": location, "ports": ports,
            "key": key, "signature_scheme": protocol.SIGNATURE_SCHEME,
            "cluster_id": self.cluster_id, "protocol": PROTOCOL_VERSION, "db_session": self.db_session,
        }
        if curve_keys is not None:
            self.info[curve.SERVER_KEY_FIELD] = curve_keys[0].decode()
            log.info("connections are encrypted (CurveZMQ; controller.curve = %r)", cfg.curve)
        log.info("Hub listening on tcp://%s:%d for clients and tcp://%s:%d for engines",
                 cfg.ip, ports["client"], cfg.ip, ports["engine"])
        log.info("Hub using DB backend: %s", type(self.db).__name__)
        # The client file last: whoever waits for it (a Cluster) may then start engines at once.
        for role, ssh in (("engine", cfg.engine_ssh_server), ("client", cfg.ssh_server)):
            path = connection_file_path(self.profile_dir, role, self.cluster_id)
            log.info("writing connection info to %s", path)
            write_connection_file(path, dict(self.info, ssh=ssh))
        self.monitor = HeartMonitor(self.sockets["hb_ping"], self.session.bid, max(1, cfg.heartbeat_misses),
                                    self.sockets["hb_pong"])
        log.info("Task scheduler: %s (up to %d tasks in flight per engine)", cfg.scheme, self.hwm)
        log.info("Heartmonitor started (period %gs, dead after %d missed)",
                 cfg.heartbeat_period, cfg.heartbeat_misses)

    def _wanted_ports(self, previous):
        if previous:
            return [previous["ports"][n] for n in PORT_NAMES]
        if self.cfg.ports:
            if len(self.cfg.ports) != len(PORT_NAMES):
                raise ControllerStartError("controller.ports: give %d ports (%s), got %d"
                                           % (len(PORT_NAMES), ", ".join(PORT_NAMES), len(self.cfg.ports)))
            return list(self.cfg.ports)
        return None

    def _bind_one(self, sock, name, ip, wanted):
        if wanted:
            port = wanted[PORT_NAMES.index(name)]
            try:
                sock.bind("tcp://%s:%d" % (ip, port))
            except zmq.ZMQError as e:
                raise ControllerStartError("cannot bind the %s port tcp://%s:%d: %s. Is another controller using "
                                           "this profile's ports (see its pid/ dir), or pick other ports."
                                           % (name, ip, port, e.strerror)) from None
            return port
        low, high = 49152, 65536
        if self.cfg.port_range:
            try:
                low, high = (int(x) for x in self.cfg.port_range.split("-"))
                high += 1
            except ValueError:
                raise ControllerStartError("controller.port_range: expected 'LOW-HIGH', got %r"
                                           % self.cfg.port_range) from None
        try:
            return sock.bind_to_random_port("tcp://%s" % ip, min_port=low, max_port=high, max_tries=200)
        except zmq.ZMQBindError:
            raise ControllerStartError("no free port for %s in range %d-%d (controller.port_range)"
                                       % (name, low, high - 1)) from None
        except zmq.ZMQError as e:
            raise ControllerStartError("cannot bind tcp://%s: %s (controller.ip = %r)"
                                       % (ip, e.strerror, self.cfg.ip)) from None

    # -- main loop ---------------------------------------------------------------------

    def serve_forever(self):
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        s = self.sockets
        handlers = {s["client"]: self.handle_client, s["engine"]: self.handle_engine,
                    s["hb_pong"]: self.monitor.handle_pong}
        poller = zmq.Poller()
        for sock in handlers:
            poller.register(sock, zmq.POLLIN)
        wakeup = signal_wakeup_fd() if threading.current_thread() is threading.main_thread() else None
        if wakeup is not None:
            poller.register(wakeup, zmq.POLLIN)
        period = max(0.01, self.cfg.heartbeat_period)
        next_beat = time.monotonic()
        while not self.stopping:
            now = time.monotonic()
            if now >= next_beat:
                for heart in self.monitor.beat():
                    engine = self.table.by_heart.get(heart)
                    if engine is not None:
                        self.heart_stopped(engine, period)
                    else:
                        self.monitor.remove(heart)
                next_beat = now + period
            self.flush()
            timeout = min(next_beat - time.monotonic(), POLL_CEILING)
            if self.steal_check_at is not None:
                timeout = min(timeout, self.steal_check_at - time.monotonic())
            events = poller.poll(max(0, timeout) * 1000)
            if not events and self.trim_due and now >= self.trimmed_at + TRIM_INTERVAL:
                self.trim_due, self.trimmed_at = False, now
                return_free_memory()
            for sock, _ in events:
                if sock == wakeup:
                    drain_fd(wakeup)
                    continue
                handle = handlers[sock]
                for _ in range(DRAIN_LIMIT):
                    raw = recv_frames(sock, zmq.NOBLOCK)
                    if raw is None:
                        break
                    handle(raw)
                    if len(self.outbox) >= OUTBOX_BATCH:
                        self.flush()
                self.flush()
            self.schedule()
        self.shutdown()

    # -- sending -----------------------------------------------------------------------

    def send(self, socket_name, msg_type, content=None, parent=None, metadata=None, buffers=(), idents=(),
             header=None) -> dict:
        """Build and sign a message (:meth:`Session.build`) for the outbox; its header."""
        header, frames = self.session.build(msg_type, content, parent, metadata, header)
        self.outbox.append((self.sockets[socket_name], list(idents) + frames, buffers))
        return header

    def forward(self, socket_name, frames):
        """Frames already signed (a message passed on as it came, or re-signed) for the outbox."""
        self.outbox.append((self.sockets[socket_name], frames, ()))

    def flush(self):
        """Send what the outbox holds, in order. The hub sends a batch's messages back to back
        after handling it, not one between each two: ZeroMQ's I/O thread then wakes once for
        the batch instead of once a message, which is most of what a message costs the
        controller at a few thousand tasks a second (``benchmarks/bench_floor.py``)."""
        outbox = self.outbox
        try:
            for socket, frames, buffers in outbox:
                send_frames(socket, frames, buffers)
        finally:
            outbox.clear()

    def schedule(self):
        """Carry out what the scheduler decides now: timeouts, assignments, steals."""
        scheduler = self.scheduler
        now = time.monotonic()
        if scheduler.timeouts:
            self.carry_out(scheduler.check_timeouts(now))
        if scheduler.ready or (self.steal_check_at is not None and now >= self.steal_check_at):
            self.carry_out(scheduler.schedule(self.table, now))
            self.steal_check_at = scheduler.steal_due(self.table, now)

    def carry_out(self, decisions):
        for decision in decisions:
            kind = type(decision)
            if kind is Assign:
                self.assign(decision.engine, decision.task)
            elif kind is Fail:
                self.fail_task(decision.task, decision.ename, decision.evalue)
            elif kind is Steal:
                self.request_steal(decision)

    def engine_idle(self, now):
        """An engine holds nothing now: it may steal at the next look."""
        if self.table.stacked:
            self.steal_check_at = now

    def _parse(self, raw, source):
        try:
            return self.session.parse(raw)
        except ProtocolError as e:
            self.drops.drop("%s socket: %s" % (source, problem_kind(e)),
                            "a message on the %s socket: %s" % (source, e))
            return None

    # -- clients -----------------------------------------------------------------------

    def handle_client(self, raw):
        msg = self._parse(raw, "client")
        if msg is None or not msg.idents:
            return
        try:
            handler = self.client_handlers.get(msg.msg_type)
            if handler is None:
                self.drops.drop("client: unknown msg_type", "a client's message of unknown msg_type %r" % msg.msg_type)
                self.send("client", "error_reply", parent=msg.header,
                          idents=[reply_identity(msg.idents[0])],
                          content={"status": "error", "reason": "unknown msg_type %r" % msg.msg_type})
                return
            handler(self, msg)
        except ProtocolError as e:
            self.drops.drop("client %s: %s" % (msg.msg_type, problem_kind(e)),
                            "a %s from a client: %s" % (msg.msg_type, e))
        except (KeyError, TypeError, ValueError) as e:
            self.drops.drop("client %s: malformed" % msg.msg_type, "a malformed %s from a client: %r" % (msg.msg_type, e))
            if msg.msg_type in ("apply_request", "execute_request") and msg.msg_id not in self.pending:
                task = Task(msg.msg_id, msg.header, reply_identity(msg.idents[0]), msg.frames, lb=False)
                self.fail_task(task, "ValueError", "the controller could not read this request: %r" % e)

    def on_task_request(self, msg):
        md = msg.metadata
        if "broadcast" in md:
            return self.on_broadcast(msg)
        client = reply_identity(msg.idents[0])
        dest = md.get("dest")
        targets = md.get("targets")
        task = Task(msg.msg_id, msg.header, client, msg.frames, lb=dest is None,
                    targets=set(targets) if targets else None)
        if dest is None and md:
            task.after = Dependency.from_metadata(md.get("after"))
            task.follow = Dependency.from_metadata(md.get("follow"))
            task.timeout = md.get("timeout") or None
            task.retries = int(md.get("retries") or 0)
            task.tags = tag_set(md.get("tags"))
        self.db.add_record(task.msg_id, {
            "header": msg.parts[0], "metadata": msg.parts[2], "content": msg.parts[3], "buffers": msg.buffers,
            "submitted": utc(msg.header.get("date")), "client_uuid": client.decode("ascii", "replace"),
            "queue": "task" if task.lb else "mux",
        })
        if dest is None:
            if task.after is not None or task.follow is not None:
                self._recall_dependencies(task)
            self.carry_out(self.scheduler.submit(task, self.table, time.monotonic()))
            return
        engine = self.engines.get(dest) if isinstance(dest, int) else None
        if engine is None or engine.draining:
            self.fail_task(task, "EngineError", self._not_taking(dest))
            return
        self.assign(engine, task)

    def _not_taking(self, engine_id) -> str:
        """Why a direct task cannot go to ``engine_id``."""
        engine = self.engines.get(engine_id) if isinstance(engine_id, int) else None
        if engine is None:
            return "engine %r is not registered (registered: %s)" % (engine_id, sorted(self.engines))
        return "engine %d is draining before its job ends (%s): it takes no new tasks" % (
            engine.id, describe_end(engine.end_time))

    def _recall_dependencies(self, task):
        """Finished tasks the scheduler no longer remembers are looked up in the database."""
        for dep in (task.after, task.follow):
            for msg_id in dep if dep is not None else ():
                if self.scheduler.knows(msg_id, self.table):
                    continue
                try:
                    rec = self.db.get_record(msg_id)
                except (KeyError, NoRecords):
                    continue
                if rec.get("completed") is None:
                    continue
                engine = next((e.id for e in self.engines.values() if e.uuid == rec.get("engine_uuid")), None)
                ok = (rec.get("result_content") or {}).get("status") == "ok"
                self.scheduler.remember(msg_id, engine, ok)

    def on_broadcast(self, msg):
        """One request, one direct task per engine: re-signed header, the same payload frames."""
        md = msg.metadata
        targets = broadcast_targets(md)
        client = reply_identity(msg.idents[0])
        part_ids = [protocol.broadcast_part_id(msg.msg_id, t) for t in targets]
        coalescer = Coalescer(msg.header, client, part_ids) if md.get("coalescing") else None
        content, submitted = msg.content, utc(msg.header.get("date"))
        for engine_id, part_id in zip(targets, part_ids):
            header = dict(msg.header, msg_id=part_id)
            task = Task(part_id, header, client, self.session.with_header(msg.frames, header), lb=False)
            task.coalescer = coalescer
            self.db.add_record(part_id, {
                "header": header, "metadata": {"dest": engine_id, "broadcast_of": msg.msg_id}, "content": content,
                "buffers": msg.buffers, "submitted": submitted, "client_uuid": client.decode("ascii", "replace"),
                "queue": "broadcast",
            })
            engine = self.engines.get(engine_id)
            if engine is None or engine.draining:
                self.fail_task(task, "EngineError", self._not_taking(engine_id))
            else:
                self.assign(engine, task)

    def _to_client(self, task, frames, msg_type, content, md, buffers):
        """A task's reply to its client; a coalesced broadcast's part waits for the others."""
        coalescer = task.coalescer
        if coalescer is None:
            self.forward("client", [task.client] + frames)
        elif coalescer.add(task.msg_id, msg_type, content, md, buffers):
            content, md, buffers = coalescer.reply()
            self.send("client", "broadcast_reply", content, parent=coalescer.header,
                      metadata=md, buffers=buffers, idents=[coalescer.client])

    def on_connect(self, msg):
        c = msg.content
        who = "a client on host %s, pid %s" % (c.get("hostname", "?"), c.get("pid", "?"))
        refusal = self.python.refusal("client", c)
        if refusal is None:
            self.python.admitted(c, who)
            note_other_minipar(who, c)
            reply = {"status": "ok", "engines": {str(i): e.uuid for i, e in self.engines.items()},
                     "engines_version": self.engines_version, "session": self.session.id, **versions(),
                     **self.python.as_content()}
        else:
            reply = {"status": "error", "reason": refusal}
            log.warning("refused %s: %s", who, refusal)
        self.send("client", "connect_reply", reply, parent=msg.header,
                  idents=[reply_identity(msg.idents[0])])

    def on_shutdown(self, msg):
        c = msg.content
        targets = c.get("targets")
        ids = list(self.engines) if targets is None else [t for t in targets if t in self.engines]
        for i in ids:
            self.send("engine", "shutdown_request", {}, idents=[self.engines[i].ident])
        self.send("client", "shutdown_reply", {"status": "ok", "engines": ids},
                  parent=msg.header, idents=[reply_identity(msg.idents[0])])
        if c.get("hub"):
            log.info("shutdown requested by a client")
            self.stopping = True

    def _reply(self, msg, msg_type, content, buffers=()):
        self.send("client", msg_type, content, parent=msg.header, buffers=buffers,
                  idents=[reply_identity(msg.idents[0])])

    def _targets(self, content) -> list:
        targets = content.get("targets")
        return list(self.engines) if targets is None else [t for t in targets if t in self.engines]

    def on_queue_status(self, msg):
        verbose = bool(msg.content.get("verbose"))
        self.carry_out(self.scheduler.schedule(self.table, time.monotonic()))
        status = {}
        for i in self._targets(msg.content):
            engine = self.engines[i]
            mux = [m for m, t in engine.outstanding.items() if not t.lb]
            lb = [m for m, t in engine.outstanding.items() if t.lb]
            status[str(i)] = {"queue": mux if verbose else len(mux), "tasks": lb if verbose else len(lb),
                              "completed": engine.completed}
        unassigned = self.scheduler.unassigned()
        self._reply(msg, "queue_reply", {"status": "ok", "engines": status,
                                         "unassigned": unassigned if verbose else len(unassigned)})

    def on_engine_info(self, msg):
        """What the hub knows of each engine: where it runs, its batch job and tags, how long
        its job has left, whether it drains, its load."""
        wall_now, now = time.time(), time.monotonic()
        engines = {}
        for i in self._targets(msg.content):
            e = self.engines[i]
            engines[str(i)] = {
                "uuid": e.uuid, "host": e.hostname, "pid": e.pid, "tags": sorted(e.tags),
                "job": {"system": e.job[0], "id": e.job[1]} if e.job else None, "end_time": e.end_time,
                "remaining": None if e.end_time is None else e.end_time - wall_now,
                "drain_at": None if e.drain_at is None else e.drain_at - now + wall_now,
                "draining": e.draining, "load": e.load, "completed": e.completed}
        self._reply(msg, "engine_info_reply", {"status": "ok", "engines": engines,
                                               "engines_version": self.engines_version})

    def on_abort(self, msg):
        """Abort tasks not yet running: the hub answers those it still holds; engines those
        queued with them. A running task is not stopped (interrupt it with a signal)."""
        c = msg.content
        msg_ids = c.get("msg_ids")
        targets = self._targets(c)
        if msg_ids is None:
            held = self.scheduler.abort(self.scheduler.unassigned()) if c.get("targets") is None else []
        else:
            held = self.scheduler.abort(msg_ids)
        for task in held:
            self.fail_task(task, "TaskAborted", "aborted before it started", status="aborted")
        for i in targets:
            engine = self.engines[i]
            ids = None if msg_ids is None else [m for m in msg_ids if m in engine.outstanding]
            for task in engine.outstanding.values() if ids is None else map(engine.outstanding.get, ids):
                task.abort_requested = True  # a steal that gets it back answers it as aborted
            if ids is None or ids:
                self.send("engine", "abort_request", {"msg_ids": ids}, idents=[engine.ident])
        self._reply(msg, "abort_reply", {"status": "ok", "aborted_in_hub": [t.msg_id for t in held]})

    def on_clear(self, msg):
        ids = self._targets(msg.content)
        for i in ids:
            self.send("engine", "clear_request", {}, idents=[self.engines[i].ident])
        self._reply(msg, "clear_reply", {"status": "ok", "engines": ids})

    def on_signal(self, msg):
        """Signals go to each engine's side channel, which is free while the main thread runs a task."""
        c = msg.content
        ids = self._targets(c)
        for i in ids:
            engine = self.engines[i]
            self.send("engine", "signal_request", {"signal": int(c["signal"])},
                      idents=[engine.uuid.encode() + b":out"])
        self._reply(msg, "signal_reply", {"status": "ok", "engines": ids})

    def on_sync(self, msg):
        """Answered once every message the asking socket sent before has been handled, since
        ZeroMQ keeps one connection's messages in order (``ar.wait_for_send()``)."""
        self._reply(msg, "sync_reply", {"status": "ok"})

    client_handlers = {
        "apply_request": on_task_request,
        "execute_request": on_task_request,
        "connect_request": on_connect,
        "shutdown_request": on_shutdown,
        "queue_request": on_queue_status,
        "abort_request": on_abort,
        "clear_request": on_clear,
        "signal_request": on_signal,
        "sync_request": on_sync,
        "engine_info_request": on_engine_info,
        "result_request": RecordRequests.on_result_request,
        "result_status_request": RecordRequests.on_result_status,
        "history_request": RecordRequests.on_history,
        "db_request": RecordRequests.on_db_query,
        "purge_request": RecordRequests.on_purge,
        "resubmit_request": RecordRequests.on_resubmit,
    }

    # -- engines -----------------------------------------------------------------------

    def handle_engine(self, raw):
        msg = self._parse(raw, "engine")
        if msg is None or not msg.idents:
            return
        try:
            t = msg.msg_type
            if t == "apply_reply" or t == "execute_reply":
                self.on_reply(msg)
            elif t == "stream":
                self.forward("notification", [b"stream"] + msg.frames)
            elif t == "steal_reply":
                self.on_steal_reply(msg)
            elif t == "registration_request":
                self.register(msg)
            elif t == "unregistration_request":
                engine = self.table.by_ident.get(msg.idents[0])
                if engine is not None:
                    reason = msg.content.get("reason")
                    self.unregister(engine, reason if isinstance(reason, str) else "engine shut down", clean=True,
                                    job_ended=msg.content.get("job_ended") is True)
            elif t == "drain_notification":
                self.on_drain(msg)
            elif t == "walltime_notification":
                self.on_walltime_extended(msg)
            elif t == "engine_died":
                self.on_engine_died(msg)
            elif t == "probe_request":
                self.on_probe(msg)
            else:
                self.drops.drop("engine: unknown msg_type", "an engine's message of unknown msg_type %r" % t)
        except ProtocolError as e:
            self.drops.drop("engine %s: %s" % (msg.msg_type, problem_kind(e)),
                            "a %s from an engine: %s" % (msg.msg_type, e))
        except (KeyError, TypeError, ValueError) as e:
            self.drops.drop("engine %s: malformed" % msg.msg_type,
                            "a malformed %s from an engine: %r" % (msg.msg_type, e))

    def on_reply(self, msg):
        parent_id = msg.parent_id
        now = time.monotonic()
        task = self.table.answered(parent_id, now)
        md = msg.metadata
        if task is None:
            log.debug("reply to a task this hub did not send: %s", parent_id)
            return
        engine = self.engines.get(task.engine)
        if engine is not None and not engine.load:
            self.engine_idle(now)
        ok = md.get("status") == "ok"
        if not ok and task.lb and self._retry(task, msg.content.get("ename"), engine):
            return
        self.carry_out(self.scheduler.finished_task(parent_id, task.engine, ok))
        self.trim_due = True
        content = msg.content if task.coalescer is not None or not ok else None  # JSON read only when needed
        self._to_client(task, msg.frames, msg.msg_type, content, md, msg.buffers)
        if self.watchers:
            self.forward_to_watchers(parent_id, msg.frames)
        self.db.update_record(parent_id, {
            "result_header": msg.parts[0], "result_content": msg.parts[3], "result_metadata": msg.parts[2],
            "result_buffers": msg.buffers, "started": utc(md.get("started")),
            "completed": utc(md.get("completed")), "received": now_utc(), "engine_uuid": md.get("engine_uuid"),
            "stdout": md.get("stdout", ""), "stderr": md.get("stderr", ""), "error": None if ok else content,
        })

    def on_walltime_extended(self, msg):
        """The engine's job was extended: it ends and drains later, so it may take tasks with
        longer timeouts, and ``engine_info`` says its new end."""
        engine = self.table.by_ident.get(msg.idents[0])
        if engine is None:
            return
        c = msg.content
        end_time, drain_at = optional_time(c.get("end_time")), optional_time(c.get("drain_at"))
        engine.end_time = end_time
        self.table.set_drain_at(engine, monotonic_from_epoch(drain_at))
        log.info("engine %d's job was extended: %s%s", engine.id, describe_end(end_time),
                 "; it drains at %s" % clock(drain_at) if drain_at is not None else "")
        self.scheduler.walltime_extended()

    def refuse_engine(self, msg, reason):
        c = msg.content
        log.warning("refused an engine (host %s, pid %s): %s", c.get("hostname", "?"), c.get("pid"), reason)
        self.send("engine", "registration_reply", {"status": "error", "reason": reason},
                  parent=msg.header, idents=[msg.idents[0]])

    def register(self, msg):
        c = msg.content
        ident = msg.idents[0]
        refusal = self.python.refusal("engine", c)
        if refusal is not None:
            return self.refuse_engine(msg, refusal)
        engine = self.table.by_ident.get(ident)
        new = engine is None
        if new:
            eid, refusal = grant_engine_id(c.get("id"), bool(c.get("id_required")), self.engines, self.next_id)
            if refusal:
                return self.refuse_engine(msg, refusal)
            if c.get("id") is not None and eid != c["id"]:
                log.warning("an engine asked for id %s, which %s holds; it gets id %d instead",
                            c["id"], describe_engine(self.engines[c["id"]]), eid)
            heart = c["heart"].encode()
            end_time, drain_at = optional_time(c.get("end_time")), optional_time(c.get("drain_at"))
            engine = EngineState(eid, c["uuid"], ident, heart, c.get("pid"), c.get("hostname", ""),
                                 tags=tag_set(c.get("tags")), job=job_of(c.get("job")), end_time=end_time,
                                 drain_at=monotonic_from_epoch(drain_at))
            self.next_id = max(self.next_id, eid + 1)
            who = "engine %d on host %s, pid %s" % (eid, engine.hostname or "?", engine.pid)
            self.python.admitted(c, who)
            note_other_minipar(who, c)
            self.table.add_engine(engine)
            self.monitor.add(heart)
            log.info("engine %d registered (host %s, pid %s%s%s)", engine.id, engine.hostname, engine.pid,
                     ", %s job %s" % tuple(engine.job) if engine.job else "",
                     ", drains at %s: %s" % (clock(drain_at), describe_end(end_time)) if drain_at is not None else "")
        self.send("engine", "registration_reply",
                  {"status": "ok", "id": engine.id, "heartbeat_period": self.cfg.heartbeat_period,
                   "controller": self.session.id},
                  parent=msg.header, idents=[ident])
        if new:  # after the reply, so clients never know of an engine that does not know its id
            self.engines_version += 1
            self.send("notification", "registration_notification",
                      {"id": engine.id, "uuid": engine.uuid, "version": self.engines_version},
                      idents=[b"engine"])
            self.scheduler.engine_registered(engine.id)
            self.engine_idle(time.monotonic())

    def on_probe(self, msg):
        """The connection doctor's signed probe: answering it proves the key (and the curve server
        key) to whoever holds them, and tells this controller's versions. Nothing is kept, so a
        probe costs the hub one reply and cannot touch the engine table."""
        self.send("engine", "probe_reply",
                  {"status": "ok", **versions(), **self.python.as_content(), "session": self.session.id},
                  parent=msg.header, idents=[msg.idents[0]])

    def on_engine_died(self, msg):
        """A nanny's word that its engine is dead, and why. Replies the engine sent before it
        died may wait on the socket behind this message: they are handled first (and other
        deaths reported meanwhile after them)."""
        if self.deaths is not None:
            self.deaths.append(msg)
            return
        self.deaths = [msg]
        try:
            sock = self.sockets["engine"]
            for _ in range(DRAIN_LIMIT):
                raw = recv_frames(sock, zmq.NOBLOCK)
                if raw is None:
                    break
                self.handle_engine(raw)
            for death in self.deaths:
                c = death.content
                if not isinstance(c.get("uuid"), str) or not isinstance(c.get("reason"), str):
                    self.drops.drop("engine engine_died: malformed", "a malformed engine_died: %r" % (c,))
                    continue
                engine = self.table.by_ident.get(c["uuid"].encode())
                if engine is None:
                    log.debug("engine_died for an engine not registered: %s", c["uuid"])
                else:
                    self.unregister(engine, c["reason"], job_ended=c.get("job_ended") is True)
        finally:
            self.deaths = None

    def on_drain(self, msg):
        """The engine drains before its job ends: it takes nothing new, and gives back what it
        had not started (also what reaches it later): load-balanced tasks go to other engines,
        first in line; direct ones, which only it could run, fail saying so."""
        engine = self.table.by_ident.get(msg.idents[0])
        if engine is None:
            return
        msg_ids = id_list(msg.content.get("msg_ids"))
        if not engine.draining:
            log.info("engine %d drains before its job ends (%s): %d unstarted tasks go elsewhere", engine.id,
                     describe_end(engine.end_time), len(msg_ids))
            self.table.close_engine(engine)
        moving = []
        for task in self.table.take_back(engine, msg_ids):
            if task.abort_requested:
                self.fail_task(task, "TaskAborted", "aborted before it started", status="aborted")
            elif task.lb:
                moving.append(task)
            else:
                self.fail_task(task, "EngineError", "engine %d drained before its job ends (%s) and did not run "
                               "this task, which only it could run" % (engine.id, describe_end(engine.end_time)),
                               engine)
        self.scheduler.returned(moving)

    def heart_stopped(self, engine, period):
        """An engine that stopped answering heartbeats. One past the end of its allocation was
        killed by it: an engine stuck in C code, deaf to SIGTERM, is killed at the batch
        system's KillWait together with its nanny, and nobody is left to say so. Its tasks are
        not at fault, as when it reports the job's end itself."""
        reason = "no heartbeat for %d periods of %gs" % (self.monitor.misses, period)
        ended = engine.end_time is not None and time.time() >= engine.end_time - JOB_END_SLACK
        if ended:
            reason += ", after the end of its allocation at %s" % clock(engine.end_time)
        self.unregister(engine, reason, job_ended=ended)

    def unregister(self, engine, reason, clean=False, job_ended=False):
        """Forget an engine; the tasks it held are answered or retried. ``job_ended``: its
        batch job ended (walltime, cancelled), which is not the tasks' fault: a load-balanced
        task with retries left runs again without using one up."""
        log.log(logging.INFO if clean else logging.WARNING, "engine %d unregistered: %s", engine.id, reason)
        self.monitor.remove(engine.heart)
        if engine.steal is not None:
            thief = self.engines.get(engine.steal)
            if thief is not None:
                thief.stealing = False
        for task in self.table.remove_engine(engine):
            if task.lb and self._retry(task, "EngineError", engine, job_ended):
                continue
            self.fail_task(task, "EngineError",
                           "engine %d died or left before finishing this task (%s)%s"
                           % (engine.id, reason, JOB_END_NOTE if job_ended else ""), engine)
        self.engines_version += 1
        self.send("notification", "unregistration_notification",
                  {"id": engine.id, "uuid": engine.uuid, "reason": reason, "version": self.engines_version},
                  idents=[b"engine"])

    # -- tasks -------------------------------------------------------------------------

    def assign(self, engine, task):
        if task.attempts:  # sent before (a retry, or moved by a steal): an engine drops a signature it has seen
            task.frames = self.session.with_header(task.frames, dict(task.header, attempt=task.attempts))
        self.forward("engine", [engine.ident] + task.frames)
        self.table.assign(engine, task, time.monotonic())

    def request_steal(self, steal):
        """Ask the victim's control thread (free while its main thread runs a task) for the
        prefetched tasks it has not started."""
        victim, thief = steal.victim, steal.thief
        victim.steal = thief.id
        thief.stealing = True
        self.send("engine", "steal_request", {"msg_ids": steal.msg_ids, "thief": thief.id},
                  idents=[victim.uuid.encode() + b":out"])

    def on_steal_reply(self, msg):
        """The tasks the victim gave back never ran there: hand them to the thief, or queue
        them first; one whose abort was asked for meanwhile is answered as aborted."""
        victim = self.table.by_ident.get(msg.idents[0])
        if victim is None:
            return
        thief = self.engines.get(victim.steal) if victim.steal is not None else None
        victim.steal = None
        if thief is not None:
            thief.stealing = False
        taken = self.table.take_back(victim, msg.content.get("msg_ids") or [])
        log.debug("engine %d gave back %d tasks for engine %s", victim.id, len(taken), getattr(thief, "id", None))
        now = time.monotonic()
        moving = []
        for task in taken:
            if task.abort_requested:
                self.fail_task(task, "TaskAborted", "aborted before it started", status="aborted")
            else:
                moving.append(task)
        self.carry_out(self.scheduler.hand_over(moving, thief, self.table, now))
        if not victim.load:
            self.engine_idle(now)
        self.steal_check_at = now

    def _retry(self, task, ename, engine, job_ended=False) -> bool:
        """Send a failed load-balanced task again if it may be; True if it was."""
        engine_id = engine.id if engine is not None else task.engine
        if ename == "UnmetDependency":
            self.scheduler.requeue(task, engine_id, time.monotonic(), unmet=True)
            return True
        if job_ended and task.retries > 0 and task.job_losses < MAX_JOB_LOSSES:
            task.job_losses += 1
            log.info("task %s lost with the end of engine %s's job; sent again (%d retries left, not counted)",
                     task.msg_id, engine_id, task.retries)
            self.scheduler.requeue(task, engine_id, time.monotonic())
            return True
        if task.retries > 0:
            task.retries -= 1
            log.info("task %s failed on engine %s (%s); %d retries left", task.msg_id, engine_id, ename,
                     task.retries)
            self.scheduler.requeue(task, engine_id, time.monotonic())
            return True
        return False

    def fail_task(self, task, ename, evalue, engine=None, status="error"):
        """Answer a task on the engine's behalf, so the client never waits for a dead one."""
        reply_type = task.header.get("msg_type", "apply_request").replace("_request", "_reply")
        now = time.time()
        engine_id = engine.id if engine is not None else None
        content = {"status": status, "ename": ename, "evalue": evalue, "traceback": "",
                   "engine_info": {"engine_id": engine_id, "method": reply_type.split("_")[0]}}
        md = {"engine_id": engine_id, "engine_uuid": engine.uuid if engine else None,
              "started": None, "completed": now, "stdout": "", "stderr": "", "status": status}
        header, frames = self.session.build(reply_type, content, task.header, md)
        self._to_client(task, frames, reply_type, content, md, ())
        if self.watchers:
            self.forward_to_watchers(task.msg_id, frames)
        self.db.update_record(task.msg_id, {"result_header": header, "result_content": content,
                                            "result_metadata": md, "completed": utc(now), "received": now_utc(),
                                            "error": content})
        self.carry_out(self.scheduler.finished_task(task.msg_id, engine_id, False))

    # -- stopping ----------------------------------------------------------------------

    def shutdown(self):
        log.info("controller stopping")
        self.drops.flush()
        if not self.cfg.reuse and self.engines:
            # without --reuse the key and ports die with this controller: its engines could never
            # come back, so they stop now rather than after engine.controller_timeout
            log.info("asking %d engine(s) to stop (they could not reconnect without --reuse)", len(self.engines))
            for engine in self.engines.values():
                self.send("engine", "shutdown_request", {}, idents=[engine.ident])
        self.send("notification", "shutdown_notification", {}, idents=[b"engine"])
        try:
            self.flush()
        except zmq.ZMQError:
            pass
        for sock in self.sockets.values():
            sock.close(linger=200)
        self.ctx.term()
        if self.db is not None:
            self.db.close()


def grant_engine_id(requested, required: bool, engines: dict, next_id: int):
    """``(id, None)`` for a registering engine, or ``(None, reason)`` to refuse it.

    As ipyparallel's hub does: a requested id is granted when no registered engine holds it (so
    the id of an engine that died or left can be asked for again), and the counter moves past it;
    otherwise, or with no request, the engine gets the counter's next id. An engine that
    *requires* its id (``engine.id``) is refused instead of being given another one."""
    if requested is None:
        return next_id, None
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
        return None, "asked for engine id %r, which is not an engine id (a whole number, 0 or more)" % (requested,)
    holder = engines.get(requested)
    if holder is None:
        return requested, None
    if required:
        return None, ("engine id %d is taken by %s; give this engine another id (--id / engine.id), "
                      "or none to get the next free one" % (requested, describe_engine(holder)))
    return next_id, None


def tag_set(value) -> frozenset:
    """Tags from a message: a list of strings, or nothing; a TypeError for anything else."""
    if value is None:
        return frozenset()
    if type(value) is not list or not all(type(t) is str for t in value):
        raise TypeError("tags must be a list of strings, not %.60r" % (value,))
    return frozenset(value)


def optional_time(value):
    """Seconds since the epoch from a message, or None."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def monotonic_from_epoch(when):
    """An engine's time (seconds since the epoch) on this controller's monotonic clock, or None."""
    return None if when is None else time.monotonic() + when - time.time()


def job_of(value):
    """``[system, job id]`` from a registration, or None."""
    if type(value) is list and len(value) == 2 and all(type(v) is str for v in value):
        return tuple(value)
    return None


def clock(epoch) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def describe_end(end_time) -> str:
    """'job ends at 18:53:59, in 58s', for the log and errors."""
    if end_time is None:
        return "job end unknown"
    return "job ends at %s, in %.0fs" % (clock(end_time), end_time - time.time())


def describe_engine(engine) -> str:
    return "engine %d (host %s, pid %s)" % (engine.id, engine.hostname or "?", engine.pid)


def reply_identity(ident: bytes) -> bytes:
    """Clients send from one socket per thread, named '<client>/<n>', and hear on '<client>'."""
    i = ident.find(b"/")
    return ident if i < 0 else ident[:i]
