"""The wire protocol: how every minipar message is framed, signed and checked.

A message is a zmq multipart message::

    [*routing_ids, b"<IDS|MSG>", envelope, *buffers]
    envelope = signature "\n" header "\n" parent "\n" metadata "\n" content

``header``, ``parent``, ``metadata`` and ``content`` are compact JSON objects (no raw
newline: JSON escapes it inside strings), joined by newlines into the envelope's body.
``signature`` is the hex HMAC-SHA256 of that body under the cluster key (empty without
one); ``buffers`` are raw payload frames (pickles and out-of-band buffers from
:mod:`serialize`) that only the engines and clients ever interpret. The controller
verifies, reads the header and metadata, and forwards the original frames untouched, so a
payload is never unpickled on the way. Jupyter's layout sends the signature and the four
JSON parts as five frames; one frame instead saves each process over half of its frame sends
and receives (the transport's CPU per task, 63 µs before, 39 after: ``benchmarks/bench_floor.py``).
Protocol 1 used Jupyter's layout; :meth:`Session.parse` refuses its messages as such.

Header: ``msg_id`` (the sender's session id plus a counter), ``msg_type``, ``session``
and ``date`` (seconds since the epoch, float).

Message types (C = client, H = controller/hub, E = engine, N = an engine's nanny,
D = ``python -m minipar.doctor``, P = notification PUB):

========================== ========= ===========================================================
msg_type                   path      meaning / content
========================== ========= ===========================================================
connect_request            C→H       ``{protocol, python, minipar, hostname, pid}`` (:func:`versions`
                                     and who asks); asks for the engine table
connect_reply              H→C       ``{status, engines: {id: uuid}, engines_version, session,
                                     protocol, python, minipar, cluster_python, reason?}``:
                                     ``engines_version`` counts the engine (un)registrations so
                                     far (see registration_notification); ``cluster_python`` is the
                                     Python minor version every engine and client must run (set by
                                     the first to join, :mod:`controller.versions`); status error
                                     when the protocol or that version differs
apply_request              C→H→E     run ``f(*args, **kwargs)``: buffers are the packed call;
                                     metadata ``{dest: id}`` (direct) or load-balanced flags
                                     ``{targets?, tags?, after?, follow?, timeout?, retries?}``
execute_request            C→H→E     ``{code, silent}`` run in the engine's namespace; routed as
                                     apply. execute_reply adds ``{execution_count}`` and metadata
                                     ``execute_result`` (the last expression's repr, unless silent)
apply_reply                E→H→C     ``{status: ok|error|aborted, ename?, evalue?, traceback?,
execute_reply                        engine_info?: {engine_id, engine_uuid?, method}}``;
                                     buffers hold the pickled result; metadata
                                     ``{engine_id, engine_uuid, started, completed, stdout,
                                     stderr}``. The hub writes the same shape itself (status
                                     error, ename EngineError) for work lost with an engine,
                                     and for a task it cannot place (ename TaskTimeout,
                                     ImpossibleDependency, InvalidDependency).
apply_request /            C→H→E     a broadcast: metadata ``{broadcast: [ids], coalescing: bool}``.
execute_request                      One message from the client; the hub sends it to each engine
(broadcast)                          in ``broadcast`` as its own task ``<msg_id>_<engine id>``
                                     (:func:`broadcast_part_id`): a re-signed header over the
                                     same JSON parts and payload frames (:meth:`Session.with_header`)
broadcast_reply            H→C       a coalescing broadcast's replies as one message, once every
                                     engine answered (or was lost): content ``{status, replies:
                                     [{msg_id, msg_type, content, metadata, nbuffers}]}`` in
                                     ``broadcast`` order; buffers are the replies' buffers, in turn;
                                     metadata ``{engine_ids, status}``. Without coalescing each
                                     engine's apply_reply/execute_reply is forwarded as it comes
stream                     E→H→P     ``{name: stdout|stderr, text}`` while a task runs; parent is
                                     the request's header
shutdown_request           C→H       ``{targets: [...] | null, hub: bool}``
shutdown_reply             H→C       ``{status, engines}``
shutdown_request           H→E       stop after the current task
queue_request              C→H       ``{targets, verbose}``; queue_reply ``{status, engines: {id:
                                     {queue, tasks, completed}}, unassigned}`` (counts, or msg_ids
                                     when verbose)
abort_request              C→H→E     ``{msg_ids | null, targets}``: tasks not yet started end as
                                     aborted (the hub answers those it holds); abort_reply
                                     ``{status, aborted_in_hub}``
clear_request              C→H→E     ``{targets}``: the engines' namespaces are reset; clear_reply
                                     ``{status, engines}``
signal_request             C→H→E     ``{signal}``, delivered to each engine's side channel
                                     (identity ``<uuid>:out``), free while a task runs;
                                     signal_reply ``{status, engines}``
steal_request              H→E       ``{msg_ids, thief}`` to the engine's side channel: give
                                     back those of these prefetched tasks not yet started
steal_reply                E→H       ``{msg_ids}``: the tasks given back, removed from the
                                     engine's queue (never run there); parent is the request
result_request             C→H       ``{msg_ids}``: each stored result is sent as the reply it was
                                     (re-signed, new msg_id); result_reply ``{status, pending,
                                     completed, missing: {msg_id: reason}}``
result_status_request      C→H       ``{msg_ids}``; result_status_reply ``{status, pending,
                                     completed, missing}``
engine_info_request        C→H       ``{targets?}``; engine_info_reply ``{status, engines_version,
                                     engines: {id: {uuid, host, pid, tags, job: {system, id}?,
                                     end_time?, remaining?, drain_at?, draining, load,
                                     completed}}}`` (times in seconds since the epoch; remaining:
                                     seconds left of its job)
sync_request               C→H       ``{}``; sync_reply ``{status}``, sent once the hub has handled
                                     every message the same socket sent before (ZeroMQ keeps a
                                     connection's order): ``ar.wait_for_send()``
history_request            C→H       history_reply ``{status, history: [msg_id, ...]}``
db_request                 C→H       ``{query, keys}``; db_reply ``{status, records}`` (JSON with
                                     buffers and dates encoded by :mod:`jsonutil`)
purge_request              C→H       ``{msg_ids, targets, all}``; purge_reply ``{status}``
resubmit_request           C→H       ``{msg_ids}``; resubmit_reply ``{status, resubmitted: {old:
                                     new}}``, then each task runs again under its new msg_id
error_reply                H→C       ``{status: error, reason}`` for an unknown msg_type; every
                                     ``*_reply`` above may carry status error and a reason
registration_request       E→H       ``{uuid, heart, protocol, python, minipar, pid, hostname, tags,
                                     job?, end_time?, drain_at?, id?, id_required?}``: ``id`` asks for
                                     that engine id (the MPI rank, or ``engine.id``, which sets
                                     ``id_required``); ``job`` is ``[system, job id]`` of the
                                     batch job it runs in; ``end_time`` when that job (or
                                     ``engine.end_time``) ends and ``drain_at`` when the engine
                                     will drain, in seconds since the epoch
registration_reply         H→E       ``{status, id, heartbeat_period, controller, reason?}``;
                                     status error when the protocol or the Python minor
                                     version differs (as for connect_reply) or a required id is
                                     taken
unregistration_request     E→H       ``{id, reason?, job_ended?}``: the engine is leaving cleanly
                                     (reason: why, e.g. "engine shut down: stopped by SIGTERM
                                     ..."); ``job_ended``: its batch job is ending, so the tasks
                                     it held are retried without using up their retries
drain_notification         E→H       ``{msg_ids, end_time}``: the engine drains before its job
                                     ends: it takes no new tasks and gives back these unstarted
                                     ones (sent again for tasks that reach it later)
walltime_notification      E→H       ``{end_time, drain_at}``: the batch system extended the engine's
                                     job (noticed when it was about to drain); when it now ends
                                     and drains, in seconds since the epoch
engine_died                N→H       ``{uuid, id, reason, job_ended?}`` from the engine's nanny
                                     (N, its parent process): the engine ended without
                                     unregistering, and why (signal, exit code, out-of-memory
                                     killer, the end of its batch job)
probe_request              D→H       ``{protocol, python, minipar}`` on the engine port from the
                                     connection doctor (D, :mod:`doctor`): proves the key (and the
                                     curve server key) without registering; nothing is kept
probe_reply                H→D       ``{status, protocol, python, minipar, cluster_python,
                                     session}``: this controller's protocol, Python and minipar
                                     versions, the cluster's Python minor version (None until a
                                     peer joins) and session id; parent is the request. A badly
                                     signed probe is dropped unanswered
registration_notification  H→P       ``{id, uuid, version}``: ``version`` is the controller's count of
                                     engine (un)registrations, this one included: a client applies
                                     what is newer than its table, and asks for the table again
                                     when it sees one was missed (a SUB misses what is published
                                     before its subscription arrives)
unregistration_notification H→P      ``{id, uuid, reason, version}``
shutdown_notification      H→P       the controller is stopping
========================== ========= ===========================================================

Heartbeats are not signed messages: the controller PUBlishes single frames
``b"<controller session>:<counter>"`` and each engine's heart device (C code, no GIL)
echoes them back on a DEALER, so the controller's ROUTER sees ``[heart_id, ping]``. A
change of the session part tells an engine that a new controller (``--reuse``) has taken
over and it must register again.

Anything unsigned, wrongly signed, replayed, truncated or unparseable raises
:class:`ProtocolError` from :meth:`Session.parse`; callers log it, count it and go on.
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import json.scanner
import re
import sys
import time
import uuid

import zmq

from . import __version__ as MINIPAR_VERSION
from .error import ProtocolError
from .replay import ReplayGuard

PROTOCOL_VERSION = "2"
DELIM = b"<IDS|MSG>"
SIGNATURE_SCHEME = "hmac-sha256"

REPLAY_HISTORY = 1 << 16
"""Signatures the replay guard remembers at least (:mod:`replay`): a few seconds of traffic at
full speed, hours at an idle pace; Jupyter's Session (ipyparallel's) keeps the same 2**16.
Bounds what it costs a controller: 2 MB at most."""

_json_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_scan_json = json.scanner.make_scanner(json.JSONDecoder())
_EMPTY = b"{}"


def _json_loads(data):
    """json.loads for the compact UTF-8 frames minipar writes, at half its cost: the C scanner
    straight on the text (json.loads first guesses the encoding of bytes and strips whitespace
    with regular expressions). Anything else goes to json.loads, which accepts or rejects it."""
    try:
        text = data.decode("utf8") if isinstance(data, bytes) else data
        value, end = _scan_json(text, 0)
    except (StopIteration, UnicodeDecodeError, AttributeError, TypeError):
        return json.loads(data)
    if end != len(text):
        return json.loads(data)
    return value


_PLAIN_NAME = re.compile(r"[a-z_]+\Z").match
"""Names that are the same bytes as JSON strings: every msg_type minipar sends."""


def json_bytes(value) -> bytes:
    return _json_dumps(value).encode("utf8")


def _json_part(value) -> bytes:
    if not value:
        return _EMPTY
    return value if type(value) is bytes else _json_dumps(value).encode("utf8")


def python_version() -> str:
    return "%d.%d.%d" % sys.version_info[:3]


def python_minor(version: str) -> str:
    """The minor version ("3.11") of a full one ("3.11.7"): what must match for bytecode to load."""
    return ".".join(version.split(".")[:2])


def versions() -> dict:
    """The versions every connect, registration and probe carries, for the controller to check."""
    return {"protocol": PROTOCOL_VERSION, "python": python_version(), "minipar": MINIPAR_VERSION}


def new_key() -> str:
    return str(uuid.uuid4())


class Message:
    """A received message; JSON parts are decoded on first use.

    ``frames`` keeps everything after the routing ids (delimiter, envelope, buffers) so the
    controller can forward a message without re-encoding it; ``parts`` are the envelope's
    four JSON parts (header, parent, metadata, content) as bytes.
    """

    __slots__ = ("idents", "frames", "header", "parts", "_parent", "_metadata", "_content")

    def __init__(self, idents, frames, header, parts=None):
        self.idents = idents
        self.frames = frames
        self.header = header
        self.parts = parts if parts is not None else envelope_parts(frames[1])[1]
        self._parent = self._metadata = self._content = None

    @property
    def msg_type(self) -> str:
        return self.header["msg_type"]

    @property
    def msg_id(self) -> str:
        return self.header["msg_id"]

    def _json(self, index):
        try:
            value = _json_loads(self.parts[index])
        except ValueError as e:
            raise ProtocolError("unparseable JSON part: %s" % e) from None
        if not isinstance(value, dict):
            raise ProtocolError("JSON part is not an object")
        return value

    @property
    def parent(self) -> dict:
        if self._parent is None:
            self._parent = self._json(1)
        return self._parent

    @property
    def metadata(self) -> dict:
        if self._metadata is None:
            self._metadata = self._json(2)
        return self._metadata

    @property
    def content(self) -> dict:
        if self._content is None:
            self._content = self._json(3)
        return self._content

    @property
    def buffers(self) -> list:
        return self.frames[2:]

    @property
    def parent_id(self):
        """The parent's msg_id. Read from the JSON text when it begins as every header minipar
        writes does, with the msg_id (no escapes in it): replies need nothing else of it."""
        if self._parent is None:
            value = _leading_string(self.parts[1], b'{"msg_id":"')
            if value is not None:
                return value
        return self.parent.get("msg_id")

    @property
    def status(self):
        """The content's status, read from the JSON text when it comes first (as in every reply
        an engine writes): a client needs no more of an ok reply's content."""
        if self._content is None:
            value = _leading_string(self.parts[3], b'{"status":"')
            if value is not None:
                return value
        return self.content.get("status")


