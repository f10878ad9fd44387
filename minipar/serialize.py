"""Pickle protocol 5 with out-of-band buffers, and canning of functions and classes.

A payload is a list of frames: frame 0 is the pickle, the rest are the large buffers
it refers to, so zmq can send them without copying (``send(..., copy=False)``) and
the receiver can rebuild numpy arrays on top of the received memory.

Functions and classes that pickle can't find again by ``module.qualname`` (lambdas,
closures, anything defined in ``__main__``) are "canned": sent as marshalled bytecode
plus closure, defaults and ``__dict__``. As in ipyparallel, a canned function takes
its globals from the receiver: the engine's user namespace for ``__main__``
functions, its module's namespace when that module imports there. Bytecode is
specific to one Python minor version, so both ends must run the same one.

Unpickling runs code: only deserialize what came signed with the exec key.
"""
from __future__ import annotations

import abc
import builtins
import contextvars
import importlib
import io
import marshal
import os
import pickle
import sys
import weakref
from types import CellType, FunctionType, MemberDescriptorType

from .error import SerializationError

__all__ = [
    "BUFFER_THRESHOLD",
    "SerializationError",
    "deserialize_object",
    "pack_apply_message",
    "serialize_object",
    "set_pickler",
    "unpack_apply_message",
    "use_cloudpickle",
    "use_dill",
    "use_pickle",
]

# Smaller buffers are cheaper to copy into the pickle than to send as frames of their
# own, each of which costs a zmq message part and bookkeeping at both ends.
BUFFER_THRESHOLD = 64 * 1024

_PYVER = tuple(sys.version_info[:2])
_namespace = contextvars.ContextVar("minipar_serialize_namespace", default=None)
_pickler_name = "pickle"


def _version(v):
    return "%d.%d" % tuple(v)


# --- sending side -------------------------------------------------------------


class _Buffer:
    """Marks a large bytes/bytearray so it leaves the pickle as its own frame.

    The C pickler writes exact bytes/bytearray inline without asking
    ``reducer_override``, so they have to be swapped for something it will ask about.
    """

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __reduce_ex__(self, protocol):
        return type(self.obj), (pickle.PickleBuffer(self.obj),)


def _wrap(obj, threshold):
    t = type(obj)
    if (t is bytes or t is bytearray) and len(obj) >= threshold:
        return _Buffer(obj)
    return obj


_BYTES_TYPES = frozenset([bytes, bytearray])


def _wrap_buffers(obj, threshold):
    """Wrap large bytes at the top level and one level into exact tuple/list/dict.

    That covers apply args/kwargs and results. Deeper ones, and those in containers
    too long to scan cheaply (the scan costs about as much as pickling small items),
    stay in-band: correct, just copied.
    """
    t = type(obj)
    if t is bytes or t is bytearray:
        return _wrap(obj, threshold)
    if (t is tuple or t is list or t is dict) and len(obj) > 1000:
        return obj
    if t is tuple or t is list:
        if not _BYTES_TYPES.isdisjoint(map(type, obj)):
            return t([_wrap(x, threshold) for x in obj])
    elif t is dict:
        if not _BYTES_TYPES.isdisjoint(map(type, obj.values())):
            return {k: _wrap(v, threshold) for k, v in obj.items()}
    return obj


_by_reference_cache = {}


def _by_reference(obj):
    """True if pickle can save obj as ``module.qualname`` and find it again there.

    Only yes is cached, by identity: a name rebound later (a reload) makes pickle
    refuse the stale object, and serialize_object then retries without the cache.
    """
    if _by_reference_cache.get(id(obj)) is obj:
        return True
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or module == "__main__" or not qualname or "<" in qualname:
        return False
    found = sys.modules.get(module)
    if found is None:
        return False
    try:
        for part in qualname.split("."):
            found = getattr(found, part)
    except AttributeError:
        return False
    if found is not obj:
        return False
    if len(_by_reference_cache) >= 4096:
        _by_reference_cache.clear()
    _by_reference_cache[id(obj)] = obj
    return True


