"""The fenced blocks of README.md and docs/*.md, what each one is, and how the docs test runs them.

The convention (docs/README.md tells writers the same):

- The info string says what a block is. ``python`` runs in a Python session (one that starts
  with ``>>>``, or ``pycon``, runs statement by statement, each output compared as at a prompt).
  ``sh`` and ``console`` run in bash: lines starting with ``$`` (or ``[HOST] $``) are commands,
  and the lines under one are its output, checked; a block without prompts is one script.
  ``toml`` is loaded with minipar's own loader (every key must exist, launcher names must
  resolve). Any other block (``text``, ``json``, none) must say it is output, a file or a skip.
- An HTML comment right above a block annotates it: ``<!-- test: DIRECTIVE; DIRECTIVE -->``.

  ``output``           the block shows the output of the block above (of a console block's last
                       command): ``...`` stands for anything within a line, or for any lines when
                       alone on one; a run of spaces matches any run of spaces
  ``any A B``          in the output, A and B stand for any word (ids, pids, ports, times)
  ``continues``        go on with what the blocks before started: their python session (names
                       kept) and background commands. Without it a python, sh or console block
                       starts afresh: the session ends (its clusters stop), background commands
                       are stopped
  ``needs X, Y``       ``cluster``: a local cluster of 4 engines in the default profile, and
                       ``rc`` connected to it (kept while consecutive blocks need it);
                       ``repository``: run in a fresh copy of the repository; ``fakes``: the fake
                       PBS, LSF, HTCondor and Windows HPC commands on PATH; or a service of the
                       test bed: ``sshd``, ``mpi``, ``slurm``, ``sge``, ``netns``
  ``file PATH``        write the block to PATH (``~/`` is the test's home) instead of running it;
                       a toml block is still loaded, a python one compiled
  ``same as PATH``     the block is exactly the repository's file PATH (an example shown whole)
  ``background``       console: the commands keep running, and the lines shown under each must
                       appear in its output
  ``exit N``           sh or console: the last command exits with status N (others with 0)
  ``raises NAME``      python: the block raises NAME (its traceback is the output); toml:
                       ``raises ConfigError``, a file shown wrong on purpose
  ``sub A => B``       run with B where the block says A (a host, an address, a path), and read B
                       back as A in the output; B may use {python} {repo} {home} {hostname}
  ``timeout SECONDS``  instead of 120 per command or block
  ``setup:``           the rest of the comment runs first, unseen: Python in the block's session,
                       or bash for a shell block, whose ``teardown:`` part runs when the group ends
  ``skip: REASON``     not run; SKIPPED in test_docs.py must list it, with the same reason

  ``<!-- test document: sub A => B -->`` anywhere in a document applies to all its blocks.
- Blocks run in document order, in a fresh home (HOME; MINIPAR_DIR unset, so profiles are in
  ~/.minipar) that has a link to the repository's ``examples/``. A document's blocks are grouped
  by what they need, and each group runs on its own, in its own home, so that the local blocks
  run where Slurm is missing; toml and file blocks that need nothing are in every group.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
SESSION = Path(__file__).resolve().parent / "docs_session.py"
DOCUMENTS = ["README.md"] + sorted("docs/" + p.name for p in (ROOT / "docs").glob("*.md"))

RUNNABLE = {"python", "pycon", "sh", "console", "toml"}
SERVICES = ("sshd", "mpi", "slurm", "sge", "netns")
NEEDS = set(SERVICES) | {"cluster", "repository", "fakes"}
NETNS_HOSTS = ("tbh1", "tbh2")
CLUSTER_ENGINES = 4
DEFAULT_TIMEOUT = 120.0
PROMPT = re.compile(r"^(?:\[([\w.@-]+)\] )?\$ ?(.*)$")
FENCE = re.compile(r"^([ \t]*)(```+|~~~+)[ \t]*([\w+-]*)[ \t]*$")


class DocError(Exception):
    """A block that is malformed, or whose run did not do what the document says."""


class Block:
    def __init__(self, doc: str, line: int, lang: str, text: str, directives: dict):
        self.doc = doc
        self.line = line          # line of the block's first content line
        self.lang = lang
        self.text = text
        self.d = directives

    @property
    def where(self) -> str:
        return "%s:%d" % (self.doc, self.line - 1)

    @property
    def kind(self) -> str:
        if "skip" in self.d:
            return "skip"
        if self.d.get("output"):
            return "output"
        if "file" in self.d and self.lang != "toml":
            return "file"
        if self.lang == "python" and self.text.lstrip().startswith(">>>"):
            return "pycon"
        if self.lang in RUNNABLE:
            return self.lang
        raise DocError("%s: a ```%s block must say what it is: <!-- test: output -->, file PATH or skip: REASON"
                       % (self.where, self.lang))

    @property
    def needs(self) -> frozenset:
        return frozenset(self.d.get("needs", ()))

    def __repr__(self):
        return "<%s block at %s>" % (self.kind, self.where)


# ------------------------------------------------------------------------------------ parsing

def parse_directives(body: str, where: str) -> dict:
    first, _, rest = body.partition("\n")
    d: dict = {"sub": []}
    first, skip, reason = first.partition("skip:")    # a reason may hold any text, ";" too
    if skip:
        d["skip"] = reason.strip() or _bad(where, "skip: needs a reason")
    for part in (p.strip() for p in first.split(";")):
        if not part:
            continue
        word, _, arg = part.partition(" ")
        if part == "setup:":
            d["setup"], d["teardown"] = setup_and_teardown(rest)
        elif part in ("output", "output of the block above"):
            d["output"] = True
        elif part in ("continues", "background"):
            d[part] = True
        elif word == "needs":
            needs = [n.strip() for n in arg.split(",")]
            unknown = set(needs) - NEEDS
            if unknown:
                _bad(where, "needs %s: not one of %s" % (", ".join(sorted(unknown)), ", ".join(sorted(NEEDS))))
            d["needs"] = needs
        elif word == "any":
            d["any"] = arg.split()
        elif word in ("file", "raises"):
            d[word] = arg.strip()
        elif word == "same" and arg.startswith("as "):
            d["same"] = arg[3:].strip()
        elif word in ("exit", "timeout"):
            d[word] = float(arg) if word == "timeout" else int(arg)
        elif word == "sub" and " => " in arg:
            d["sub"].append(tuple(s.strip() for s in arg.split(" => ", 1)))
        else:
            _bad(where, "unknown directive %r" % part)
    if rest.strip() and "setup" not in d:
        _bad(where, "only setup: takes lines after the first")
    return d


def setup_and_teardown(text: str) -> tuple:
    """A setup's code, and what follows a line ``teardown:`` in it (shell blocks: run when the
    document's group ends, before its processes are stopped)."""
    parts = re.split(r"(?m)^teardown:[ \t]*$", text, maxsplit=1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def _bad(where, problem):
    raise DocError("%s: %s" % (where, problem))


def parse_document(doc: str, text: Optional[str] = None) -> List[Block]:
    """Every fenced block of a Markdown document, with its annotation."""
    if text is None:
        text = (ROOT / doc).read_text()
    lines = text.splitlines()
    blocks = []
    doc_subs = []
    for m in re.finditer(r"<!--\s*test document:(.*?)-->", text, re.S):
        doc_subs += parse_directives(m.group(1).strip(), doc)["sub"]
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        start = i + 1
        j = start
        closing = re.compile(r"^ {0,%d}%s+[ \t]*$" % (len(indent) + 3, re.escape(fence[0]) * len(fence)))
        while j < len(lines) and not closing.match(lines[j]):    # an indented fence inside is text
            j += 1
        if j == len(lines):
            raise DocError("%s:%d: the block never ends" % (doc, i + 1))
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line.lstrip()
                         for line in lines[start:j])
        d = annotation(lines, i, "%s:%d" % (doc, i + 1))
        d["sub"] = doc_subs + d["sub"]
        blocks.append(Block(doc, start + 1, lang, body + "\n" if body else "", d))
        i = j + 1
    for before, block in zip([None] + blocks, blocks):
        if block.kind == "output" and (before is None or before.kind not in ("python", "pycon", "sh", "console")):
            raise DocError("%s: an output block must follow a python, sh or console block" % block.where)
    return blocks