def _leading_string(part: bytes, start: bytes):
    """The string value of a JSON object's first member, when ``part`` begins with ``start``
    (``{"key":"``) and the value has no escapes; else None (the caller parses the JSON)."""
    if not part.startswith(start):
        return None
    begin = len(start)
    end = part.find(b'"', begin)
    if end < 0 or part[end + 1:end + 2] not in (b",", b"}") or part.find(b"\\", begin, end) >= 0:
        return None
    try:
        return part[begin:end].decode("utf8")
    except UnicodeDecodeError:
        return None


class Session:
    """Signs, sends, receives and checks messages for one process.

    One per process role, each with its own id; not thread-safe (the owner of the
    sockets uses it), except :meth:`build`, which only touches the counter.
    """

    def __init__(self, key, session_id: str | None = None):
        if isinstance(key, str):
            key = key.encode("ascii")
        self.key = key
        self.id = session_id or str(uuid.uuid4())
        self.bid = self.id.encode("ascii")
        self._counter = itertools.count()
        self._prefix = self.id + "-"
        self._auth = hmac.new(key, digestmod=hashlib.sha256) if key else None
        # Most headers are written by this session: its id and msg_type go in by formatting
        # (a third of json's cost); an id JSON would escape keeps the encoder.
        self._header_format = ('{"msg_id":"%s%%s","msg_type":"%%s","session":"%s","date":%%r}' % (self._prefix, self.id)
                               if json_bytes(self.id) == b'"%s"' % self.bid else None)
        self._replays = ReplayGuard(REPLAY_HISTORY)

    # -- signing -------------------------------------------------------------------------

    def sign(self, body) -> bytes:
        """The signature of an envelope's body (bytes or a memoryview): the four JSON parts
        joined by newlines."""
        if self._auth is None:
            return b""
        h = self._auth.copy()
        h.update(body)
        return h.hexdigest().encode("ascii")

    def envelope(self, parts) -> bytes:
        """The signed envelope frame of four JSON parts (bytes): every message's, built here."""
        body = b"\n".join(parts)
        return self.sign(body) + b"\n" + body

    def new_msg_id(self) -> str:
        return self._prefix + str(next(self._counter))

    def header(self, msg_type: str, msg_id: str | None = None) -> dict:
        return {
            "msg_id": msg_id or self.new_msg_id(),
            "msg_type": msg_type,
            "session": self.id,
            "date": time.time(),
        }

    def build(self, msg_type, content=None, parent=None, metadata=None, header=None, msg_id=None):
        """Return ``(header, frames)``: the signed frames from the delimiter on. parent,
        metadata and content may be given as their JSON already (bytes): the request's header
        frame as received, or what an engine writes the same for every reply. msg_id: one of
        this session's (:meth:`new_msg_id`), taken before the message is built."""
        if header is None:
            header = self.header(msg_type, msg_id)
            fmt = self._header_format
            if fmt is not None and _PLAIN_NAME(msg_type):
                head = (fmt % (header["msg_id"][len(self._prefix):], msg_type, header["date"])).encode("ascii")
            else:
                head = _json_dumps(header).encode("utf8")
        else:
            head = _json_dumps(header).encode("utf8")
        return header, [DELIM, self.envelope((
            head,
            _json_part(parent),
            _json_part(metadata),
            _json_part(content),
        ))]

    def with_header(self, frames, header) -> list:
        """A message's frames (from the delimiter on) under a new header, re-signed: the
        other JSON parts are kept as they are and the payload frames are the very objects
        received, so one request can go to several engines, each under its own msg_id,
        without copying its payload."""
        _, parts = envelope_parts(frames[1])
        return [DELIM, self.envelope([json_bytes(header)] + parts[1:])] + list(frames[2:])

    def send(self, socket, msg_type, content=None, parent=None, metadata=None,
             buffers=(), idents=(), header=None) -> dict:
        header, frames = self.build(msg_type, content, parent, metadata, header)
        send_frames(socket, list(idents) + frames, buffers)
        return header

    # -- receiving -----------------------------------------------------------------------

    def parse(self, raw: list) -> Message:
        """Check and split raw frames; raises ProtocolError for anything not to be trusted."""
        try:
            i = raw.index(DELIM)
        except ValueError:
            raise ProtocolError("no delimiter frame") from None
        if len(raw) < i + 2:
            raise ProtocolError("truncated message: no envelope after the delimiter")
        frames = raw[i:]
        envelope = frame_bytes(frames[1])
        sep = envelope.find(b"\n")
        if sep < 0:
            if len(frames) >= 6 and len(envelope) == 64 and frame_bytes(frames[2])[:1] == b"{":
                raise ProtocolError("a message in protocol 1's frame layout, from an older minipar: every "
                                    "client and engine must run the controller's minipar version")
            raise ProtocolError("malformed envelope: not a signature and four JSON parts")
        signature = envelope[:sep]
        if self._auth is not None:  # checked before anything is copied out of the envelope
            if not signature:
                raise ProtocolError("unsigned message")
            if not hmac.compare_digest(signature, self.sign(memoryview(envelope)[sep + 1:])):
                raise ProtocolError("bad signature")
            if not self._replays.first_time(signature):
                raise ProtocolError("replayed message (signature seen before)")
        _, parts = envelope_parts(envelope)
        if parts is None:
            raise ProtocolError("malformed envelope: not a signature and four JSON parts")
        try:
            header = _json_loads(parts[0])
        except ValueError as e:
            raise ProtocolError("unparseable header: %s" % e) from None
        if not isinstance(header, dict) or type(header.get("msg_type")) is not str \
                or type(header.get("msg_id")) is not str:
            raise ProtocolError("header lacks msg_id/msg_type strings")
        return Message(raw[:i], frames, header, parts)

    def recv(self, socket, flags=0):
        """Receive and parse one message; ``None`` if nothing is waiting (with NOBLOCK).

        Raises ProtocolError for a message that fails the checks (after consuming it)."""
        raw = recv_frames(socket, flags)
        if raw is None:
            return None
        return self.parse(raw)


