"""Running a request in the engine's namespace, with its output captured.

Output goes two ways: the whole text of stdout/stderr travels with the reply (so a
client's ``ar.stdout`` is complete the moment the result is), and chunks are streamed
while the task runs by :class:`SideChannel`, a thread with a socket of its own, so a
task that prints and then computes for an hour shows its progress.
"""
from __future__ import annotations

import ast
import builtins
import functools
import io
import logging
import os
import signal
import sys
import threading
import time
import traceback

import zmq

from ..logs import DropLog, problem_kind
from ..error import ProtocolError
from ..protocol import Session, id_list, json_bytes, send_frames
from ..serialize import serialize_object, unpack_apply_message

log = logging.getLogger("minipar.engine")

STREAM_INTERVAL = 0.1
"""Seconds between output chunks sent while a task runs: live enough, few messages."""


class EngineStop(BaseException):
    """Raised in the main thread by SIGTERM: leaves user code without being reported as its error."""


def new_namespace() -> dict:
    return {"__name__": "__main__", "__builtins__": builtins}


class CapturedStream(io.TextIOBase):
    def __init__(self, name, side_channel):
        self.name = name
        self.parts: list = []
        self.side_channel = side_channel

    def writable(self):
        return True

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError("write() argument must be str, not %s" % type(text).__name__)
        self.parts.append(text)
        if self.side_channel is not None:
            self.side_channel.add(self.name, text)
        return len(text)

    def getvalue(self) -> str:
        return "".join(self.parts)


class SideChannel(threading.Thread):
    """The engine's second socket and the thread that owns it: it sends the running task's
    buffered output every STREAM_INTERVAL, and takes the controller's signal and steal
    requests, which must be heard while the main thread runs user code."""

    def __init__(self, ctx, url, key, identity: bytes, on_steal=None, curve_keys=None):
        super().__init__(name="minipar-output", daemon=True)
        self.on_steal = on_steal
        self.session = Session(key)
        self.socket = ctx.socket(zmq.DEALER)
        if curve_keys is not None:
            curve_keys.apply(self.socket.setsockopt)
        self.socket.setsockopt(zmq.IDENTITY, identity)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(url)
        self.lock = threading.Lock()
        self.parent = None
        self.engine_id = None
        self.chunks: list = []
        self.closing = False
        self.drops = DropLog(log)

    def begin(self, parent: dict, engine_id):
        with self.lock:
            self.parent = parent
            self.engine_id = engine_id
            self.chunks = []

    def end(self):
        with self.lock:
            self.parent = None
            self.chunks = []

    def add(self, name, text):
        with self.lock:
            if self.parent is not None:
                self.chunks.append((name, text))

    def run(self):
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        while not self.closing:
            if poller.poll(STREAM_INTERVAL * 1000):
                self.handle_control()
            with self.lock:
                chunks, self.chunks = self.chunks, []
                parent, engine_id = self.parent, self.engine_id
            if not chunks or parent is None:
                continue
            for name in ("stdout", "stderr"):
                text = "".join(t for n, t in chunks if n == name)
                if text:
                    self.session.send(self.socket, "stream", {"name": name, "text": text, "engine_id": engine_id},
                                      parent=parent)
        self.socket.close(linger=0)

    def handle_control(self):
        """Signals from clients arrive here: this thread is free while the main one runs a task."""
        msg = None
        try:
            msg = self.session.recv(self.socket, zmq.NOBLOCK)
            if msg is None:
                return
            if msg.msg_type == "steal_request" and self.on_steal is not None:
                id_list(msg.content.get("msg_ids"))
                self.on_steal(msg)
            elif msg.msg_type == "signal_request":
                sig = msg.content.get("signal", signal.SIGINT)
                if type(sig) is not int or sig not in signal.valid_signals():
                    raise ValueError("not a signal number: %.40r" % (sig,))
                log.info("signal %d requested by a client", sig)
                os.kill(os.getpid(), sig)
            else:
                self.drops.drop("output socket: unexpected message type",
                                "a message on the output socket of unexpected type %.80r" % msg.msg_type)
        except ProtocolError as e:
            self.drops.drop("output socket: %s" % problem_kind(e), "a message on the output socket: %s" % e)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            self.drops.drop("output socket: malformed %s" % msg.msg_type,
                            "a malformed message on the output socket (%s): %r" % (msg.msg_type, e))

    def close(self):
        self.closing = True