_code_cache = {}


def _dump_code(code):
    hit = _code_cache.get(id(code))
    if hit is not None and hit[0] is code:
        return hit[1]
    if len(_code_cache) >= 1024:
        _code_cache.clear()
    data = marshal.dumps(code)
    _code_cache[id(code)] = (code, data)  # keeping code alive keeps its id unique
    return data


class _EmptyCell:
    """Stands for a closure cell not yet assigned when the function was sent."""


def _reduce_function(f):
    if _by_reference(f):
        return NotImplemented
    code = f.__code__
    args = (_dump_code(code), _PYVER, f.__name__, f.__qualname__, f.__module__,
            f.__doc__, len(code.co_freevars))
    closure = f.__closure__
    if not (f.__defaults__ or f.__kwdefaults__ or closure or f.__dict__):
        return _make_function, args
    cells = None
    if closure:
        cells = []
        for cell in closure:
            try:
                cells.append(cell.cell_contents)
            except ValueError:
                cells.append(_EmptyCell)
    # Sent as state, after the function is memoized, so a closure or default that
    # refers back to the function (recursion) pickles as a reference, not a loop.
    state = (f.__defaults__, f.__kwdefaults__, cells, f.__dict__ or None)
    return _make_function, args, state, None, None, _set_function_state


_class_tokens = weakref.WeakKeyDictionary()
_classes = weakref.WeakValueDictionary()
_fresh_classes = weakref.WeakSet()
_SKIP_CLASS_ATTRS = frozenset(
    ["__dict__", "__weakref__", "__module__", "__qualname__", "__slots__", "_abc_impl"])


def _class_token(cls):
    token = _class_tokens.get(cls)
    if token is None:
        token = os.urandom(16).hex()
        _class_tokens[cls] = token
        _classes[token] = cls
    return token


_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: made by a class statement, not C


def _reduce_class(cls):
    # C types pickle can't name (NoneType, function...) are left to pickle, which
    # knows some of them and refuses the rest.
    if not cls.__flags__ & _HEAPTYPE or _by_reference(cls):
        return NotImplemented
    meta = type(cls)
    if meta is not type and meta is not abc.ABCMeta:
        raise SerializationError(
            "cannot send class %s.%s: it is not importable by name and its metaclass "
            "%s can't be rebuilt from its attributes; define it in a module the engines "
            "can import" % (cls.__module__, cls.__qualname__, meta.__name__))
    # A token rather than the name: the receiver keeps one class per token, so
    # instances sent in different messages (and sent back) share one class.
    skeleton = (_class_token(cls), cls.__name__, cls.__qualname__, cls.__module__,
                cls.__bases__, meta, cls.__dict__.get("__slots__"))
    state = {k: v for k, v in cls.__dict__.items()
             if k not in _SKIP_CLASS_ATTRS and type(v) is not MemberDescriptorType}
    return _make_class, skeleton, state, None, None, _set_class_state


def _reduce_memoryview(view):
    data = view if view.c_contiguous else view.tobytes()
    return _make_memoryview, (pickle.PickleBuffer(data), view.format, view.shape)


def _reduce_property(p):
    return property, (p.fget, p.fset, p.fdel, p.__doc__)


def _reduce_method_wrapper(m):
    return type(m), (m.__func__,)


_REDUCERS = {
    FunctionType: _reduce_function,
    memoryview: _reduce_memoryview,
    classmethod: _reduce_method_wrapper,
    staticmethod: _reduce_method_wrapper,
    property: _reduce_property,
}


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj):
        reduce = _REDUCERS.get(type(obj))
        if reduce is not None:
            return reduce(obj)
        if isinstance(obj, type):
            return _reduce_class(obj)
        return NotImplemented


_cloud_pickler = None