def annotation(lines: List[str], fence_index: int, where: str) -> dict:
    """The directives of the ``<!-- test: ... -->`` comment just above a fence (blank lines may
    stand between), or none."""
    k = fence_index - 1
    while k >= 0 and not lines[k].strip():
        k -= 1
    if k < 0 or not lines[k].rstrip().endswith("-->"):
        return parse_directives("", where)
    end = k
    while k >= 0 and "<!--" not in lines[k]:
        k -= 1
    comment = "\n".join(lines[k:end + 1]).strip()
    m = re.fullmatch(r"<!--\s*test:(.*?)-->", comment, re.S)
    if not m:
        return parse_directives("", where)
    body = m.group(1)
    first, nl, rest = body.partition("\n")
    return parse_directives(first.strip() + nl + rest.rstrip(), where)


def groups(blocks: List[Block]) -> Dict[frozenset, List[Block]]:
    """Blocks by what they need (cluster aside: any group can start one); toml and file blocks
    that need nothing, and output blocks with the block they show, go where they belong."""
    out: Dict[frozenset, List[Block]] = {}
    key_of = {}
    previous = None
    for block in blocks:
        if block.kind == "skip":
            continue
        if block.kind == "output":
            key = key_of[id(previous)]
        else:
            key = block.needs - {"cluster"}
        key_of[id(block)] = key
        out.setdefault(key, []).append(block)
        previous = block
    shared = [b for b in blocks if b.kind in ("toml", "file") and not (b.needs - {"cluster"})]
    for key, members in out.items():
        if key:
            out[key] = sorted(set(members) | set(shared), key=lambda b: b.line)
    return out