def format_error(exc: BaseException, skip_frames: int = 1) -> dict:
    """The JSON error content of a reply; the engine's own frames are left out."""
    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    return {"status": "error", "ename": type(exc).__name__, "evalue": str(exc), "traceback": text}


class TaskRunner:
    """Runs apply and execute requests in one namespace, capturing what they print."""

    def __init__(self, namespace: dict, side_channel: SideChannel | None = None):
        self.namespace = namespace
        self.side_channel = side_channel
        self.executing = False
        self.execution_count = 0

    def _run(self, parent, engine_id, body):
        out = CapturedStream("stdout", self.side_channel)
        err = CapturedStream("stderr", self.side_channel)
        saved = sys.stdout, sys.stderr
        if self.side_channel is not None:
            self.side_channel.begin(parent, engine_id)
        started = time.time()
        sys.stdout, sys.stderr = out, err
        self.executing = True
        try:
            content, buffers = body()
        except EngineStop:
            raise
        except BaseException as e:  # noqa: B902 - a task's KeyboardInterrupt/SystemExit is its error
            self.executing = False  # first: a SIGINT from here on is no longer the task's
            content, buffers = format_error(e), []
        else:
            self.executing = False
        finally:
            self.executing = False
            sys.stdout, sys.stderr = saved
            if self.side_channel is not None:
                self.side_channel.end()
        md = {"started": started, "completed": time.time(), "stdout": out.getvalue(), "stderr": err.getvalue(),
              "status": content["status"]}
        return content, md, buffers

    def apply(self, parent, engine_id, buffers):
        def body():
            f, args, kwargs = unpack_apply_message(buffers, self.namespace)
            result = f(*args, **kwargs)
            try:
                frames = serialize_object(result)
            except Exception as e:
                raise TypeError("the result of %s could not be pickled to send back: %s"
                                % (getattr(f, "__name__", "the task"), e)) from None
            return {"status": "ok"}, frames
        return self._run(parent, engine_id, body)

    def execute(self, parent, engine_id, code: str, silent: bool = True):
        """Run code; unless silent, count it and return the repr of its last expression as
        metadata ``execute_result``, as a kernel's Out[n] (what ipyparallel's ExecuteReply shows)."""
        if not silent:
            self.execution_count += 1
        count = self.execution_count
        shown = {}

        def body():
            module = ast.parse(code, "<execute>")
            last = module.body.pop() if not silent and module.body and isinstance(module.body[-1], ast.Expr) else None
            exec(compile(module, "<execute>", "exec"), self.namespace)
            if last is not None:
                value = eval(compile(ast.Expression(last.value), "<execute>", "eval"), self.namespace)
                if value is not None:
                    shown["execute_result"] = {"data": {"text/plain": repr(value)}, "metadata": {},
                                               "execution_count": count}
            return {"status": "ok", "execution_count": count}, serialize_object(None)
        content, md, buffers = self._run(parent, engine_id, body)
        content.setdefault("execution_count", count)
        md["execute_result"] = shown.get("execute_result")
        return content, md, buffers


@functools.lru_cache(maxsize=4)
def _ok_apply_parts(engine_id, engine_uuid) -> tuple:
    content = json_bytes({"status": "ok", "engine_info": {"engine_id": engine_id, "engine_uuid": engine_uuid,
                                                          "method": "apply"}})
    return content, b',"status":"ok","engine_id":%s,"engine_uuid":%s}' % (json_bytes(engine_id), json_bytes(engine_uuid))


def ok_apply_json(engine_id, engine_uuid, md) -> tuple:
    """An ok apply reply's content and metadata as the JSON the encoder writes for them, with
    the encoder used only for the output: the content is the same for every such reply of an
    engine, and so are the metadata's keys. Saves ~4 µs of the engine's work per task."""
    content, tail = _ok_apply_parts(engine_id, engine_uuid)
    out, err = md["stdout"], md["stderr"]
    return content, b'{"started":%r,"completed":%r,"stdout":%s,"stderr":%s%s' % (
        md["started"], md["completed"], json_bytes(out) if out else b'""', json_bytes(err) if err else b'""', tail)


def send_reply(session, socket, reply_type, parent, content, md, buffers):
    """parent: the request's header, as a dict or as the JSON frame received (cheaper)."""
    header, frames = session.build(reply_type, content, parent, md)
    send_frames(socket, frames, buffers)
