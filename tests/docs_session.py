"""A Python session for the docs test: runs the python blocks of one document, in order, in
one namespace, the way a reader types them into one interpreter.

    python docs_session.py REPLY_FD

Each request is a JSON line on stdin: {"code", "filename", "line", "mode"}; mode "exec" runs a
block as a script, "pycon" runs it as the statements of a >>> session (each expression's repr
printed, as at a prompt). Each reply is a JSON line on REPLY_FD: {"stdout", "stderr", "error",
"outputs"}; "error" is the traceback of an exception the block raised (or ""), "outputs" the
output of each >>> statement. Code is compiled with the document's name and its line numbers,
so a traceback points into the document. stdout and stderr are captured at the Python level
(print, sys.stdout); what subprocesses write goes to this process's own stdout and stderr.
Standard library only, so it runs on any Python the tests run on.
"""
import contextlib
import doctest
import io
import json
import os
import sys
import traceback
import types


def compiled(code, filename, line, mode):
    return compile("\n" * (line - 1) + code, filename, mode)


def run(request, namespace):
    out, err = io.StringIO(), io.StringIO()
    outputs = []
    error = ""
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if request["mode"] == "pycon":
                for example in doctest.DocTestParser().get_examples(request["code"]):
                    before = out.tell()
                    try:
                        exec(compiled(example.source, request["filename"], request["line"] + example.lineno,
                                      "single"), namespace)
                    except Exception:  # noqa: BLE001 - shown as the prompt would show it
                        out.write(traceback_text())
                    outputs.append(out.getvalue()[before:])
            else:
                exec(compiled(request["code"], request["filename"], request["line"], "exec"), namespace)
        except BaseException as e:  # noqa: BLE001 - reported to the test, which decides
            if isinstance(e, KeyboardInterrupt):
                raise
            error = traceback_text()
    return {"stdout": out.getvalue(), "stderr": err.getvalue(), "error": error, "outputs": outputs}


def traceback_text():
    kind, value, tb = sys.exc_info()
    return "".join(traceback.format_exception(kind, value, tb.tb_next if tb else None))


def main():
    replies = os.fdopen(int(sys.argv[1]), "w")
    sys.path[0] = os.getcwd()        # as for `python` at a prompt, not this file's directory
    main_module = types.ModuleType("__main__")    # what a script's functions are pickled against
    sys.modules["__main__"] = main_module
    namespace = main_module.__dict__
    for line in sys.stdin:
        reply = run(json.loads(line), namespace)
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