_send = zmq.backend.Socket.send
_recv = zmq.backend.Socket.recv
_get = zmq.backend.Socket.get
_SNDMORE = int(zmq.SNDMORE)
"""pyzmq's compiled socket methods with int flags: its Python wrappers (send_multipart, and
the sugar Socket's send and getsockopt with their enum flags) cost ~1.5 µs a frame, and the
hub sends and receives some 30 frames a task."""


def send_frames(socket, frames, buffers=(), trackers=None):
    """Send frames then buffers as one message, without pyzmq's wrappers.

    Small JSON frames are copied; payload buffers go zero-copy. Given a ``trackers`` list,
    each zero-copy buffer's MessageTracker goes into it: ZeroMQ reads the caller's memory
    until that tracker is done, so an edit before then may reach the peer."""
    if buffers:
        for f in frames:
            _send(socket, f, _SNDMORE)
        last = len(buffers) - 1
        for j, b in enumerate(buffers):
            copy = _small(b)
            tracker = _send(socket, b, 0 if j == last else _SNDMORE, copy, trackers is not None and not copy)
            if tracker is not None:
                trackers.append(tracker)
    else:
        last = len(frames) - 1
        for j, f in enumerate(frames):
            _send(socket, f, 0 if j == last else _SNDMORE)


COPY_THRESHOLD = 65536
"""Frames smaller than this are copied: a zero-copy send costs more than a memcpy there."""


