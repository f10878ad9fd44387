"""A %px session without a notebook: what you type at `px>` runs on every engine, as under %autopx.

    python examples/px_session.py [--engines 2 | --profile NAME | --url-file FILE] [--targets all]
    python examples/px_session.py < steps.py          # a file's statements, one after another
    python examples/px_session.py --ipython           # IPython's own %px, %%px, %pxresult, %autopx

The prompt reads Python as the interactive interpreter does (a block ends at an empty line)
and runs each statement on the engines with `view.execute(code, silent=False)`, the call %px
makes: what each engine prints comes back under `[stdout:0]`, the value of a bare last
expression as `Out[0:1]: value`, an error as the engines' tracebacks. Lines starting with %
are the session's own commands:

    %targets all | 0,2 | 1:3    the engines that run what follows (%pxconfig --targets)
    %local CODE                 run CODE here, in this process, not on the engines
    %result                     show the last statement's outputs again (%pxresult)

Input that is not a terminal is echoed after the prompt, so the output reads as a session.
Standard library only. With IPython installed, --ipython starts a terminal IPython with
`%load_ext minipar` done and `rc` connected, for the real magics.
"""
import argparse
import code
import sys

import connect   # examples/connect.py: --engines, --profile or --url-file
import minipar as ipp

BANNER = "px session on engines %s: statements run there; %%targets, %%local, %%result; Ctrl-D ends"


def parse_targets(text, ids):
    """'all', '3', '0,2' or a slice '1:3' of the registered ids (as %pxconfig --targets)."""
    text = text.strip()
    if text == "all":
        return ids
    if ":" in text:
        return ids[slice(*[int(p) if p.strip() else None for p in text.split(":")])]
    return [int(p) for p in text.split(",")]


class PxConsole(code.InteractiveConsole):
    """The interactive interpreter, with each complete statement sent to the engines."""

    def __init__(self, rc, targets="all"):
        super().__init__(locals={"rc": rc, "ipp": ipp}, filename="<px>")
        self.rc = rc
        self.view = rc[parse_targets(targets, rc.ids)]
        self.last = None

    def raw_input(self, prompt=""):
        line = input(prompt)
        if not sys.stdin.isatty():
            print(line)
        return line

    def runsource(self, source, filename="<px>", symbol="single"):
        if source.lstrip().startswith("%"):
            self.command(source.strip())
            return False
        try:
            if self.compile(source, filename, symbol) is None:
                return True                       # an unfinished block: read more lines
        except (OverflowError, SyntaxError, ValueError):
            self.showsyntaxerror(filename)
            return False
        if source.strip():
            self.last = self.view.execute(source, silent=False, block=False)
            self.show(self.last)
        return False

    def command(self, line):
        name, _, rest = line[1:].partition(" ")
        if name == "targets":
            self.view = self.rc[parse_targets(rest or "all", self.rc.ids)]
            print("targets:", self.view.targets)
        elif name == "local":
            super().runsource(rest, "<local>")
        elif name == "result" and self.last is not None:
            self.show(self.last)
        else:
            print("unknown command %s: use %%targets, %%local or %%result" % line.split()[0])

    def show(self, ar):
        """Each engine's output, then each Out[engine:count]; errors as the engines' tracebacks."""
        ar.wait()
        ar.display_outputs()
        try:
            replies = ar.get()
        except ipp.RemoteError as e:            # one engine's, or a CompositeError of several
            print("\n".join(e.render_traceback()).rstrip())
            return
        for reply in replies:
            if str(reply):
                print(reply)


def start_ipython(rc):
    from IPython import start_ipython as start
    start(argv=["--quick", "--no-banner", "--no-confirm-exit", "--ext=minipar"], user_ns={"rc": rc, "ipp": ipp})


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    connect.add_arguments(p, engines=2)
    p.add_argument("--targets", default="all", help="engines to run on: all, 3, 0,2 or 1:3")
    p.add_argument("--ipython", action="store_true", help="IPython with the real %%px magics instead")
    args = p.parse_args()

    with connect.client(args) as rc:
        if args.ipython:
            start_ipython(rc)
        else:
            console = PxConsole(rc, args.targets)
            sys.ps1, sys.ps2 = "px> ", "... "
            console.interact(BANNER % console.view.targets, exitmsg="")


if __name__ == "__main__":
    main()