def group_id(doc: str, key: frozenset) -> str:
    return "%s[%s]" % (doc, "+".join(sorted(key)) or "local")


def heading_anchors(text: str) -> set:
    """The anchors GitHub makes of a Markdown text's headings: lower case, punctuation but
    hyphens dropped, spaces made hyphens."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", re.sub(r"(?ms)^```.*?^```", "", text), re.M):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return anchors


# ----------------------------------------------------------------------------- matching output

def output_pattern(expected: str, placeholders=()) -> str:
    """A regex for a block's shown output: ``...`` is anything within a line (any lines when it
    stands alone on one), each placeholder any word, a run of spaces any run of spaces."""
    alternatives = ["\\.\\.\\.", "[ \\t]+"] + ["(?<![\\w.])%s(?!\\w|\\.\\w)" % re.escape(p)
                                                for p in sorted(placeholders, key=len, reverse=True)]
    token = re.compile("|".join("(%s)" % a for a in alternatives))
    parts = []
    for line in expected.strip("\n").splitlines():
        if line.strip() == "...":
            parts.append(r"(?:.*\n)*?")
            continue
        pieces, pos = [], 0
        line = line.rstrip()
        for m in token.finditer(line):
            pieces.append(re.escape(line[pos:m.start()]))
            pieces.append(".*?" if m.group(1) else "[ \\t]+" if m.group(2) else "\\S+?")
            pos = m.end()
        pieces.append(re.escape(line[pos:]))
        parts.append("".join(pieces) + "[ \\t]*\n")
    return "".join(parts)


def normalized(text: str, home: Path, subs=()) -> str:
    """Output as the document shows it: what a terminal leaves of ``\\r`` lines, no trailing
    spaces, the test's home as /home/me, and each ``sub`` read back."""
    text = text.replace(str(home), "/home/me")
    for shown, real in subs:
        text = text.replace(real, shown)
    lines = [line.rsplit("\r", 1)[-1].rstrip() for line in text.splitlines()]
    return "\n".join(lines).strip("\n") + "\n" if any(lines) else ""