def _get_cloud_pickler():
    global _cloud_pickler
    if _cloud_pickler is None:
        try:
            import cloudpickle
        except ImportError:
            raise ImportError(
                "the cloudpickle pickler was asked for but cloudpickle is not installed "
                "in %s; install it (pip install cloudpickle) on the client and the "
                "engines, or use the default pickler" % sys.executable) from None

        class _CloudPickler(cloudpickle.CloudPickler):
            def reducer_override(self, obj):
                if type(obj) is memoryview:
                    return _reduce_memoryview(obj)
                return super().reducer_override(obj)

        _cloud_pickler = _CloudPickler
    return _cloud_pickler


_dill_pickler = None


def _get_dill_pickler():
    global _dill_pickler
    if _dill_pickler is None:
        try:
            import dill
        except ImportError:
            raise ImportError(
                "the dill pickler was asked for but dill is not installed in %s; install it "
                "(pip install dill) on the client and the engines, or use the default pickler"
                % sys.executable) from None

        class _DillPickler(dill.Pickler):
            def __init__(self, file, protocol=None, buffer_callback=None):
                super().__init__(file, protocol=protocol, buffer_callback=buffer_callback, recurse=True)

            def reducer_override(self, obj):
                if type(obj) is memoryview:
                    return _reduce_memoryview(obj)
                return NotImplemented

        _dill_pickler = _DillPickler
    return _dill_pickler


_PICKLERS = {"pickle": lambda: _Pickler, "cloudpickle": _get_cloud_pickler, "dill": _get_dill_pickler}


def set_pickler(name):
    """Choose the pickler for this process: "pickle" (default), "cloudpickle" or "dill".

    cloudpickle and dill send the globals a ``__main__`` function uses along with it instead
    of resolving them in the engine namespace; the receiver needs it installed too.
    """
    global _pickler_name
    if name not in _PICKLERS:
        raise ValueError("pickler must be one of %s, not %r" % (", ".join(map(repr, _PICKLERS)), name))
    _PICKLERS[name]()
    _pickler_name = name


def use_cloudpickle():
    set_pickler("cloudpickle")


def use_dill():
    set_pickler("dill")


def use_pickle():
    set_pickler("pickle")


def serialize_object(obj, buffer_threshold=BUFFER_THRESHOLD, pickler=None):
    """Return ``[pickle, *buffers]``; the buffers are memoryviews into obj's own data.

    obj must not be modified until the frames are sent.
    """
    return _serialize(_wrap_buffers(obj, buffer_threshold), buffer_threshold, pickler)


def _serialize(obj, threshold, pickler=None):
    name = pickler or _pickler_name
    cls = _PICKLERS[name]()
    try:
        return _dump(cls, obj, threshold)
    except pickle.PicklingError:
        if not _by_reference_cache:
            raise
        _by_reference_cache.clear()
        return _dump(cls, obj, threshold)


def _dump(cls, obj, threshold):
    buffers = []

    def buffer_callback(buf):
        raw = buf.raw()
        if raw.nbytes < threshold:
            return True
        buffers.append(raw)
        return False

    file = io.BytesIO()
    cls(file, protocol=5, buffer_callback=buffer_callback).dump(obj)
    return [file.getvalue()] + buffers


# --- receiving side -----------------------------------------------------------


def deserialize_object(frames, namespace=None):
    """Inverse of serialize_object; frames may be bytes, memoryviews or zmq.Frames.

    namespace is where canned ``__main__`` functions find their globals (the engine's
    user namespace); by default this process's ``__main__``.
    """
    data = [getattr(f, "buffer", f) for f in frames]
    token = _namespace.set(namespace)
    try:
        return pickle.loads(data[0], buffers=data[1:])
    finally:
        _namespace.reset(token)


_loaded_code = {}
_unimportable = {}


