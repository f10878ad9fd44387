"""IPython magics that run code on the engines of a view.

``%px code``, ``%%px`` (a cell), ``%pxresult`` (the last result again), ``%pxconfig``
and ``%autopx`` (every following cell, until ``%autopx`` again). Output is labelled
per engine: ``[stdout:0] ...``, ``Out[0:5]: value``.

This module imports IPython, so only ``%load_ext minipar`` and ``view.activate()``
import it; minipar itself never needs IPython. A cell runs on the engines like at a
prompt: the repr of a bare last expression is its result.
"""
from __future__ import annotations

import contextlib
import warnings

from IPython.core import magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics

from ..engine_calls import _execute_cell

NO_LAST_RESULT = "%pxresult recalls the last %px result, and there is none yet"


def _exec_args(f):
    for arg in reversed([
        magic_arguments.argument("-b", "--block", action="store_const", const=True, dest="block",
                                 help="wait for the result (blocking)"),
        magic_arguments.argument("-a", "--noblock", action="store_const", const=False, dest="block",
                                 help="return an AsyncResult at once (non-blocking)"),
        magic_arguments.argument("--stream", action="store_const", const=True, dest="stream",
                                 help="print output while the engines run (blocking only)"),
        magic_arguments.argument("--no-stream", action="store_const", const=False, dest="stream",
                                 help="print output when done"),
        magic_arguments.argument("-t", "--targets", type=str,
                                 help="engines to run on: 'all', 3, '0,2', '1:3' or '::2'"),
        magic_arguments.argument("--local", action="store_const", const=True, dest="local",
                                 help="also run the cell here"),
        magic_arguments.argument("--verbose", action="store_const", const=True, dest="set_verbose",
                                 help="say where each execution goes"),
        magic_arguments.argument("--no-verbose", action="store_const", const=False, dest="set_verbose",
                                 help="run quietly"),
    ]):
        f = arg(f)
    return f


def _output_args(f):
    for arg in reversed([
        magic_arguments.argument("-r", action="store_const", dest="groupby", const="order", default="type",
                                 help="collate outputs in order (--group-outputs=order)"),
        magic_arguments.argument("-e", action="store_const", dest="groupby", const="engine", default="type",
                                 help="group outputs by engine (--group-outputs=engine)"),
        magic_arguments.argument("--group-outputs", dest="groupby", type=str, choices=["engine", "order", "type"],
                                 default="type", help="all stdout then all stderr (type), or per engine"),
        magic_arguments.argument("-o", "--out", dest="save_name", type=str,
                                 help="store the AsyncResult under this name in the user namespace"),
    ]):
        f = arg(f)
    return f


def parse_targets(text: str, ids: list):
    """'all', '3', '0,2', '[0, 2]', '1:3', '::2' (slices of the registered ids) -> targets."""
    text = text.strip().strip("[]()").strip()
    if text == "all":
        return "all"
    try:
        if ":" in text:
            parts = [int(p) if p.strip() else None for p in text.split(":")]
            return ids[slice(*parts)]
        if "," in text:
            return [int(p) for p in text.split(",") if p.strip()]
        return int(text)
    except (TypeError, ValueError):
        raise UsageError("targets are 'all', an engine id, ids separated by commas, or a slice like "
                         "'1:3'; not %r" % text) from None


