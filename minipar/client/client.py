"""The Client: a background I/O thread, and user threads that send on sockets of their own.

::

    user threads                          I/O thread (minipar-client-io)
    ------------                          ------------------------------
    view.apply_async(f, ...)              poll([wake pipe, SUB, reply DEALER's fd])
      pack + sign (in the caller)           reply DEALER (identity <session>): when no user
      AsyncResult registered                  thread holds _reply_lock: recv, verify, unpickle,
      own DEALER <session>/<n>.send  -->      AsyncResult._reply (sets the Future)   <-- controller
        (past MAX_THREAD_SOCKETS threads:   outgoing deque -> DEALER <session>/io.send
         outgoing deque + wake pipe)        SUB: engine (un)registration, output chunks
    ar.get(timeout) / ar.wait():
      takes _reply_lock if free and receives on the reply DEALER itself until its result
      is in (delivering any other replies on the way), polling for RECEIVE_SPIN before it
      sleeps; else waits on the Future

The controller answers every request on ``<session>``, the reply DEALER, whatever socket
sent it. zmq sockets are not thread-safe, so the reply DEALER is used only by the holder of
``_reply_lock``; the I/O thread watches the socket's file descriptor, which poll() reads
without touching the socket. A caller that waits receives its own reply: no hand-over from
the I/O thread to the caller, which costs a thread wake-up each way; and one that polls for
a moment before it sleeps often needs no wake-up of its own. While a caller holds the
lock the I/O thread parks (stops watching replies); the caller wakes it on leaving if results
are still outstanding, and a later send wakes it unless the sender is about to wait itself
(a blocking call; one interrupted before it receives wakes it too). The first message,
connect_request, goes out on the reply DEALER itself, so the controller knows that socket
before it answers; the I/O thread sends what later reaches it through the outgoing deque on a
DEALER of its own (``<session>/io``). Serialization and signing happen in the calling thread,
which spreads that cost over the threads that cause it. Buffers sent zero-copy (64 KiB and up)
are tracked on either path: the AsyncResult holds their MessageTrackers (a queued message's
once the I/O thread has sent it), which ``ar.sent`` and ``ar.wait_for_send()`` read.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import warnings
from threading import get_ident
from collections import deque

import zmq

from ..curve import ClientKeys
from ..context import new_context
from ..logs import DropLog, problem_kind
from ..connection import (check_connection_info, connection_file_path, read_connection_file, url,
                          wait_for_connection_file)
from .. import jsonutil
from ..error import (MiniparError, NoEnginesRegistered, ProtocolMismatch, RemoteError, TaskNotFound, TimeoutError,
                     collect_exceptions)
from ..profile import locate_profile_dir
from ..protocol import ProtocolError, Session, broadcast_part_id, recv_frames, send_frames, versions
from ..serialize import deserialize_object
from ..signals import start_without_signals
from .asyncresult import IO_SENDER, AsyncResult, ExecuteReply, error_from_reply
from .engines import ENGINE_TABLE_REFRESH, EngineTable

log = logging.getLogger("minipar.client")

CONNECT_TIMEOUT = 10.0
"""Seconds to wait for the controller's answer to a new client."""

MAX_THREAD_SOCKETS = 32
"""Threads that get a sending socket of their own; later ones hand messages to the I/O thread."""

RECEIVE_POLL_CEILING = 0.5
"""Longest sleep of a thread receiving its own replies before it checks the client is not closing."""

RECEIVE_SPIN = 0.001
"""Seconds a caller waiting for its reply polls before it sleeps (spin, then block, as MPI
and OpenMP runtimes wait). Waking a thread that sleeps costs more than the rest of a round
trip's client side: on a virtual machine its idle CPU must be woken too (a sleeping client
made a round trip 610 µs on this project's 2-CPU machine, a polling one 450 µs). Off with
a single CPU, where polling would only keep the controller and engines from running."""


def _can_spin() -> bool:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return cpus > 1 and hasattr(os, "sched_yield")


def connect_request() -> dict:
    """What a client tells the controller it connects to, or to one it finds restarted: its
    versions, which the controller checks against its own and its engines', and who it is."""
    return dict(versions(), hostname=socket.gethostname(), pid=os.getpid())


HUB_REPLY_TIMEOUT = 30.0
"""Seconds to wait for the controller to answer a query or command."""

WAIT_FOR_ENGINES_TIMEOUT = 60.0
"""Default limit for wait_for_engines: long enough for a batch queue on a quiet system."""


IGNORED_CLIENT_ARGS = ("context", "ipython_dir", "paramiko")
"""ipyparallel's Client arguments that mean nothing here: minipar makes its own zmq context, keeps
profiles in MINIPAR_DIR, and tunnels through the system ssh (never paramiko)."""


def spin_is_not_needed(name: str):
    warnings.warn("%s is not needed: the client's I/O thread receives replies on its own" % name,
                  DeprecationWarning, stacklevel=3)


def _check_purge_args(jobs, targets):
    if not jobs and not targets:
        raise ValueError("purge needs jobs (msg_ids, AsyncResults or 'all') or targets (engine ids)")


