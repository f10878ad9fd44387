"""Remote and parallel functions: a function whose calls run on a view, as ipyparallel's
``@remote`` and ``@parallel`` make them."""
from __future__ import annotations


def _name(f) -> str:
    return getattr(f, "__name__", None) or getattr(f, "name", None) or str(f)


class RemoteFunction:
    """A function whose calls run on a view: ``f(*args)`` is ``view.apply(f, *args)`` with
    this function's block flag and view flags."""

    def __init__(self, view, f, block=None, **flags):
        self.view = view
        self.func = f
        self.block = block
        self.flags = flags
        self.__name__ = _name(f)
        self.__doc__ = getattr(f, "__doc__", None)
        self.__wrapped__ = f

    def __call__(self, *args, **kwargs):
        return self.view._apply(self.func, args, kwargs, block=self.block, **self.flags)

    def __repr__(self):
        return "<%s %s on %r>" % (type(self).__name__, self.__name__, self.view)


class ParallelFunction(RemoteFunction):
    """A function called on parts of sequences: ``f(seq)`` runs ``f`` on one contiguous part
    per engine (per ``chunksize`` items on a load-balanced view) and joins the results;
    ``f.map(seq)`` calls ``f`` on each item."""

    def __init__(self, view, f, dist="b", block=None, chunksize=None, ordered=True,
                 return_exceptions=False, **flags):
        if dist != "b":
            raise ValueError("only dist='b' (contiguous parts) is supported, not %r" % (dist,))
        super().__init__(view, f, block=block, **flags)
        self.chunksize = chunksize
        self.ordered = ordered
        self.return_exceptions = return_exceptions

    def _run(self, sequences, mapping):
        return self.view._map(self.func, sequences, mapping=mapping, block=self.block,
                              chunksize=self.chunksize, ordered=self.ordered,
                              return_exceptions=self.return_exceptions, **self.flags)

    def __call__(self, *sequences):
        return self._run(sequences, mapping=False)

    def map(self, *sequences):
        return self._run(sequences, mapping=True)


def remote(view, block=None, **flags):
    """Decorator: calls of the function run on ``view`` (``@remote(rc[:], block=True)``)."""
    def decorate(f):
        return RemoteFunction(view, f, block=block, **flags)
    return decorate


def parallel(view, dist="b", block=None, ordered=True, **flags):
    """Decorator: the function is called on parts of its sequence arguments, on ``view``."""
    def decorate(f):
        return ParallelFunction(view, f, dist=dist, block=block, ordered=ordered, **flags)
    return decorate