def _load_code(data, version, module, qualname):
    version = tuple(version)
    code = _loaded_code.get(data) if version == _PYVER else None
    if code is not None:
        return code
    problem = None
    if version != _PYVER:
        problem = "it was sent by Python %s and this is Python %s" % (
            _version(version), _version(_PYVER))
    else:
        try:
            code = marshal.loads(data)
        except (ValueError, EOFError, TypeError) as e:
            problem = "its bytecode could not be loaded (%s; sent by Python %s, this " \
                      "is Python %s)" % (e, _version(version), _version(_PYVER))
    if problem is not None:
        raise SerializationError(
            "cannot rebuild function %s.%s: %s. Functions that can't be imported by name "
            "are sent as bytecode, which only one Python version can run: use the same "
            "Python version on client and engines, or define the function in a module "
            "the engines can import so it is sent by name." % (module, qualname, problem))
    if len(_loaded_code) >= 1024:
        _loaded_code.clear()
    _loaded_code[data] = code
    return code


def _globals_for(module):
    if module and module != "__main__":
        mod = sys.modules.get(module)
        # a failed import is slow (a path scan) but may work once sys.path changes
        if mod is None and _unimportable.get(module) != sys.path:
            try:
                mod = importlib.import_module(module)
            except Exception:
                _unimportable[module] = list(sys.path)
        if mod is not None:
            return mod.__dict__
    ns = _namespace.get()
    if ns is None:
        ns = sys.modules["__main__"].__dict__
    if "__builtins__" not in ns:
        ns["__builtins__"] = builtins  # Python < 3.10 gives functions without it no builtins
    return ns


def _make_function(code, version, name, qualname, module, doc, ncells):
    code = _load_code(code, version, module, qualname)
    closure = tuple(CellType() for _ in range(ncells)) if ncells else None
    f = FunctionType(code, _globals_for(module), name, None, closure)
    f.__qualname__ = qualname
    f.__module__ = module
    f.__doc__ = doc
    return f


def _set_function_state(f, state):
    defaults, kwdefaults, cells, attrs = state
    f.__defaults__ = defaults
    f.__kwdefaults__ = kwdefaults
    if cells:
        for cell, value in zip(f.__closure__, cells):
            if value is not _EmptyCell:
                cell.cell_contents = value
    if attrs:
        f.__dict__.update(attrs)
    return f


def _make_class(token, name, qualname, module, bases, meta, slots):
    cls = _classes.get(token)
    if cls is None:
        ns = {"__module__": module, "__qualname__": qualname}
        if slots is not None:
            ns["__slots__"] = slots
        cls = meta(name, bases, ns)
        _classes[token] = cls
        _class_tokens[cls] = token
        _fresh_classes.add(cls)
    return cls


def _set_class_state(cls, state):
    # A class this process already has (its own, or rebuilt from an earlier message)
    # is left as it is.
    if cls in _fresh_classes:
        _fresh_classes.discard(cls)
        for key, value in state.items():
            setattr(cls, key, value)
    return cls


def _make_memoryview(buf, fmt, shape):
    view = memoryview(buf)
    if fmt != "B" or view.shape != tuple(shape):
        try:
            view = view.cast("B").cast(fmt, shape)
        except (TypeError, ValueError):
            view = view.cast("B")  # a format cast() can't make: plain bytes
    return view


# --- apply messages -----------------------------------------------------------


def pack_apply_message(f, args, kwargs, buffer_threshold=BUFFER_THRESHOLD):
    """Frames for calling ``f(*args, **kwargs)`` on an engine."""
    args = _wrap_buffers(tuple(args), buffer_threshold)
    kwargs = _wrap_buffers(dict(kwargs), buffer_threshold)
    return _serialize((f, args, kwargs), buffer_threshold)


def unpack_apply_message(frames, namespace):
    """Return ``(f, args, kwargs)``; canned ``__main__`` functions use namespace."""
    f, args, kwargs = deserialize_object(frames, namespace)
    return f, args, kwargs