def _small(buf) -> bool:
    try:
        return memoryview(buf).nbytes < COPY_THRESHOLD
    except TypeError:
        return True


_EVENTS, _POLLIN, _NOBLOCK = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.NOBLOCK)


def recv_frames(socket, flags=0):
    """Receive a whole multipart message; frames after the envelope stay zero-copy.

    Returns None when NOBLOCK finds nothing. Routing ids, delimiter and envelope come back
    as bytes; payload buffers as zmq.Frame."""
    if (flags == _NOBLOCK or flags & _NOBLOCK) and not _get(socket, _EVENTS) & _POLLIN:
        return None  # asked before trying: raising zmq.Again costs several times more
    try:
        frame = _recv(socket, flags, False)
    except zmq.Again:
        return None
    first = frame.bytes
    frames = [first]
    after_delim = 0 if first == DELIM else -1
    while frame.more:  # read from the frame: cheaper than getsockopt(RCVMORE) per frame
        frame = _recv(socket, 0, False)
        if after_delim >= 1:
            frames.append(frame)
            continue
        f = frame.bytes
        frames.append(f)
        if after_delim >= 0:
            after_delim += 1
        elif f == DELIM:
            after_delim = 0
    return frames


def id_list(value, none_ok=False):
    """A content field that names messages (``msg_ids``): a list of strings, or None where
    that means "all"; a TypeError naming what came instead."""
    if value is None and none_ok:
        return None
    if type(value) is not list or not all(type(v) is str for v in value):
        raise TypeError("msg_ids must be a list of strings, not %.60r" % (value,))
    return value


def broadcast_part_id(msg_id: str, engine_id) -> str:
    """The msg_id of one engine's part of a broadcast: the client knows it before sending."""
    return "%s_%s" % (msg_id, engine_id)


def envelope_parts(envelope):
    """``(signature, [header, parent, metadata, content])`` of an envelope frame;
    ``(None, None)`` when it is not one."""
    parts = frame_bytes(envelope).split(b"\n")
    if len(parts) != 5:
        return None, None
    return parts[0], parts[1:]


def header_json(frames) -> dict:
    """The header of a message already verified, from its frames (the delimiter on): the
    controller re-reading the header of a reply it forwards."""
    return _json_loads(envelope_parts(frames[1])[1][0])


def frame_bytes(frame) -> bytes:
    return frame if isinstance(frame, bytes) else frame.bytes
