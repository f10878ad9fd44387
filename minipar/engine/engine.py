"""An engine: connect, register, then run requests one at a time in the main thread.

Threads and sockets::

    main thread   DEALER (identity = uuid) -> controller engine port: registration,
                  requests in, replies out; SUB (conflated) on the ping port to watch
                  that the controller lives
    heart         zmq device (C, no GIL): SUB on ping port -> DEALER to pong port, in a
                  context of its own (the others' I/O thread runs SCHED_BATCH: minipar.context)
    side channel  SideChannel: its own DEALER, output chunks of the running task, and
                  signal and steal requests

Requests are read into a local queue between tasks, so control messages (shutdown)
are seen without waiting for the queued work. SIGINT interrupts the running task (the
client gets KeyboardInterrupt as a RemoteError) and is ignored while idle; SIGTERM
stops the engine, and the unregistration says so (also when it comes with a SIGINT, as
bkill sends them: then the task fails with the engine's stop, not as interrupted). Both
usually come through the nanny (:mod:`.nanny`), the engine's parent, which tells the
controller when the engine dies without unregistering.

The controller prefetches tasks to an engine, and may take back those it has not
started (a steal) for an engine that is idle. The steal request comes to the side
channel's thread, which is free while the main thread runs a task: the main thread holds
``socket_lock`` (the DEALER and the local queue) at all times except while user code
runs, so the side channel then takes the lock, reads what waits on the socket into the
queue, removes the asked tasks still queued and answers ``steal_reply`` with their ids.
When the main thread is idle or between tasks it answers the steal itself, woken by a
pipe. A task is taken from the queue under the lock either to run or to give back,
never both, so no task runs twice and none is lost.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque

import zmq
from zmq.devices import ThreadDevice

from ..connection import url
from ..context import new_context
from ..curve import ClientKeys
from ..error import ControllerLost, EngineStartError, ProtocolError, StoppedWhileRegistering
from ..logs import DropLog, problem_kind
from ..signals import drain_fd, signal_wakeup_fd, start_without_signals
from ..protocol import Session, id_list, recv_frames, versions
from .execute import EngineStop, SideChannel, TaskRunner, format_error, new_namespace, ok_apply_json, send_reply
from ..jobs import current_job, in_batch_job
from .walltime import Walltime, extended

log = logging.getLogger("minipar.engine")

POLL_INTERVAL = 0.2
"""Seconds between liveness checks while idle."""


DUPLICATE_SIGNAL_WINDOW = 0.5
"""Seconds in which a second SIGINT is the same interrupt again, not a new one: a batch
system's signal to a job step (scancel --signal, qsig) reaches every process of it, so the
engine gets it once directly and once more from its nanny, which would interrupt the code
that reports the first."""

SIGTERM_AFTER_SIGINT = 0.1
"""Seconds an interrupted task's reply waits for a SIGTERM sent together with the SIGINT."""

DRAIN_CHECK = 60.0
"""Longest sleep of the drain timer: the clock is looked at again at least this often."""

WALLTIME_SLACK = 60.0
"""Seconds before its job's end from which a SIGTERM is taken to be the walltime's."""

MAX_PING = 200
"""Bytes a heartbeat may have: the controller's session id, ':' and a count."""

UNANSWERED_AFTER_PINGS = 30.0
"""Seconds a controller whose heartbeats arrive may take to answer the registration when
registration_timeout is 0 (no limit); after that its key is taken to differ."""