def check_output(block: Block, expected: str, actual: str, search=False, flat=False):
    """Fail unless actual is what the block shows; flat: line breaks count as spaces (a
    value's repr that the document wraps, as doctest's NORMALIZE_WHITESPACE)."""
    if flat:
        expected, actual = (" ".join(text.split()) + "\n" for text in (expected, actual))
    pattern = output_pattern(expected, block.d.get("any", ()))
    found = re.search(pattern, actual) if search else re.fullmatch(pattern, actual)
    if not found:
        raise DocError("%s: the output differs from what the document shows.\n--- shown:\n%s--- real:\n%s"
                       % (block.where, expected, actual or "(nothing)\n"))


# --------------------------------------------------------------------------------- running

class PythonSession:
    """One interpreter (tests/docs_session.py) that runs python blocks one after another."""

    def __init__(self, env, cwd):
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen([sys.executable, "-u", str(SESSION), str(write_fd)], env=env, cwd=str(cwd),
                                     stdin=subprocess.PIPE, text=True, pass_fds=(write_fd,),
                                     start_new_session=True)
        os.close(write_fd)
        self.replies = os.fdopen(read_fd)

    def run(self, code: str, filename: str, line: int, mode="exec", timeout=DEFAULT_TIMEOUT) -> dict:
        self.proc.stdin.write(json.dumps({"code": code, "filename": filename, "line": line, "mode": mode}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.replies], [], [], timeout)
        reply = self.replies.readline() if ready else ""
        if not reply:
            self.close(wait=0)
            raise DocError("%s:%d: no answer within %gs (the session %s)" % (
                filename, line - 1, timeout, "exited" if ready else "still runs the block"))
        return json.loads(reply)

    def close(self, wait=60.0):
        """End the session as a script ends: its Clusters stop themselves at exit."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(wait)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                kill_group(self.proc.pid)
        self.replies.close()


def kill_group(pid, sig=signal.SIGKILL):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Background:
    def __init__(self, args, env, cwd, log: Path):
        self.log_path = log
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(args, env=env, cwd=str(cwd), stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            kill_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                kill_group(self.proc.pid)
                self.proc.wait(5)
        self.log.close()


class GroupRun:
    """Runs one group of a document's blocks in a fresh home, then stops all it started."""

    def __init__(self, tmp_path: Path, extra_env: Optional[dict] = None, path_first=()):
        self.tmp = tmp_path
        self.home = tmp_path / "home"
        self.home.mkdir()
        (self.home / "examples").symlink_to(ROOT / "examples")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIPAR_", "PYTHON"))}
        bindir = str(Path(sys.executable).parent)
        env.update(HOME=str(self.home), PATH=os.pathsep.join([*path_first, bindir, env.get("PATH", "/usr/bin:/bin")]),
                   PYTHONUNBUFFERED="1", COLUMNS="100")
        env.update(extra_env or {})
        self.env = env
        self.session: Optional[PythonSession] = None
        self.background: List[Background] = []
        self.last = None          # (the last runnable block, what it printed)
        self.cluster_up = False
        self.repository: Optional[Path] = None
        self.teardowns: List[tuple] = []
        self.counter = itertools.count()

    # -- helpers ---------------------------------------------------------------------------

    def expand(self, text: str, block: Block) -> str:
        for shown, real in block.d["sub"]:
            text = text.replace(shown, self.value(real))
        return text

    def value(self, real: str) -> str:
        return real.format(python=sys.executable, repo=str(ROOT), home=str(self.home),
                           hostname=socket.gethostname())

    def subs(self, block: Block) -> list:
        return [(shown, self.value(real)) for shown, real in block.d["sub"]]

    def cwd(self, block: Block) -> Path:
        if "repository" not in block.needs:
            return self.home
        if self.repository is None:
            self.repository = self.tmp / "repository"
            files = subprocess.run(["git", "ls-files", "-z"], cwd=str(ROOT), capture_output=True,
                                   check=True).stdout.decode().split("\0")
            for name in filter(None, files):
                if (ROOT / name).is_file():
                    (self.repository / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(str(ROOT / name), str(self.repository / name))
        return self.repository

    def path(self, name: str) -> Path:
        return self.home / name[2:] if name.startswith("~/") else self.home / name

    def start_cluster(self):
        if not self.cluster_up:
            self.command("python -m minipar.cluster start -n %d --daemonize --log-level=WARNING" % CLUSTER_ENGINES,
                         self.home, "the documents' shared cluster", 120)
            self.cluster_up = True

    def command(self, cmd: str, cwd: Path, where: str, timeout: float, host: str = "") -> tuple:
        proc = subprocess.Popen(on_host(host, ["bash", "-c", cmd]), env=self.env, cwd=str(cwd),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid)
            out, _ = proc.communicate()
            raise DocError("%s: `%s` did not end within %gs; it said:\n%s"
                           % (where, cmd, timeout, out.decode(errors="replace"))) from None
        return proc.returncode, out.decode(errors="replace")

    # -- the blocks ------------------------------------------------------------------------

    def run(self, blocks: List[Block]):
        try:
            for block in blocks:
                if block.kind in ("python", "pycon", "sh", "console") and not block.d.get("continues"):
                    self.end_story(keep_cluster="cluster" in block.needs)
                if "same" in block.d and (ROOT / block.d["same"]).read_text() != block.text:
                    raise DocError("%s: the block is not the same as %s" % (block.where, block.d["same"]))
                if "cluster" in block.needs:
                    self.start_cluster()
                getattr(self, "run_" + block.kind)(block)
        except BaseException:
            try:
                self.close()
            except DocError:
                pass            # the block's failure is the one to report
            raise
        self.close()

    def write_file(self, block: Block):
        if "file" in block.d:
            target = self.path(block.d["file"])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self.expand(block.text, block))

    def run_file(self, block: Block):
        if block.lang == "python":
            compile(block.text, block.where, "exec")    # a module the next blocks import: valid at least
        self.write_file(block)

    def run_toml(self, block: Block):
        from minipar.cluster.launchers import launcher_class
        from minipar.config import ConfigError, load_config
        check_dir = self.tmp / "toml-check"
        check_dir.mkdir(exist_ok=True)
        (check_dir / "minipar.toml").write_text(self.expand(block.text, block))
        try:
            config = load_config(check_dir)
            launcher_class(config.cluster.engines, "engines")
            launcher_class(config.cluster.controller, "controller")
            problem = ""
        except ConfigError as e:
            problem = str(e)
        if block.d.get("raises") not in (None, "ConfigError"):
            raise DocError("%s: a toml block can only raise ConfigError" % block.where)
        if bool(problem) != ("raises" in block.d):
            raise DocError("%s: %s" % (block.where, problem or "loads, but should raise ConfigError"))
        self.write_file(block)

    def run_output(self, block: Block):
        source, raw = self.last
        actual = normalized(raw, self.home, self.subs(source) + self.subs(block))
        check_output(block, block.text, actual, search=source.d.get("background", False))

    def run_python(self, block: Block, mode="exec"):
        self.write_file(block)
        if self.session is None:
            self.session = PythonSession(self.env, self.cwd(block))
            if "cluster" in block.needs:
                self.call(block, "import minipar as ipp\nrc = ipp.Client()\nrc.wait_for_engines(%d, timeout=60)\n"
                          % CLUSTER_ENGINES, "setup")
        if block.d.get("setup"):
            self.call(block, block.d["setup"], "setup")
        reply = self.session.run(self.expand(block.text, block), block.doc, block.line, mode,
                                 block.d.get("timeout", DEFAULT_TIMEOUT))
        raises = block.d.get("raises")
        error_line = reply["error"].rstrip().splitlines()[-1] if reply["error"] else ""
        if raises and not re.match(r"(\w+\.)*%s\b" % re.escape(raises), error_line):
            raise DocError("%s: should raise %s, but %s" % (block.where, raises, error_line or "raised nothing"))
        if reply["error"] and not raises:
            raise DocError("%s: the block failed:\n%s%s" % (block.where, reply["stderr"], reply["error"]))
        if mode == "pycon":
            self.check_prompts(block, reply["outputs"])
        self.last = (block, reply["stdout"] + reply["error"])

    def end_story(self, keep_cluster=False):
        """A runnable block that does not continue the one before starts the story again: the
        python session ends (its clusters stop) and background commands are stopped. The shared
        cluster stays for a story that needs it too, so consecutive ones share it."""
        if self.session is not None:
            self.session.close()
            self.session = None
        for bg in self.background:
            bg.stop()
        self.background = []
        if self.cluster_up and not keep_cluster:
            self.command("python -m minipar.cluster stop", self.home, "stopping the shared cluster", 120)
            self.cluster_up = False

    def call(self, block: Block, code: str, what: str):
        reply = self.session.run(self.expand(code, block), block.doc + " (" + what + ")", 1)
        if reply["error"]:
            raise DocError("%s: the %s failed:\n%s" % (block.where, what, reply["error"]))

    def run_pycon(self, block: Block):
        self.run_python(block, mode="pycon")

    def check_prompts(self, block: Block, outputs: list):
        import doctest
        examples = doctest.DocTestParser().get_examples(block.text)
        for example, actual in zip(examples, outputs):
            actual = normalized(actual, self.home, self.subs(block))
            if example.want or actual:
                check_output(block, example.want, actual, flat=True)

    def run_sh(self, block: Block):
        self.run_shell(block)

    def run_console(self, block: Block):
        self.run_shell(block)

    def run_shell(self, block: Block):
        self.write_file(block)
        if block.d.get("teardown"):
            self.teardowns.append((block, self.expand(block.d["teardown"], block)))
        if block.d.get("setup"):
            status, out = self.command(self.expand(block.d["setup"], block), self.cwd(block), block.where + " (setup)",
                                       DEFAULT_TIMEOUT)
            if status:
                raise DocError("%s: the setup exited with %s:\n%s" % (block.where, status, out))
        commands = split_console(block.text)
        if not commands:        # a script: every line is a command, the output is shown below it
            commands = [("", block.text, None)]
        timeout = block.d.get("timeout", DEFAULT_TIMEOUT)
        outputs = []
        for i, (host, cmd, shown) in enumerate(commands):
            cmd = self.expand(cmd, block)
            host = self.expand("[%s]" % host, block)[1:-1] if host else ""
            if block.d.get("background"):
                bg = Background(on_host(host, ["bash", "-c", "exec " + cmd]), self.env, self.cwd(block),
                                self.tmp / ("background-%d.out" % next(self.counter)))
                self.background.append(bg)
                if shown:
                    self.wait_for_output(block, bg, shown, timeout)
                continue
            status, out = self.command(cmd, self.cwd(block), block.where, timeout, host)
            wanted = block.d.get("exit", 0) if i == len(commands) - 1 else 0
            if status != wanted:
                raise DocError("%s: `%s` exited with %s, not %s; it said:\n%s" % (block.where, cmd, status, wanted, out))
            if shown:
                check_output(block, shown, normalized(out, self.home, self.subs(block)))
            outputs.append(out)
        self.last = (block, outputs[-1] if outputs else "")    # a console block's: its last command's

    def wait_for_output(self, block: Block, bg: Background, shown: str, timeout: float):
        pattern = output_pattern(shown, block.d.get("any", ()))
        deadline = time.monotonic() + timeout
        while True:
            out = normalized(bg.output(), self.home, self.subs(block))
            if re.search(pattern, out):
                return
            if bg.proc.poll() is not None or time.monotonic() > deadline:
                raise DocError("%s: the background command %s without the output the document shows.\n"
                               "--- shown:\n%s--- real:\n%s" % (block.where, "exited" if bg.proc.poll() is not None
                                                               else "ran %gs" % timeout, shown, out))
            time.sleep(0.1)

    # -- the end ---------------------------------------------------------------------------

    def close(self):
        """Stop what the blocks started: sessions, clusters of every profile, background
        commands; then fail if any process of this home is left."""
        self.end_story()
        for block, teardown in self.teardowns:
            self.command(teardown, self.cwd(block), block.where + " (teardown)", DEFAULT_TIMEOUT)
        profiles = self.home / ".minipar"
        for profile in sorted(profiles.glob("profile_*")) if profiles.is_dir() else []:
            if list((profile / "security").glob("cluster-*.json")):
                self.command("python -m minipar.cluster stop --all --profile-dir %s" % shlex.quote(str(profile)),
                             self.home, "cleanup", 120)
        ours = set(processes_of(self.home))
        for pid_file in profiles.glob("profile_*/pid/controller*.pid"):   # controllers started by hand
            try:
                pid = int(pid_file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if pid in ours:
                os.kill(pid, signal.SIGTERM)
        left = wait_gone(processes_of(self.home))
        said = [command_line(pid) for pid in left]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        if left:
            raise DocError("processes of the documents' home still ran after cleanup (killed):\n%s"
                           % "\n".join(said))


def on_host(host: str, args: list) -> list:
    """args run on a host of the test bed: a network namespace, with its host name (as its sshd
    gives it) in a UTS namespace of its own; any other host is this one."""
    if host not in NETNS_HOSTS:
        return args
    return ["ip", "netns", "exec", host, "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', host] + args


def split_console(text: str) -> list:
    """[(host, command, shown output)] of a console block; [] if it has no prompts."""
    commands: list = []
    lines = text.splitlines()
    if not any(PROMPT.match(line) for line in lines):
        return []
    i = 0
    while i < len(lines):
        m = PROMPT.match(lines[i])
        if not m:
            if not commands:
                raise DocError("output before the first command: %r" % lines[i])
            host, cmd, shown = commands[-1]
            commands[-1] = (host, cmd, shown + lines[i] + "\n")
            i += 1
            continue
        host, cmd = m.groups()
        while cmd.endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd = cmd + "\n" + lines[i]
        commands.append((host or "", cmd, ""))
        i += 1
    return commands


def processes_of(home: Path) -> list:
    """Pids of processes whose environment has HOME=home (what the blocks started, wherever
    they ended up: daemons, batch jobs, network-namespace hosts)."""
    mark = ("HOME=%s" % home).encode()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                environ = Path("/proc/%s/environ" % entry).read_bytes().split(b"\0")
                state = Path("/proc/%s/stat" % entry).read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if mark in environ and state not in ("Z", "X"):
                pids.append(int(entry))
    return pids


def wait_gone(pids: list, timeout: float = 10.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for pid in pids if Path("/proc/%d" % pid).exists() and
                _state(pid) not in ("Z", "X", "")]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def command_line(pid: int) -> str:
    try:
        return "%d %s" % (pid, Path("/proc/%d/cmdline" % pid).read_bytes().replace(b"\0", b" ").decode())
    except OSError:
        return "%d (gone)" % pid


def _state(pid: int) -> str:
    try:
        return Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""