class Client:
    """A connection to a controller: the engines, views on them, and their results."""

    def __init__(self, url_file=None, profile=None, profile_dir=None, cluster_id=None,
                 sshserver=None, timeout=CONNECT_TIMEOUT, sshkey=None, cluster=None, debug=False, **kwargs):
        for alias in ("connection_info", "url_or_file"):
            if kwargs.get(alias):
                url_file = kwargs.pop(alias)
        for k in IGNORED_CLIENT_ARGS:
            kwargs.pop(k, None)
        if kwargs.pop("password", None):
            raise TypeError("Client(password=...): minipar tunnels through the system ssh, which cannot take "
                            "a password from Python; use an ssh key or agent (sshkey=...)")
        if kwargs:
            raise TypeError("Client() got unexpected keyword argument(s): %s" % ", ".join(sorted(kwargs)))
        self.cluster = cluster
        self.debug = debug
        self.block = False
        self.profile = profile or "default"
        if isinstance(url_file, dict):
            self.url_file = None
            self._info = check_connection_info(dict(url_file), "Client(connection_info)")
        else:
            if url_file is None:
                pdir = locate_profile_dir(profile, profile_dir, create=False)
                url_file = connection_file_path(pdir, "client", cluster_id or "")
                if timeout:  # a client started with its controller may look before the file is written
                    wait_for_connection_file(url_file, timeout)
            self.url_file = str(url_file)
            self._info = read_connection_file(url_file, hint="Is the controller running for this profile"
                                                            " and cluster id?")
        self._sshkey = sshkey
        self._curve = ClientKeys(self._info)
        self._drops = DropLog(log)
        self.session = Session(self._info["key"])
        self._engines = EngineTable()
        self._futures: dict = {}
        self._pending_replies: dict = {}
        self._also: dict = {}
        self.metadata: dict = {}
        self._local = threading.local()
        self._thread_sockets: list = []
        self._sockets_lock = threading.Lock()
        self._outgoing: deque = deque()
        self._closed = False
        self._tunnel = None
        self.results: dict = {}
        self.history: list = []
        urls = self._urls(sshserver or self._info.get("ssh", ""))
        self._url = urls["client"]
        self._ctx = new_context()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._reply_lock = threading.Lock()
        self._spin = RECEIVE_SPIN if _can_spin() else 0.0
        self._reply_socket = None
        self._reply_poller = None
        self._io_parked = False
        self._io = threading.Thread(target=self._io_loop, args=(urls,), name="minipar-client-io", daemon=True)
        self._connected = threading.Event()
        self._connect_reply = None
        self._controller_session = None
        self._session_lock = threading.Lock()
        start_without_signals(self._io)
        self._handshake(timeout)

    # -- connecting --------------------------------------------------------------------

    def _urls(self, ssh):
        names = ("client", "notification")
        if not ssh:
            return {n: url(self._info, n) for n in names}
        from ..tunnel import open_tunnel
        self._tunnel, local = open_tunnel(ssh, self._info["location"],
                                          {n: self._info["ports"][n] for n in names}, identity=self._sshkey)
        return {n: "tcp://127.0.0.1:%d" % local[n] for n in names}

    def _handshake(self, timeout):
        header, frames = self.session.build("connect_request", connect_request())
        self._connect_id = header["msg_id"]
        # Through the I/O thread's own socket: the controller answers there, and a reply that
        # overtook that socket's connection would be dropped as unroutable.
        self._send(frames, via_io_thread=True)
        if not self._connected.wait(timeout):
            self.close()
            raise TimeoutError(
                "no controller answered at %s within %gs. Is it running? If it was restarted without --reuse, "
                "%s is stale (its key no longer matches)." % (self._url, timeout, self.url_file))
        reply = self._connect_reply
        if reply.get("status") != "ok":
            self.close()
            raise ProtocolMismatch("the controller at %s refused this client: %s"
                                   % (self._url, reply.get("reason", "no reason given")))
        self._controller_session = reply.get("session")

    def _take_engines(self, connect_reply):
        self._engines.replace({int(k): v for k, v in connect_reply["engines"].items()},
                              connect_reply.get("engines_version"))

    def _refresh_engines(self, via_io_sender=False):
        """Ask the controller for its whole engine table, without waiting: applied when it comes."""
        def apply(reply):
            if reply.content.get("status") == "ok":
                self._engines.replace({int(k): e["uuid"] for k, e in reply.content["engines"].items()},
                                      reply.content.get("engines_version"))

        self._hub_request("engine_info_request", {}, block=False, on_reply=apply, via_io_sender=via_io_sender)

    def _check_controller(self, msg):
        """Notice a controller restarted with ``--reuse`` (same ports and key, a new session)
        from a message it sent itself. The tasks this client still waits for were in flight in
        its predecessor: the new one is asked for them, sends those it has (finished before
        the crash and kept by a database, or submitted to it since), and names the rest, which
        fail here with TaskNotFound instead of being waited for forever."""
        session = msg.header.get("session")
        if session == self._controller_session or self._controller_session is None:
            return
        with self._session_lock:
            if session == self._controller_session:
                return
            previous, self._controller_session = self._controller_session, session
        log.warning("the controller at %s restarted (session %s, was %s); asking it about %d tasks in flight",
                    self._url, session, previous, len(self._futures))

        self._engines.new_controller()

        def engines_now(reply):
            if reply.content.get("status") == "ok":
                self._take_engines(reply.content)
            else:
                log.warning("the restarted controller at %s refused this client: %s", self._url,
                            reply.content.get("reason", "no reason given"))

        self._hub_request("connect_request", connect_request(), block=False, via_io_sender=True, on_reply=engines_now)
        if self._futures:
            self._fetch_remote(list(self._futures), "the controller restarted while this task was in flight: ",
                               via_io_sender=True)

    # -- the I/O thread ----------------------------------------------------------------

    def _send(self, frames, buffers=(), via_io_thread=False, caller_waits=False, ar=None, via_io_sender=False):
        """Send from the calling thread on its own socket; the controller answers on the I/O
        thread's socket, whose identity prefixes this one. Saves waking the I/O thread.

        A parked I/O thread (see :meth:`_receive_until`) is woken to listen for the reply,
        unless the caller is about to wait for it and so will receive it itself. ``ar``, the
        AsyncResult of the message, learns when ZeroMQ stops reading the caller's buffers
        and which socket carried it (``ar.wait_for_send()``); ``via_io_sender`` sends on
        the socket the I/O thread sends for threads without their own."""
        sock = False if via_io_thread or via_io_sender else getattr(self._local, "socket", None)
        if sock is None:
            sock = self._thread_socket()
        if sock is False:
            if ar is not None:
                ar._sending()
                ar._sent_by = IO_SENDER
            self._outgoing.append((frames, buffers, via_io_thread, ar))
            self._wake_io()
        else:
            trackers = [] if ar is not None else None
            send_frames(sock, frames, buffers, trackers)
            if ar is not None:
                ar._sent_by = get_ident()
                if trackers:
                    ar._track(trackers)
            if self._io_parked and not caller_waits:
                self._wake_io()

    def _confirm_received(self, ar, deadline) -> None:
        """Return once the controller has ``ar``'s messages (``ar.wait_for_send()``).

        ZeroMQ keeps a socket's messages in order, so when the answer to a ``sync_request``
        sent on the socket that carried them comes, the controller has read them all. From
        a thread other than the sender that socket is not ours to use: the controller is
        asked for the tasks' status instead until it knows them all (or they are done)."""
        by = ar._sent_by
        if by is None:
            return
        left = lambda: HUB_REPLY_TIMEOUT if deadline is None else max(0.0, deadline - time.monotonic())  # noqa: E731
        if by == IO_SENDER or by == get_ident():
            self._hub_request("sync_request", {}, timeout=left(), via_io_sender=by == IO_SENDER)
            return
        while not ar.done():
            reply = self._hub_request("result_status_request", {"msg_ids": list(ar.msg_ids)}, timeout=left(),
                                      refusal_ok=True)
            c = reply.content
            if c.get("status") == "ok" and not c.get("missing"):
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("%s: the controller has not received it yet" % ar._fname)
            ar.wait(0.02)

    def _wake_io(self):
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def _thread_socket(self):
        with self._sockets_lock:
            if self._closed or len(self._thread_sockets) >= MAX_THREAD_SOCKETS:
                self._local.socket = False
                return False
            sock = self._ctx.socket(zmq.DEALER)
            self._curve.apply(sock.setsockopt)
            sock.setsockopt(zmq.IDENTITY, self.session.bid + b"/%d" % len(self._thread_sockets))
            sock.setsockopt(zmq.LINGER, 1000)
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.connect(self._url)
            self._thread_sockets.append(sock)
            self._local.socket = sock
            return sock

    def _io_loop(self, urls):
        dealer = self._ctx.socket(zmq.DEALER)
        self._curve.apply(dealer.setsockopt)
        dealer.setsockopt(zmq.IDENTITY, self.session.bid)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.SNDHWM, 0)
        dealer.setsockopt(zmq.RCVHWM, 0)
        dealer.connect(urls["client"])
        sub = self._ctx.socket(zmq.SUB)
        self._curve.apply(sub.setsockopt)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.connect(urls["notification"])
        # The reply socket is watched through its file descriptor, which poll() reads without
        # touching the socket: the thread holding _reply_lock may be using it meanwhile.
        reply_fd = dealer.getsockopt(zmq.FD)
        self._reply_poller = zmq.Poller()
        self._reply_poller.register(reply_fd, zmq.POLLIN)
        self._reply_socket = dealer
        sender = None
        poller = zmq.Poller()
        poller.register(self._wake_r, zmq.POLLIN)
        poller.register(sub, zmq.POLLIN)
        poller.register(reply_fd, zmq.POLLIN)
        watching, more = True, False
        outgoing = self._outgoing
        try:
            while not self._closed:
                events = dict(poller.poll(0 if more else None))
                if self._wake_r in events:
                    os.read(self._wake_r, 65536)
                while outgoing:
                    frames, buffers, on_reply_socket, ar = outgoing.popleft()
                    if on_reply_socket:
                        with self._reply_lock:
                            send_frames(dealer, frames, buffers)
                        more = True  # the send may have consumed the descriptor's signal
                        continue
                    if sender is None:
                        sender = self._ctx.socket(zmq.DEALER)
                        self._curve.apply(sender.setsockopt)
                        sender.setsockopt(zmq.IDENTITY, self.session.bid + b"/io")
                        sender.setsockopt(zmq.LINGER, 1000)
                        sender.setsockopt(zmq.SNDHWM, 0)
                        sender.connect(urls["client"])
                    trackers = [] if ar is not None else None
                    send_frames(sender, frames, buffers, trackers)
                    if ar is not None:
                        ar._sent(trackers)
                if more or not watching or reply_fd in events:
                    # Park (stop watching replies) when a waiting thread receives them itself;
                    # it wakes this thread when it stops. _io_parked is set before trying the
                    # lock, so a receiver releasing it always sees that it must wake us.
                    self._io_parked = True
                    if self._reply_lock.acquire(False):
                        try:
                            self._io_parked = False
                            more = self._drain(dealer, self._on_reply)
                        finally:
                            self._reply_lock.release()
                        if not watching:
                            poller.register(reply_fd, zmq.POLLIN)
                            watching = True
                    else:
                        more = False
                        if watching:
                            poller.unregister(reply_fd)
                            watching = False
                if sub in events:
                    self._drain(sub, self._on_notification)
        finally:
            with_lock = self._reply_lock.acquire(timeout=RECEIVE_POLL_CEILING * 2)
            self._reply_socket = None
            dealer.close(linger=0)
            sub.close(linger=0)
            if sender is not None:
                sender.close(linger=1000)
            if with_lock:
                self._reply_lock.release()

    def _drain(self, sock, handle) -> bool:
        """Handle what is waiting on sock; True when it stopped at the limit with more left."""
        for _ in range(1000):
            raw = recv_frames(sock, zmq.NOBLOCK)
            if raw is None:
                return False
            try:
                msg = self.session.parse(raw)
                handle(msg)
            except ProtocolError as e:
                self._drops.drop(problem_kind(e), "a message from the controller: %s" % e)
            except Exception:  # noqa: BLE001 - the I/O thread must outlive one bad message
                log.exception("error handling a %s message", raw[0] if raw else "?")
        return True

    def _receive_until(self, future, timeout=None):
        """Receive replies in the calling thread until future is done or timeout passes.

        Only when no other thread holds the reply socket: then the reply does not go
        through the I/O thread and a wake-up of this one, which is most of a round
        trip's cost on a small machine. Replies for other futures are delivered too."""
        if future.done() or self._closed or not self._reply_lock.acquire(False):
            return
        try:
            dealer, poller = self._reply_socket, self._reply_poller
            if dealer is None:
                return
            now = time.monotonic()
            deadline = None if timeout is None else now + timeout
            spin_until = now + self._spin
            while not future.done() and not self._closed:
                if self._drain(dealer, self._on_reply):
                    continue
                if future.done():
                    break
                now = time.monotonic()
                wait = RECEIVE_POLL_CEILING
                if deadline is not None:
                    wait = min(wait, deadline - now)
                    if wait <= 0:
                        break
                if now < spin_until:
                    os.sched_yield()  # _drain asks the socket again
                    continue
                poller.poll(wait * 1000)
        finally:
            self._reply_lock.release()
            self._hand_back()

    def _hand_back(self):
        """Wake a parked I/O thread when results are still to come: no thread receives them."""
        if self._io_parked and (self._futures or self._pending_replies or self._closed):
            self._wake_io()

    def _on_reply(self, msg):
        parent_id = msg.parent_id
        if msg.msg_type == "connect_reply" and parent_id == self._connect_id:
            self._connect_reply = msg.content
            if msg.content.get("status") == "ok":
                self._take_engines(msg.content)
            self._connected.set()
            return
        ar = self._futures.pop(parent_id, None)
        if ar is None:
            callback = self._pending_replies.pop(parent_id, None)
            if callback is not None:
                self._check_controller(msg)
                callback(msg)
            return
        status = msg.status
        self._deliver_result(ar, parent_id, msg.msg_type, status,
                             None if status == "ok" and msg.msg_type == "apply_reply" else msg.content,
                             msg.metadata, msg.buffers)

    def _deliver_result(self, ar, parent_id, msg_type, status, content, md, buffers):
        """content: the reply's, which an ok apply_reply does not need (None then)."""
        also = self._also.pop(parent_id, ()) if self._also else ()
        if status == "ok" and msg_type == "execute_reply":
            value, error = ExecuteReply(parent_id, content, ar._metadata[parent_id]), None
        elif status == "ok":
            try:
                value = deserialize_object(buffers)
            except Exception as e:  # noqa: BLE001 - becomes the task's error, the thread goes on
                info = {"engine_id": md.get("engine_id"), "engine_uuid": md.get("engine_uuid"),
                        "method": msg_type.split("_")[0]}
                value, error = None, RemoteError(type(e).__name__, "result could not be unpickled on the client: "
                                                 "%s" % e, "", info)
            else:
                error = None
        else:
            value, error = None, error_from_reply(content, md)
        self.results[parent_id] = value if error is None else error
        for each in (ar, *also):
            each._reply(parent_id, md, value, error)
        self.metadata[parent_id] = ar._metadata[parent_id]

    def _on_broadcast_reply(self, part_ids, msg):
        """A coalescing broadcast's one reply, split into its parts; or the controller's
        error for the whole request, which is then every part's error."""
        if msg.msg_type == "broadcast_reply":
            buffers, start = msg.buffers, 0
            for part in msg.content["replies"]:
                stop = start + part["nbuffers"]
                ar = self._futures.pop(part["msg_id"], None)
                if ar is not None:
                    content = part["content"]
                    self._deliver_result(ar, part["msg_id"], part.get("msg_type", "apply_reply"), content.get("status"),
                                         content, part["metadata"], buffers[start:stop])
                start = stop
            return
        for part_id in part_ids:
            ar = self._futures.pop(part_id, None)
            if ar is not None:
                self._deliver_result(ar, part_id, msg.msg_type, msg.content.get("status"), msg.content, msg.metadata, [])

    def _on_notification(self, msg):
        t = msg.msg_type
        if t == "stream":
            ar = self._futures.get(msg.parent.get("msg_id"))
            if ar is not None:
                c = msg.content
                ar._stream(msg.parent["msg_id"], c.get("name", "stdout"), c.get("text", ""), c.get("engine_id"))
        elif t == "registration_notification" or t == "unregistration_notification":
            self._check_controller(msg)
            c = msg.content
            if self._engines.news(t == "registration_notification", c["id"], c.get("uuid"), c.get("version")):
                self._refresh_engines(via_io_sender=True)
        elif t == "shutdown_notification":
            log.info("the controller is shutting down")

    # -- submitting ----------------------------------------------------------------------

    def _submit(self, msg_type, items, ar_factory, caller_waits=False, count=None):
        """Sign and hand over one message per (content, metadata, buffers); register the
        AsyncResult first, so a fast reply always finds it. Each message is sent as soon as
        it is built, so the first tasks run while the rest are being signed; items may be
        an iterator of ``count`` items made as they are taken (a map's chunks, pickled one
        by one). One that fails to be made stops the submission: the tasks already sent are
        aborted, the AsyncResult forgotten, and the error raised. caller_waits: the caller
        waits for the result at once (a blocking call), so it receives the reply itself; of
        several messages, the I/O thread takes the replies that come while it still sends."""
        session = self.session
        msg_ids = [session.new_msg_id() for _ in range(len(items) if count is None else count)]
        ar = ar_factory(msg_ids)
        self._futures.update(dict.fromkeys(msg_ids, ar))
        caller_waits = caller_waits and len(msg_ids) == 1
        sent = 0
        try:
            for msg_id, (content, md, bufs) in zip(msg_ids, items):
                header, frames = session.build(msg_type, content, None, md, msg_id=msg_id)
                ar._set_submitted(msg_id, header["date"])
                self._send(frames, bufs, caller_waits=caller_waits, ar=ar)
                sent += 1
            if sent < len(msg_ids):
                raise ValueError("%d messages to send, but only %d were given" % (len(msg_ids), sent))
        except BaseException:
            for msg_id in msg_ids:
                self._futures.pop(msg_id, None)
            if sent:
                log.warning("%d of %d tasks were sent before the submission failed; aborting them", sent, len(msg_ids))
                try:
                    self._hub_request("abort_request", {"msg_ids": msg_ids[:sent], "targets": None}, False)
                except Exception as e:  # noqa: BLE001 - the submission's own error is the one to raise
                    log.warning("could not abort them: %s", e)
            raise
        finally:
            self.history.extend(msg_ids[:sent])
        if not msg_ids:
            ar._finish()
        return ar

    def _submit_broadcast(self, msg_type, content, buffers, targets, coalescing, ar_factory):
        """One message for several engines: the controller sends it to each, and each
        engine's part is answered under its own msg_id (``<msg_id>_<engine id>``)."""
        header, frames = self.session.build(msg_type, content, None,
                                            {"broadcast": list(targets), "coalescing": bool(coalescing)})
        msg_id = header["msg_id"]
        part_ids = [broadcast_part_id(msg_id, t) for t in targets]
        ar = ar_factory(part_ids)
        for part_id in part_ids:
            ar._set_submitted(part_id, header["date"])
            self._futures[part_id] = ar
            self.history.append(part_id)
        self._pending_replies[msg_id] = lambda msg: self._on_broadcast_reply(part_ids, msg)
        ar.add_done_callback(lambda _: self._pending_replies.pop(msg_id, None))
        self._send(frames, buffers, ar=ar)
        return ar

    # -- the public interface --------------------------------------------------------------

    @property
    def ids(self) -> list:
        return self._engines.ids()

    def wait_for_engines(self, n=None, timeout=WAIT_FOR_ENGINES_TIMEOUT, block=True):
        """Wait until at least n engines are registered (default: any)."""
        n = 1 if n is None else n
        if timeout is None or timeout < 0:
            timeout = float("inf")
        deadline = time.monotonic() + timeout
        while True:
            with self._engines.changed:
                if len(self._engines) >= n:
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("%d of %d engines registered within %gs with the controller at %s; "
                                       "check the engines' logs" % (len(self._engines), n, timeout, self._url))
                changed = self._engines.changed.wait(min(left, ENGINE_TABLE_REFRESH))
            if not changed:
                self._refresh_engines()

    def __len__(self):
        return len(self.ids)

    def _resolve(self, targets) -> list:
        ids = self.ids
        if targets is None or targets == "all":
            if not ids:
                raise NoEnginesRegistered("no engines are registered; start some, or wait with "
                                          "rc.wait_for_engines(n)")
            return ids
        if isinstance(targets, int):
            targets = [targets]
        elif isinstance(targets, slice):
            targets = ids[targets]
        targets = list(targets)
        missing = [t for t in targets if t not in self._engines]
        if missing:
            raise IndexError("engine(s) %s are not registered (registered: %s)" % (missing, ids))
        if not targets:
            raise NoEnginesRegistered("no engines selected (registered: %s)" % ids)
        return targets

    def __getitem__(self, key):
        from .view import DirectView
        ids = self.ids
        if isinstance(key, int):
            if not ids:
                raise NoEnginesRegistered("no engines are registered")
            if key < 0:
                key = ids[key]
            if key not in ids:
                raise IndexError("engine %d is not registered (registered: %s)" % (key, ids))
            return DirectView(self, key)
        if isinstance(key, slice):
            targets = ids[key]
            if not targets:
                raise NoEnginesRegistered("no engines in %s (registered: %s)" % (key, ids))
            return DirectView(self, targets)
        if isinstance(key, (list, tuple, range)):
            return DirectView(self, self._resolve(key))
        raise TypeError("engines are selected by int, slice or list of ints, not %s" % type(key).__name__)

    def direct_view(self, targets="all", tags=None, **flags):
        """A view of ``targets``; ``flags`` (block, track, ...) set on it, as ipyparallel's kwargs.
        ``tags``: only those of the targets registered now with every one of these tags."""
        from .view import DirectView
        if tags is not None:
            targets = self._tagged(targets, tags)
        return DirectView(self, targets, **flags)

    def _tagged(self, targets, tags) -> list:
        from .view import check_tags
        wanted = set(check_tags(tags))
        ids = [i for i, e in self.engine_info(targets).items() if wanted <= set(e["tags"])]
        if not ids:
            raise NoEnginesRegistered("no registered engine%s has tags %s (engine.tags); engines by their tags: %s"
                                      % ("" if targets in (None, "all") else " among %s" % (targets,), sorted(wanted),
                                         self._tags_by_engine()))
        return ids

    def _tags_by_engine(self) -> str:
        return ", ".join("%d: %s" % (i, e["tags"]) for i, e in self.engine_info().items()) or "no engines"

    def engine_info(self, targets=None) -> dict:
        """Each registered engine (or each of ``targets``) by id: ``host``, ``pid``, ``uuid``,
        ``tags``, ``job`` (``{"system", "id"}`` of the batch job it runs in, or None),
        ``end_time`` (when that job ends, seconds since the epoch), ``remaining`` (seconds left
        of it), ``drain_at`` and ``draining`` (see engine.drain_before), ``load`` (tasks it
        holds) and ``completed``."""
        content = {} if targets in (None, "all") else {"targets": self._resolve(targets)}
        reply = self._hub_request("engine_info_request", content)
        return {int(k): v for k, v in sorted(reply.content["engines"].items(), key=lambda kv: int(kv[0]))}

    def executor(self, targets=None, **kwargs):
        """A concurrent.futures.Executor running submissions on a load-balanced view."""
        return self.load_balanced_view(targets).executor

    def activate(self, targets="all", suffix=""):
        """Register %px and friends in IPython for a blocking view on targets."""
        view = self.direct_view(targets)
        view.block = True
        view.activate(suffix)
        return view

    def broadcast_view(self, targets="all", is_coalescing=False, **kwargs):
        """A DirectView whose requests go to the controller as one message, which it sends
        on to each engine; with is_coalescing it also answers with one message."""
        from .view import BroadcastView
        return BroadcastView(self, self._resolve(targets), is_coalescing=is_coalescing, **kwargs)

    def load_balanced_view(self, targets=None, **flags):
        """A view balancing over ``targets`` (None or "all": every engine); ``flags`` (retries,
        timeout, after, follow, tags, block, ...) set on it, as ipyparallel's kwargs. With
        ``tags``, tasks run only on engines that have every one of them (engine.tags), also
        on those that register later; with none registered yet, a warning says so."""
        from .view import LoadBalancedView
        view = LoadBalancedView(self, None if targets == "all" else targets, **flags)
        if view.tags and not any(set(view.tags) <= set(e["tags"]) for e in self.engine_info().values()):
            warnings.warn("no registered engine has tags %s yet: tasks wait until one registers (engines by "
                          "their tags: %s)" % (view.tags, self._tags_by_engine()), stacklevel=2)
        return view

    @property
    def outstanding(self) -> set:
        return set(self._futures)

    def wait(self, jobs=None, timeout=-1) -> bool:
        """Wait for jobs (AsyncResults, msg_ids, history indices; default: all outstanding)."""
        import concurrent.futures
        from .view import futures_for
        futures = set(self._futures.values()) if jobs is None else futures_for(self, jobs)
        done, not_done = concurrent.futures.wait(futures, None if timeout is None or timeout < 0 else timeout)
        return not not_done

    def _hub_request(self, msg_type, content, block=True, timeout=HUB_REPLY_TIMEOUT, on_reply=None, buffers=(),
                     via_io_sender=False, refusal_ok=False):
        """Ask the controller something; its reply message (or None when not blocking).

        on_reply(msg) runs in the I/O thread before any later message is handled; a refusal
        raises unless ``refusal_ok``."""
        done = threading.Event()
        box = []
        header, frames = self.session.build(msg_type, content)

        def answered(msg):
            if on_reply is not None:
                try:
                    on_reply(msg)
                except Exception:  # noqa: BLE001 - the I/O thread must outlive a bad reply
                    log.exception("error handling a %s", msg.msg_type)
            box.append(msg)
            done.set()

        self._pending_replies[header["msg_id"]] = answered
        self._send(frames, buffers, via_io_sender=via_io_sender)
        if not block:
            return None
        if not done.wait(timeout):
            self._pending_replies.pop(header["msg_id"], None)
            raise TimeoutError("the controller at %s did not answer a %s within %gs" % (self._url, msg_type, timeout))
        reply = box[0]
        if reply.content.get("status") not in ("ok", None) and not refusal_ok:
            raise MiniparError("the controller refused a %s: %s" % (msg_type, reply.content.get("reason", "")))
        return reply

    def _target_ids(self, targets):
        return None if targets is None or targets == "all" else self._resolve(targets)

    # -- results kept by the controller --------------------------------------------------

    def get_result(self, indices_or_msg_ids=None, block=None, owner=False):
        """An AsyncResult for tasks by msg_id (or index into this client's history), also
        tasks another client submitted: fetched from the controller when not known here.

        As in ipyparallel its get() is one value for one msg_id, index or single-result
        AsyncResult, and a list for a list (even of one); block=True waits before returning it."""
        if indices_or_msg_ids is None:
            indices_or_msg_ids = -1
        job = indices_or_msg_ids
        single = isinstance(job, (str, int)) or (isinstance(job, AsyncResult) and job._single)
        ids = self._msg_ids(indices_or_msg_ids)
        ar = AsyncResult(self, ids, "get_result", single=single)
        remote = []
        for msg_id in ids:
            if msg_id in self.metadata:
                stored = self.results.get(msg_id)
                ar._metadata[msg_id].update(self.metadata[msg_id])
                failed = self.metadata[msg_id].get("status") != "ok"
                ar._deliver(msg_id, None if failed else stored, stored if failed else None)
            elif msg_id in self._futures:
                self._also.setdefault(msg_id, []).append(ar)
            else:
                remote.append(msg_id)
        if remote:
            for msg_id in remote:
                self._futures[msg_id] = ar
            self._fetch_remote(remote)
        if block:
            ar.wait()
        return ar

    def _fetch_remote(self, msg_ids, why="", via_io_sender=False):
        """Ask the controller for tasks whose AsyncResults wait in ``_futures``: it sends the
        results it has and watches those still running; the ones it names as missing fail."""
        def missing(msg):
            for msg_id, reason in (msg.content.get("missing") or {}).items():
                ar = self._futures.pop(msg_id, None)
                if ar is not None:
                    ar._deliver(msg_id, error=TaskNotFound(why + reason))

        self._hub_request("result_request", {"msg_ids": msg_ids}, block=False, on_reply=missing,
                          via_io_sender=via_io_sender)

    def result_status(self, msg_ids, status_only=True) -> dict:
        """{'pending': [...], 'completed': [...]} as the controller knows them; with
        status_only=False also the results of the completed ones, keyed by msg_id. As in
        ipyparallel, a failed one raises: its RemoteError for one msg_id, else a CompositeError."""
        ids = self._msg_ids(msg_ids)
        reply = self._hub_request("result_status_request", {"msg_ids": ids})
        status = {"status": "ok", "pending": reply.content["pending"], "completed": reply.content["completed"]}
        if reply.content.get("missing"):
            status["missing"] = reply.content["missing"]
        if not status_only and status["completed"]:
            results = self.get_result(status["completed"], block=False).get(return_exceptions=True)
            status.update(zip(status["completed"], results))
            failures = [r for r in results if isinstance(r, RemoteError)]
            if failures and len(ids) == 1:
                raise failures[0]
            collect_exceptions(failures, "result_status")
        return status

    def resubmit(self, indices_or_msg_ids=None, block=None):
        """Run finished tasks again; an AsyncResult for the new tasks, whose get() is a list
        with one result per task (even for one, as in ipyparallel); block=True waits for it."""
        ids = self._msg_ids(-1 if indices_or_msg_ids is None else indices_or_msg_ids)
        box = []

        def register(msg):
            mapping = msg.content.get("resubmitted") or {}
            new_ids = [mapping[m] for m in ids if m in mapping]
            ar = AsyncResult(self, new_ids, "resubmit", single=False)
            for msg_id in new_ids:
                self._futures[msg_id] = ar
                self.history.append(msg_id)
            box.append(ar)

        self._hub_request("resubmit_request", {"msg_ids": ids}, on_reply=register)
        if block:
            box[0].wait()
        return box[0]

    def purge_results(self, jobs=(), targets=()):
        """Forget finished tasks, here and in the controller's database: jobs, every task of
        engines (targets), or jobs='all'."""
        self.purge_local_results(jobs, targets)
        self.purge_hub_results(jobs, targets)

    def purge_hub_results(self, jobs=(), targets=()):
        """Forget finished tasks in the controller's database only."""
        _check_purge_args(jobs, targets)
        content = {"all": jobs == "all", "msg_ids": [] if jobs == "all" else self._msg_ids(jobs or []),
                   "targets": self._resolve(targets) if targets else []}
        self._hub_request("purge_request", content)

    def purge_local_results(self, jobs=(), targets=()):
        """Forget finished tasks' results and metadata kept by this client; the controller
        still has them for get_result. Tasks still running cannot be purged."""
        _check_purge_args(jobs, targets)
        if jobs == "all":
            doomed = set(self.results) | set(self.metadata)
        else:
            doomed = set(self._msg_ids(jobs or []))
            if targets:
                engines = set(self._resolve(targets))
                doomed.update(m for m, md in self.metadata.items() if md.get("engine_id") in engines)
        running = doomed & self.outstanding if jobs != "all" else self.outstanding
        if running:
            raise RuntimeError("can't purge tasks that are still outstanding: %s" % ", ".join(sorted(running)))
        for msg_id in doomed:
            self.results.pop(msg_id, None)
            self.metadata.pop(msg_id, None)

    def purge_everything(self):
        """purge_results('all'), and forget this client's history too."""
        self.purge_results("all")
        self.history = []

    def hub_history(self) -> list:
        """Every msg_id the controller's database holds, oldest first."""
        return self._hub_request("history_request", {}).content["history"]

    def db_query(self, query: dict, keys=None) -> list:
        """Task records matching a Mongo-style query ($lt, $gt, $in, $exists, ...), with only
        ``keys`` if given; dates as datetimes, buffers as bytes."""
        buffers: list = []
        reply = self._hub_request("db_request", {"query": jsonutil.encode(query, buffers), "keys": keys})
        return jsonutil.decode(reply.content["records"], reply.buffers)

    def shutdown(self, targets="all", restart=False, hub=False, block=True):
        """Stop engines (and the controller with hub=True)."""
        if restart:
            raise NotImplementedError("engines cannot be restarted through the controller; use "
                                      "Cluster.restart_engines, which starts new processes")
        self._hub_request("shutdown_request", {"targets": self._target_ids(targets), "hub": bool(hub)}, block)

    def queue_status(self, targets=None, verbose=False) -> dict:
        """Per engine: tasks queued directly ('queue'), load-balanced ones ('tasks') and
        'completed'; plus 'unassigned' tasks the controller still holds."""
        reply = self._hub_request("queue_request", {"targets": self._target_ids(targets), "verbose": verbose})
        c = reply.content
        status = {int(k): v for k, v in c["engines"].items()}
        if isinstance(targets, int):
            return status.get(targets, {})
        status["unassigned"] = c["unassigned"]
        return status

    def _msg_ids(self, jobs) -> list:
        """msg_ids from AsyncResults, msg_ids, or int indexes into this client's history."""
        if jobs is None:
            return None
        if isinstance(jobs, (str, int, AsyncResult)):
            jobs = [jobs]
        ids = []
        for job in jobs:
            if isinstance(job, AsyncResult):
                ids.extend(job.msg_ids)
            elif isinstance(job, str):
                ids.append(job)
            elif isinstance(job, int):
                ids.append(self.history[job])
            else:
                raise TypeError("jobs are AsyncResults or msg_id strings, not %s" % type(job).__name__)
        return ids

    def abort(self, jobs=None, targets=None, block=True):
        """Abort tasks that have not started: the given jobs, or everything queued on targets."""
        self._hub_request("abort_request", {"msg_ids": self._msg_ids(jobs), "targets": self._target_ids(targets)},
                          block)

    def clear(self, targets=None, block=True):
        """Empty the engines' namespaces."""
        self._hub_request("clear_request", {"targets": self._target_ids(targets)}, block)

    def send_signal(self, sig, targets=None, block=True):
        """Send a signal to engine processes (SIGINT interrupts the running task)."""
        self._hub_request("signal_request", {"signal": int(sig), "targets": self._target_ids(targets)}, block)

    def wait_interactive(self, jobs=None, interval=1.0, timeout=-1.0):
        """Wait for jobs (default: everything outstanding), showing progress."""
        from .view import futures_for
        pending = set(self._futures.values()) if jobs is None else futures_for(self, jobs)
        if not pending:
            return
        return AsyncResult.join(*pending).wait_interactive(interval=interval, timeout=timeout)

    def spin(self):
        """Does nothing: replies arrive on the I/O thread without being asked (kept for
        scripts written for ipyparallel, where it is deprecated for the same reason)."""
        spin_is_not_needed("Client.spin")

    def spin_thread(self, interval=1):
        """Does nothing, as spin."""
        spin_is_not_needed("Client.spin_thread")

    def stop_spin_thread(self):
        """Does nothing, as spin."""
        spin_is_not_needed("Client.stop_spin_thread")

    def close(self, linger=None):
        if self._closed:
            return
        with self._sockets_lock:
            self._closed = True
            for sock in self._thread_sockets:
                sock.close(linger=1000)
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        self._io.join(5)
        while self._outgoing:  # never to be sent: nothing reads their buffers any more
            ar = self._outgoing.popleft()[3]
            if ar is not None:
                ar._sent(())
        self._ctx.term()
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self._tunnel is not None:
            self._tunnel.terminate()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter teardown
            pass

    def __repr__(self):
        return "<Client %s engines=%s>" % (self._url, self.ids)