class Engine:
    def __init__(self, cfg, info: dict, connection_file: str = ""):
        self.cfg = cfg
        self.info = info
        self.connection_file = connection_file
        self.uuid = str(uuid.uuid4())
        self.session = Session(info["key"])
        self.id = None
        self.controller_session = None
        self.queue: deque = deque()
        self.deferred: deque = deque()  # control messages the side channel read for the main thread
        self.socket_lock = threading.Lock()
        self.steal_lock = threading.Lock()
        self.steal_request = None
        self.wake = os.pipe()  # the output or drain thread wakes an idle main thread through it
        self.aborted: set = set()
        self.stopping = False
        self.namespace = new_namespace()
        self.preset: dict = {}  # names a cleared namespace starts with again (engine.mpi's MPI)
        self.requested_id = None  # engine.id, or the MPI rank
        self.id_required = False  # True for engine.id: refused rather than given another id
        self.tunnel = None
        self.registration_sent = False
        self.registration_msg_id = None
        self.refusal = None  # the controller's reason, once it refused this engine
        self.last_sigint = float("-inf")
        self.stop_reason = "engine shut down"
        self.nanny = None  # NannyLink, when the launched process is this engine's nanny
        self.job_ended = False  # stopped by the batch system (walltime, cancelled): not the tasks' fault
        self.walltime = Walltime(current_job(), None, None, False)
        self.drain_due = False  # the drain timer's request, carried out under socket_lock
        self.walltime_news = False  # the drain timer's: the job was extended, to tell the controller
        self.draining = False
        self.drops = DropLog(log)

    # -- connecting --------------------------------------------------------------------

    def urls(self) -> dict:
        names = ("engine", "hb_ping", "hb_pong")
        ssh = self.cfg.ssh_server or self.info.get("ssh", "")
        if not ssh:
            return {n: url(self.info, n) for n in names}
        from ..tunnel import open_tunnel
        remote = self.info["location"]
        self.tunnel, local = open_tunnel(ssh, remote, {n: self.info["ports"][n] for n in names})
        log.info("tunnelling through %s (ssh pid %d)", ssh, self.tunnel.pid)
        return {n: "tcp://127.0.0.1:%d" % local[n] for n in names}

    def connect(self):
        self.ctx = new_context()
        u = self.urls()
        self.url = u["engine"]
        keys = ClientKeys(self.info)
        self.socket = self.ctx.socket(zmq.DEALER)
        keys.apply(self.socket.setsockopt)
        self.socket.setsockopt(zmq.IDENTITY, self.uuid.encode())
        self.socket.setsockopt(zmq.LINGER, 2000)
        self.socket.setsockopt(zmq.SNDHWM, 0)
        self.socket.setsockopt(zmq.RCVHWM, 0)
        self.socket.connect(u["engine"])
        self.socket_lock.acquire()  # the main thread's, except while user code runs
        self.pings = self.ctx.socket(zmq.SUB)
        keys.apply(self.pings.setsockopt)
        self.pings.setsockopt(zmq.CONFLATE, 1)
        self.pings.setsockopt(zmq.SUBSCRIBE, b"")
        self.pings.setsockopt(zmq.LINGER, 0)
        self.pings.connect(u["hb_ping"])
        heart_id = (self.uuid + ":heart").encode()
        self.heart = ThreadDevice(zmq.FORWARDER, zmq.SUB, zmq.DEALER)
        keys.apply(self.heart.setsockopt_in)
        keys.apply(self.heart.setsockopt_out)
        self.heart.setsockopt_in(zmq.SUBSCRIBE, b"")
        self.heart.setsockopt_out(zmq.IDENTITY, heart_id)
        self.heart.connect_in(u["hb_ping"])
        self.heart.connect_out(u["hb_pong"])
        self.heart.daemon = True
        start_without_signals(self.heart)
        self.heart_id = heart_id
        self.side_channel = SideChannel(self.ctx, u["engine"], self.info["key"], (self.uuid + ":out").encode(),
                                        on_steal=self.steal_requested, curve_keys=keys)
        start_without_signals(self.side_channel)
        self.runner = TaskRunner(self.namespace, self.side_channel)

    def request_registration(self) -> dict:
        w = self.walltime
        content = {"uuid": self.uuid, "heart": self.heart_id.decode(), **versions(), "pid": os.getpid(),
                   "hostname": socket.gethostname(), "tags": list(self.cfg.tags),
                   "job": list(w.job) if w.job else None, "end_time": w.end_time, "drain_at": w.drain_at}
        if self.requested_id is not None:
            content.update(id=self.requested_id, id_required=self.id_required)
        self.registration_sent = True
        header = self.session.send(self.socket, "registration_request", content)
        self.registration_msg_id = header["msg_id"]
        return header

    def register(self, timeout: float, waited: float = 0.0):
        """Send a registration request and wait for the answer, queueing anything else.

        ``timeout`` 0 means no limit: the controller may start later (``--reuse`` files);
        ZeroMQ holds the request until it binds. Once its heartbeats arrive it must answer
        within UNANSWERED_AFTER_PINGS even then, since a controller that hears us but never
        answers has another key. ``waited``: seconds of the budget already spent waiting
        for the connection file."""
        self.request_registration()
        log.debug("asked the controller at %s to register this engine", self.url)
        if timeout <= 0:
            log.info("waiting with no limit for the controller at %s (engine.registration_timeout = 0)", self.url)
        deadline = time.monotonic() + timeout - waited if timeout > 0 else float("inf")
        heard_pings = False
        first_ping = last_ping = 0.0
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self.pings, zmq.POLLIN)
        while True:
            now = time.monotonic()
            left = deadline - now
            if self.stopping:
                raise StoppedWhileRegistering("stopped before the controller at %s answered" % self.url)
            if left <= 0:
                raise EngineStartError(self._no_answer(timeout, heard_pings))
            if timeout <= 0 and heard_pings and now - first_ping > UNANSWERED_AFTER_PINGS:
                raise EngineStartError(self._no_answer(UNANSWERED_AFTER_PINGS, heard_pings))
            if heard_pings and now - last_ping > self.cfg.controller_timeout:
                raise ControllerLost(
                    "lost the controller at %s while registering: its heartbeats stopped for %gs "
                    "(engine.controller_timeout) before it answered" % (self.url, self.cfg.controller_timeout))
            for sock, _ in poller.poll(min(left, POLL_INTERVAL) * 1000):
                if sock is self.pings:
                    self.pings.recv()
                    if not heard_pings:
                        log.debug("the controller's heartbeats arrive; waiting for its answer")
                        first_ping = time.monotonic()
                    heard_pings = True
                    last_ping = time.monotonic()
                    continue
                msg = self._recv()
                if msg is None:
                    continue
                self._queue_or_handle(msg)
                if self.refusal is not None:
                    raise EngineStartError("the controller at %s refused this engine: %s" % (self.url, self.refusal))
                if self.id is not None:
                    self.last_ping = time.monotonic()
                    return self.id

    def _no_answer(self, timeout, heard_pings):
        source = self.connection_file or "the connection file"
        if heard_pings:
            return ("the controller at %s is running (its heartbeats arrive) but did not answer the signed "
                    "registration within %gs: the key in %s does not match. The file is probably stale: was "
                    "the controller restarted without --reuse? Copy the new engine connection file."
                    % (self.url, timeout, source))
        return ("no controller answered at %s within %gs (engine.registration_timeout). Likely causes: the "
                "controller is not running; %s is from an older controller (restart it with --reuse, or copy "
                "the new file); the address is not reachable from this host (controller --ip/--location, "
                "firewall; use --ssh to tunnel)." % (self.url, timeout, source))

    # -- serving -----------------------------------------------------------------------

    def _recv(self):
        try:
            return self.session.recv(self.socket, zmq.NOBLOCK)
        except ProtocolError as e:
            self.drops.drop(problem_kind(e), "a message from the controller: %s" % e)
            return None

    def _drain(self, defer=False):
        """Read what waits on the socket: tasks into the queue, the rest handled now, or
        kept for the main thread when the side channel reads (``defer``)."""
        while self.deferred and not defer:
            self._queue_or_handle(self.deferred.popleft())
        while True:
            raw = recv_frames(self.socket, zmq.NOBLOCK)
            if raw is None:
                return
            try:
                msg = self.session.parse(raw)
            except ProtocolError as e:
                self.drops.drop(problem_kind(e), "a message from the controller: %s" % e)
                continue
            if defer and msg.msg_type != "apply_request" and msg.msg_type != "execute_request":
                self.deferred.append(msg)
            else:
                self._queue_or_handle(msg)

    # -- steals ------------------------------------------------------------------------

    def steal_requested(self, msg):
        """In the side channel: answer now if the main thread runs user code, else let it."""
        with self.steal_lock:
            self.steal_request = msg
        try:
            os.write(self.wake[1], b"s")
        except OSError:
            pass
        while self.steal_request is not None and not self.stopping:
            if self.socket_lock.acquire(timeout=0.01):
                try:
                    self.answer_steal(defer=True)
                finally:
                    self.socket_lock.release()

    def answer_steal(self, defer=False):
        """Give back the asked tasks still queued; the caller holds socket_lock."""
        with self.steal_lock:
            msg, self.steal_request = self.steal_request, None
        if msg is None:
            return
        self._drain(defer=defer)
        wanted = set(msg.content.get("msg_ids") or ())
        taken = [m.msg_id for m in self.queue if m.msg_id in wanted]
        if taken:
            given = set(taken)
            self.queue = deque(m for m in self.queue if m.msg_id not in given)
        self.session.send(self.socket, "steal_reply", {"msg_ids": taken}, parent=msg.header)

    # -- draining before the allocation ends --------------------------------------------

    def start_drain_timer(self):
        """A thread that sleeps until the drain time, then has the engine drain (see steals:
        the main thread may be running user code)."""
        if self.walltime.drain_at is None:
            return
        log.info("this engine drains at %s (%s)", clock(self.walltime.drain_at), self.describe_end())
        start_without_signals(threading.Thread(target=self._drain_timer, name="minipar-drain", daemon=True))

    def _drain_timer(self):
        while not self.stopping:
            left = self.walltime.drain_at - time.time()
            if left > 0:
                time.sleep(min(left, DRAIN_CHECK))
                continue
            later = extended(self.walltime, self.cfg.drain_before)
            if later is not None:
                self.walltime = later
                self._with_socket("walltime_news", self.tell_walltime)
                continue
            self._with_socket("drain_due", lambda: self.begin_drain(defer=True))
            return

    def _with_socket(self, flag, action):
        """From the drain timer: have ``action`` done with the engine's socket. The main thread
        does it at its next look (``flag`` set), or this thread does, as soon as the main one
        runs user code and so leaves the socket free."""
        setattr(self, flag, True)
        try:
            os.write(self.wake[1], b"t")
        except OSError:
            pass
        while getattr(self, flag) and not self.stopping:
            if self.socket_lock.acquire(timeout=0.01):
                try:
                    if getattr(self, flag):
                        action()
                finally:
                    self.socket_lock.release()

    def tell_walltime(self):
        """Tell the controller when the (extended) job now ends and this engine drains."""
        self.walltime_news = False
        w = self.walltime
        self.session.send(self.socket, "walltime_notification", {"end_time": w.end_time, "drain_at": w.drain_at})

    def begin_drain(self, defer=False):
        """Take no new tasks; give back those queued. The caller holds socket_lock."""
        self.drain_due = False
        self._drain(defer=defer)
        given = [m.msg_id for m in self.queue]
        self.queue.clear()
        self.draining = True
        log.info("draining before the end of the allocation (%s): giving back %d queued tasks; "
                 "finishing the running one", self.describe_end(), len(given))
        self.session.send(self.socket, "drain_notification", {"msg_ids": given, "end_time": self.walltime.end_time})

    def describe_end(self) -> str:
        w = self.walltime
        end = "ends at %s" % clock(w.end_time) if w.end_time is not None else "end unknown"
        return "%s %s" % (w.describe_job(), end) if w.job else "engine.end_time: %s" % end

    def at_walltime(self) -> str:
        """What to say of a SIGTERM that comes when the job reaches its walltime, else ""."""
        w = self.walltime
        if w.job is None or w.end_time is None or time.time() < w.end_time - WALLTIME_SLACK:
            return ""
        return " in %s: the job reached its walltime (%s)" % (w.describe_job(), clock(w.end_time))

    def _queue_or_handle(self, msg):
        t = msg.msg_type
        if t == "apply_request" or t == "execute_request":
            if self.draining:  # sent before the controller heard of the drain: it goes elsewhere
                self.session.send(self.socket, "drain_notification",
                                  {"msg_ids": [msg.msg_id], "end_time": self.walltime.end_time})
            else:
                self.queue.append(msg)
            return
        try:
            self._handle_control(msg)
        except ProtocolError as e:
            self.drops.drop("%s: %s" % (t, problem_kind(e)), "a message from the controller (%s): %s" % (t, e))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            self.drops.drop("%s: malformed" % t, "a malformed message from the controller (%s): %r" % (t, e))

    def _handle_control(self, msg):
        t = msg.msg_type
        if t == "shutdown_request":
            log.info("shutdown requested by the controller")
            self.stopping = True
        elif t == "abort_request":
            self.abort(id_list(msg.content.get("msg_ids"), none_ok=True))
        elif t == "clear_request":
            self.namespace.clear()
            self.namespace.update(new_namespace())
            self.namespace.update(self.preset)
        elif t == "registration_reply":
            if msg.parent.get("msg_id") != self.registration_msg_id:
                raise ValueError("not the answer to this engine's registration request")
            c = msg.content
            if c.get("status") == "ok":
                eid, session = c["id"], c["controller"]
                if type(eid) is not int or type(session) is not str:
                    raise TypeError("id %r and controller %r are not an int and a str" % (eid, session))
                if self.id is not None and eid != self.id:
                    log.info("registered again as engine %s", eid)
                self.id = eid
                self.controller_session = session.encode()
                if self.nanny is not None:
                    self.nanny.registered(self)
            else:
                self.refusal = str(c.get("reason") or "no reason given")
                if self.id is not None:  # while registering, register() raises it
                    log.error("the controller refused this engine: %s", self.refusal)
                self.stopping = True
        else:
            self.drops.drop("unexpected message type", "a message from the controller of unexpected type %.80r" % t)

    def _check_controller(self) -> bool:
        """Read the newest ping; re-register with a new controller; False if it is gone too long."""
        try:
            ping = self.pings.recv(zmq.NOBLOCK)
        except zmq.Again:
            ping = None
        now = time.monotonic()
        if ping is not None:
            session, _, count = ping.partition(b":")
            if not (session and count.isdigit() and len(ping) <= MAX_PING):
                self.drops.drop("malformed heartbeat", "a heartbeat that is not SESSION:NUMBER: %.40r" % ping)
                return now - self.last_ping < self.cfg.controller_timeout
            self.last_ping = now
            if session != self.controller_session:
                log.info("a new controller is serving at %s; registering again", self.url)
                self.controller_session = session
                self.request_registration()
        return now - self.last_ping < self.cfg.controller_timeout

    def abort(self, msg_ids):
        """Answer queued requests as aborted; remember ids that have not arrived yet."""
        if msg_ids is None:
            doomed, self.queue = list(self.queue), deque()
        else:
            wanted = set(msg_ids)
            doomed = [m for m in self.queue if m.msg_id in wanted]
            self.queue = deque(m for m in self.queue if m.msg_id not in wanted)
            self.aborted.update(wanted - {m.msg_id for m in doomed})
        for msg in doomed:
            self.reply_aborted(msg)

    def reply_aborted(self, msg):
        now = time.time()
        content = {"status": "aborted", "ename": "TaskAborted", "evalue": "aborted before it started",
                   "traceback": "", "engine_info": {"engine_id": self.id, "engine_uuid": self.uuid,
                                                    "method": msg.msg_type.split("_")[0]}}
        md = {"started": None, "completed": now, "stdout": "", "stderr": "", "status": "aborted",
              "engine_id": self.id, "engine_uuid": self.uuid}
        send_reply(self.session, self.socket, msg.msg_type.replace("_request", "_reply"), msg.header, content, md, [])

    def run_one(self, msg):
        if msg.msg_id in self.aborted:
            self.aborted.discard(msg.msg_id)
            self.reply_aborted(msg)
            return
        t = msg.msg_type
        reply_type = "apply_reply" if t == "apply_request" else "execute_reply"
        self.socket_lock.release()
        try:
            if t == "apply_request":
                content, md, buffers = self.runner.apply(msg.header, self.id, msg.buffers)
            else:
                content, md, buffers = self.runner.execute(msg.header, self.id, msg.content.get("code", ""),
                                                           bool(msg.content.get("silent", True)))
        except ProtocolError as e:
            content, md, buffers = format_error(e, 0), {"started": time.time(), "completed": time.time()}, []
        finally:
            self.socket_lock.acquire()
        if content.get("ename") == "KeyboardInterrupt" and self.sigterm_follows():
            raise EngineStop  # SIGINT with SIGTERM (bkill, a job's end): the task is lost to the stop
        if reply_type == "apply_reply" and md["status"] == "ok":
            content, md = ok_apply_json(self.id, self.uuid, md)
        else:
            content["engine_info"] = {"engine_id": self.id, "engine_uuid": self.uuid, "method": t.split("_")[0]}
            md["engine_id"] = self.id
            md["engine_uuid"] = self.uuid
        send_reply(self.session, self.socket, reply_type, msg.parts[0], content, md, buffers)

    def sigterm_follows(self) -> bool:
        """After a task's KeyboardInterrupt: whether a SIGTERM came with the SIGINT, as LSF's
        bkill and some batch systems' job ends send them, one right after the other. Then the
        job is ending and the task is lost to that, not interrupted by the user."""
        deadline = time.monotonic() + SIGTERM_AFTER_SIGINT
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.stopping and "SIGTERM" in self.stop_reason

    def serve(self) -> int:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self.pings, zmq.POLLIN)
        wakeup = signal_wakeup_fd()
        poller.register(wakeup, zmq.POLLIN)
        wake = self.wake[0]
        os.set_blocking(wake, False)
        poller.register(wake, zmq.POLLIN)
        self.start_drain_timer()
        while not self.stopping:
            if self.steal_request is not None:
                self.answer_steal()
            if self.walltime_news:
                self.tell_walltime()
            if self.drain_due:
                self.begin_drain()
            if self.draining and not self.queue:
                self.stop_reason = "engine drained before the end of its allocation (%s)" % self.describe_end()
                log.info("%s; leaving", self.stop_reason)
                return 0
            if self.queue:
                try:
                    self.run_one(self.queue.popleft())
                except EngineStop:
                    return 0
                self._drain()
                continue
            ready = dict(poller.poll(POLL_INTERVAL * 1000))
            if wakeup in ready:
                drain_fd(wakeup)
            if wake in ready:
                drain_fd(wake)
            self._drain()
            if not self._check_controller():
                log.error("lost the controller at %s: no heartbeat for %gs (engine.controller_timeout); "
                          "exiting", self.url, self.cfg.controller_timeout)
                return 3
            if self.nanny is not None and not self.nanny.nanny_alive():
                log.error("the engine's nanny (pid %d) is gone; stopping", self.nanny.nanny_pid)
                self.stop_reason = "engine shut down: its nanny process (pid %d) is gone" % self.nanny.nanny_pid
                return 1
        return 0

    # -- signals and stopping ------------------------------------------------------------

    def install_signal_handlers(self):
        def on_sigint(signum, frame):
            if self.id is None:
                raise KeyboardInterrupt
            if not self.runner.executing:
                log.info("SIGINT while idle: ignored (send SIGTERM to stop the engine)")
                return
            now = time.monotonic()
            if now - self.last_sigint < DUPLICATE_SIGNAL_WINDOW:
                return
            self.last_sigint = now
            raise KeyboardInterrupt

        def on_sigterm(signum, frame):
            if self.stop_reason != "engine shut down":
                return  # a second SIGTERM (a batch system signals every process of the job) while stopping
            self.job_ended = self.walltime.job is not None
            self.stop_reason = "engine shut down: stopped by SIGTERM%s" % (
                self.at_walltime() or in_batch_job("SIGTERM"))
            self.stopping = True
            if self.runner.executing:
                raise EngineStop

        signal.signal(signal.SIGINT, on_sigint)
        signal.signal(signal.SIGTERM, on_sigterm)

    def close(self):
        if not hasattr(self, "socket"):
            if self.tunnel is not None:
                self.tunnel.terminate()
            return
        try:
            # also when stopped before the answer came: the controller may have registered us
            # already, and it knows us by our socket identity
            if self.registration_sent:
                self.session.send(self.socket, "unregistration_request",
                                  {"id": self.id, "reason": self.stop_reason, "job_ended": self.job_ended})
        except zmq.ZMQError:
            pass
        if self.nanny is not None:
            self.nanny.tell(unregistered=True)
        self.side_channel.close()
        self.side_channel.join(1)
        self.drops.flush()
        self.side_channel.drops.flush()
        self.socket.close(linger=1000)
        self.pings.close(linger=0)
        self.ctx.term()
        if self.tunnel is not None:
            self.tunnel.terminate()
        log.info("engine %s stopped", self.id)


def clock(epoch) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def run_startup(cfg, namespace):
    if cfg.startup_script:
        path = os.path.expanduser(cfg.startup_script)
        with open(path) as f:
            code = compile(f.read(), path, "exec")
        exec(code, namespace)
    if cfg.startup_command:
        exec(compile(cfg.startup_command, "<startup_command>", "exec"), namespace)


def exit_engine(code: int):
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