class ParallelMagics(Magics):
    """%px and friends for one view; with no view, they use the minipar Client found in the
    user namespace (all its engines, blocking)."""

    registered = True

    def __init__(self, shell, view=None, suffix=""):
        self._view = view
        self.suffix = suffix
        self.last_result = None
        self.verbose = False
        self.stream_output = False
        self._autopx = False
        px = "px" + suffix
        self.magics = {
            "line": {px: self.px, "pxresult" + suffix: self.result, "pxconfig" + suffix: self.pxconfig,
                     "auto" + px: self.autopx},
            "cell": {px: self.cell_px},
        }
        super().__init__(shell=shell)

    @property
    def view(self):
        if self._view is None:
            self._view = self._find_view()
        return self._view

    def _find_view(self):
        from .client import Client
        clients = [v for k, v in self.shell.user_ns.items() if isinstance(v, Client) and not k.startswith("_")]
        if not clients:
            raise UsageError("%px needs engines: connect first (rc = minipar.Client(...)), or pick a view with "
                             "rc[:].activate()")
        if len({id(c) for c in clients}) > 1:
            raise UsageError("several minipar Clients are defined; choose one with rc[:].activate()")
        view = clients[0][:]
        view.block = True
        return view

    # -- the magics ------------------------------------------------------------------------

    @magic_arguments.magic_arguments()
    @_exec_args
    def pxconfig(self, line=""):
        """Set the default targets, blocking, streaming and verbosity of the %px magics."""
        args = magic_arguments.parse_argstring(self.pxconfig, line)
        if args.targets:
            self.view.targets = parse_targets(args.targets, self.view.client.ids)
        if args.block is not None:
            self.view.block = args.block
        if args.set_verbose is not None:
            self.verbose = args.set_verbose
        if args.stream is not None:
            self.stream_output = args.stream

    @magic_arguments.magic_arguments()
    @_output_args
    def result(self, line=""):
        """Show the outputs and results of the last %px again (waiting for it if needed)."""
        args = magic_arguments.parse_argstring(self.result, line)
        if self.last_result is None:
            raise UsageError(NO_LAST_RESULT)
        self._show(self.last_result, args.groupby)

    def px(self, line=""):
        """Run one line on the engines: ``%px import os; os.getpid()``."""
        return self.parallel_execute(line)

    @magic_arguments.magic_arguments()
    @_exec_args
    @_output_args
    def cell_px(self, line="", cell=None):
        """Run the cell on the engines (options override %pxconfig for this cell)."""
        args = magic_arguments.parse_argstring(self.cell_px, line)
        if args.set_verbose is not None:
            self.verbose = args.set_verbose
        targets = parse_targets(args.targets, self.view.client.ids) if args.targets else None
        block = self.view.block if args.block is None else args.block
        ar = self.parallel_execute(cell, block=False if args.local else block, groupby=args.groupby,
                                   save_name=args.save_name, stream=args.stream, targets=targets)
        if args.local:
            self.shell.run_cell(cell)
            if block:
                self._show(ar, args.groupby)
                return None
        return None if block else ar

    def parallel_execute(self, cell, block=None, groupby="type", save_name=None, stream=None, targets=None):
        view = self.view
        block = view.block if block is None else block
        stream = self.stream_output if stream is None else stream
        if self.verbose:
            print("%s execution on engine(s): %s" % ("Parallel" if block else "Async parallel",
                                                     view.targets if targets is None else targets))
        ar = view._apply(_execute_cell, (cell,), {}, block=False, targets=targets)
        self.last_result = ar
        if save_name:
            self.shell.user_ns[save_name] = ar
        if not block:
            return ar
        with ar.stream_output() if stream else contextlib.nullcontext():
            ar.wait()
        self._show(ar, groupby, result_only=stream)
        return None

    def _show(self, ar, groupby="type", result_only=False):
        """Labelled outputs, then ``Out[engine:n]`` for each engine's value; errors raise
        (after the outputs, which often explain them)."""
        ar.wait()
        ar.display_outputs(groupby, result_only=result_only)
        values = ar.get()
        pairs = [(ar.engine_id, values)] if ar._single else zip(ar.engine_id, values)
        count = getattr(self.shell, "execution_count", 0)
        for eid, value in pairs:
            if value is not None:
                print("Out[%s:%s]: %s" % (eid, count, value))

    # -- %autopx ---------------------------------------------------------------------------

    def autopx(self, line=""):
        """Toggle running every cell on the engines (%autopx again switches it off)."""
        if self._autopx:
            self.shell.input_transformers_post.remove(self._to_px)
            self._autopx = False
            print("%autopx disabled")
        else:
            self.shell.input_transformers_post.append(self._to_px)
            self._autopx = True
            print("%autopx enabled")

    def _to_px(self, lines):
        """Rewrite a cell into a call of %%px on it, except the %autopx that ends the mode."""
        code = "".join(lines)
        if "run_line_magic('auto%s'" % ("px" + self.suffix) in code and len(lines) == 1:
            return lines
        return ["get_ipython().run_cell_magic(%r, '', %r)\n" % ("px" + self.suffix, code)]


def activate(view, suffix=""):
    """Register the magics for view in the running IPython; warn outside IPython."""
    from IPython import get_ipython
    ip = get_ipython()
    if ip is None:
        warnings.warn("the parallel magics (%px...) only work inside IPython", RuntimeWarning, stacklevel=3)
        return None
    magics = ParallelMagics(ip, view, suffix)
    ip.register_magics(magics)
    return magics


def load_ipython_extension(ip):
    """%load_ext minipar: the magics, on the Client in the user namespace."""
    ip.register_magics(ParallelMagics(ip))
