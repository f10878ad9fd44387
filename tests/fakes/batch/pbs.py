"""Fake PBS: qsub, qstat, qselect, qdel, qsig. Torque by default; FAKE_PBS_FLAVOR=pbspro for PBS Pro.

What the formats are based on ([S] seen in public docs, issues or code; [K] knowledge, not
verified against a real server):
- qsub prints ``<seq>.<server>``, or ``<seq>[].<server>`` for an array [K]; the server name is
  FAKE_PBS_SERVER (default "fakeserver"). Arrays: Torque ``-t 1-4`` (also "1,3,5-7", "%limit"
  ignored), PBS Pro ``-J 1-4[:step]`` [K]; each flavour refuses the other's option, as the real
  qsub does ("invalid option", exit 2).
- qstat table, no leading blank line, nothing at all when there are no jobs. Torque
  "Job ID" 25 / Name 16 / User 15 / "Time Use" 8 / S / Queue [S: Torque 6 output in a public
  pastebin; TESTBED.md]; PBS Pro "Job id" 16+2 / Name 16 / User 16+2 / ... [S: openpbs/openpbs
  PR #2496, with subjob rows ``9[1].server``]. Long fields are cut; PBS Pro marks the cut
  with "*" [K].
- ``qstat -f``: "Job Id: <id>" then "    key = value" lines, a blank line after each job
  [S: Torque output in a public pastebin]. Variable_List is one line here (the real one wraps).
- Unknown ids: "qstat: Unknown Job Id <id>" (also qdel, qsig) on stderr, exit 153, which is
  PBSE_UNKJOBID 15001 & 0xff [S: messages in issues of Jupyter-Kale/kale, ebartom/NGSbartom,
  openpbs/openpbs #2379; K: the exit code]. Torque >= 4 says "Unknown Job Id Error <id>", so
  match the prefix. An array must be named with its brackets ("1[]"), as on the real systems.
- ``qselect [-N name] [-u user[,user]] [-s states]`` prints the ids of the matching jobs, one a
  line as qsub printed them ("12.server", "13[].server": the array, not its subjobs), nothing
  and exit 0 when none match; with no option, every job [S: the Torque and POSIX qselect man
  pages (linux.die.net/man/1/qselect-torque, manpages.ubuntu.com qselect.1B), which list only
  job identifiers; K: the exit code for an empty selection]. -N is an exact name, -s the state
  letters of qstat's S column.
- qsig on a job that is not running: "qsig: Request invalid for state of job <id>", exit 170
  (PBSE_BADSTATE) [K]. Successful qdel / qsig print nothing [K].
- A finished job disappears at once (Torque keep_completed = 0, PBS Pro without job history),
  so a poller must read "Unknown Job Id" as finished. States: Q (queued), R, E (ended, output
  being copied back). Array parents: Torque shows R once a subjob runs; PBS Pro shows B, and
  ``-t`` lists finished subjobs as X while the array lives [S: qtop/qtop #219 state list].

Semantics: #PBS lines are read up to the first command; command-line options win. The job
runs in $HOME (Torque ``-d DIR`` changes that) with a minimal environment (PATH=/bin:/usr/bin
after the fakes' bin/, as a compute node has the PBS commands, HOME, USER, LOGNAME, SHELL, and
the FAKE_* settings, as a node knows its server) plus PBS_* variables; ``-V`` exports the submitter's whole
environment, ``-v A=1,B`` single variables. The script runs under ``-S shell``, else its #!
line, else /bin/sh -- not as a login shell, so no profile is read (the real one reads it).
stdout and stderr are spooled and copied back when the task ends (also after qdel), to
``-o`` / ``-e`` (a directory gets the default name; "host:" prefixes are dropped; ``-j oe``
merges) or ``<name>.o<seq>`` / ``.e<seq>`` in PBS_O_WORKDIR; array tasks get "-<index>"
(Torque) or ".<index>" (PBS Pro) on default names, and PBS Pro's ``^array_index^`` is replaced in
given ones (given names are otherwise shared by all tasks). Torque names array tasks
"<name>-<index>". ``-l walltime=`` is enforced (SIGTERM, then SIGKILL after the kill delay);
``-l nodes=N:ppn=M`` or ``select=N:ncpus=M`` only size PBS_NODEFILE. qdel sends SIGTERM to every
task's process group, then SIGKILL after FAKE_BATCH_KILL_DELAY seconds.
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import sys
import time
from pathlib import Path

from . import common

BIN_DIR = Path(__file__).resolve().parent / "bin"
"""On a job's PATH, as PBS's own commands are on a compute node's."""

SITE_SETTINGS = ("FAKE_BATCH_SPOOL", "FAKE_BATCH_PYTHON", "FAKE_BATCH_KILL_DELAY", "FAKE_BATCH_START_DELAY",
                 "FAKE_PBS_FLAVOR", "FAKE_PBS_SERVER")
"""The fake's settings a job gets, as a compute node knows its PBS server."""
from .common import DONE, EXITING, QUEUED, RUNNING, CommandError

UNKNOWN_JOB = 153
BAD_STATE = 170
BAD_SIGNAL = 167
ID_PATTERN = re.compile(r"^(\d+)(?:\[(\d*)\])?(?:\.(.+))?$")
DEFAULT_QUEUE = {"torque": "batch", "pbspro": "workq"}


def flavor() -> str:
    name = os.environ.get("FAKE_PBS_FLAVOR", "torque").lower()
    if name not in DEFAULT_QUEUE:
        raise CommandError("FAKE_PBS_FLAVOR must be torque or pbspro, not %r" % name, 2)
    return name


def server() -> str:
    return os.environ.get("FAKE_PBS_SERVER", "fakeserver")


# ------------------------------------------------------------------ qsub


def qsub(argv) -> int:
    kind = flavor()
    with_value = {"-N", "-o", "-e", "-j", "-q", "-l", "-v", "-S", "-A", "-m", "-M", "-r", "-W", "-k",
                  "-p", "-c", "-u"} | ({"-t", "-d"} if kind == "torque" else {"-J"})
    options, operands = common.parse_options(argv, with_value, {"-V"}, "qsub", attached=True)
    spool = common.Spool("pbs", "qsub")
    if len(operands) > 1:
        raise CommandError("qsub: the fake takes one script file (or the script on stdin), not %s"
                           % " ".join(operands), 2)
    if operands and operands[0] != "-":
        try:
            text = Path(operands[0]).read_text()
        except OSError as e:
            raise CommandError("qsub: script file '%s' cannot be loaded - %s" % (operands[0], e.strerror), 1)
        name = os.path.basename(operands[0])
    else:
        text, name = sys.stdin.read(), "STDIN"
    header, _ = common.parse_options(common.directive_args(text, "#PBS"), with_value, {"-V"},
                                     "qsub", attached=True)
    opts = {}
    resources = {}
    variables = []
    for option, value in header + options:
        if option == "-l":
            for item in value.split(","):
                key, _, val = item.partition("=")
                resources[key.strip()] = val.strip()
        elif option == "-v":
            variables.extend(v for v in value.split(",") if v)
        else:
            opts[option] = value

    name = opts.get("-N", name)
    if "-N" in opts and not name[:1].isalpha():
        raise CommandError("qsub: illegal -N value", 2)
    queue = opts.get("-q", "") or DEFAULT_QUEUE[kind]
    array = opts.get("-t") if kind == "torque" else opts.get("-J")
    indices = common.index_ranges(array, "qsub") if array else [None]
    walltime = parse_walltime(resources.get("walltime", ""))
    job_id, job_dir = spool.new_job_dir()
    srv, host, workdir = server(), common.hostname(), os.getcwd()
    script = common.save_script(job_dir, text)
    argv_run = common.script_shell_argv(script, opts.get("-S", ""))
    account = pwd.getpwuid(os.getuid())
    pw_home = account.pw_dir
    origin = {"PBS_O_HOME": os.environ.get("HOME", pw_home), "PBS_O_PATH": os.environ.get("PATH", ""),
              "PBS_O_SHELL": os.environ.get("SHELL", "/bin/sh"), "PBS_O_LOGNAME": common.user(),
              "PBS_O_HOST": host, "PBS_O_SERVER": srv, "PBS_O_WORKDIR": workdir, "PBS_O_QUEUE": queue}
    if "LANG" in os.environ:
        origin["PBS_O_LANG"] = os.environ["LANG"]
    nodefile = job_dir / "nodefile"
    nodefile.write_text((host + "\n") * slots(resources))
    join = opts.get("-j", "n")
    job_name = "%d[].%s" % (job_id, srv) if array else "%d.%s" % (job_id, srv)
    tasks = []
    for index in indices:
        task_id = job_name.replace("[]", "[%d]" % index) if array else job_name
        task_name = "%s-%d" % (name, index) if array and kind == "torque" else name
        env = dict(os.environ) if "-V" in opts else {
            "HOME": pw_home, "USER": account.pw_name, "LOGNAME": account.pw_name,
            "SHELL": account.pw_shell or "/bin/sh", "PATH": "%s:/bin:/usr/bin" % BIN_DIR}
        env.update((k, v) for k, v in os.environ.items() if k in SITE_SETTINGS)
        for item in variables:
            key, eq, value = item.partition("=")
            if eq or key in os.environ:
                env[key] = value if eq else os.environ[key]
        env.update(origin)
        env.update(PBS_JOBID=task_id, PBS_JOBNAME=task_name, PBS_QUEUE=queue, PBS_NODEFILE=str(nodefile),
                   PBS_ENVIRONMENT="PBS_BATCH", PBS_TASKNUM="1", PBS_NODENUM="0", PBS_VNODENUM="0",
                   PBS_NP=str(slots(resources)), TMPDIR=str(job_dir))
        if kind == "torque":
            env.update(ENVIRONMENT="BATCH", PBS_NUM_NODES=resources_count(resources, "nodes"),
                       PBS_NUM_PPN=resources_count(resources, "ppn"))
            if array:
                env["PBS_ARRAYID"] = str(index)
        elif array:
            env.update(PBS_ARRAY_INDEX=str(index), PBS_ARRAY_ID=job_name)
        suffix = "" if index is None else ("-%d" if kind == "torque" else ".%d") % index
        out = output_path(opts.get("-o"), "%s.o%d%s" % (name, job_id, suffix), workdir, index)
        err = output_path(opts.get("-e"), "%s.e%d%s" % (name, job_id, suffix), workdir, index)
        spooled = str(job_dir / "tasks" / ("%s.OU" % (index or 0)))
        copies = {"oe": [(spooled, out)], "eo": [(spooled, err)]}.get(
            join, [(spooled, out), (spooled[:-3] + ".ER", err)])
        tasks.append({
            "index": index or 0, "id": task_id, "name": task_name, "argv": argv_run, "env": env,
            "cwd": os.path.join(workdir, opts["-d"]) if "-d" in opts else pw_home,
            "stdout": copies[0][0], "stderr": copies[-1][0], "copies": copies, "output_path": out, "error_path": err})
    job = {"flavor": kind, "server": srv, "job_name": job_name, "name": name, "queue": queue,
           "owner": common.user(), "host": host, "array": array, "resources": resources, "join": join,
           "workdir": workdir, "submit_args": " ".join(argv), "origin": origin, "tasks": tasks,
           "walltime": walltime}
    common.submit(job_id, job_dir, job, on_finish=copy_back, walltime=walltime)
    print(job_name)
    return 0


def parse_walltime(text: str):
    if not text:
        return None
    try:
        seconds = 0
        for part in text.split(":"):
            seconds = seconds * 60 + int(part)
        return seconds
    except ValueError:
        raise CommandError("qsub: Illegal attribute or resource value for walltime: %r" % text, 1) from None


def resources_count(resources: dict, key: str) -> str:
    nodes = resources.get("nodes", "1")
    if key == "nodes":
        return nodes.split(":")[0] if nodes.split(":")[0].isdigit() else "1"
    match = re.search(r"ppn=(\d+)", nodes)
    return match.group(1) if match else "1"


def slots(resources: dict) -> int:
    select = resources.get("select", "")
    if select:
        chunks = int(select.split(":")[0]) if select.split(":")[0].isdigit() else 1
        per = re.search(r"(?:mpiprocs|ncpus)=(\d+)", select)
        return chunks * (int(per.group(1)) if per else 1)
    return int(resources_count(resources, "nodes")) * int(resources_count(resources, "ppn"))


def output_path(given, default_name: str, workdir: str, index) -> str:
    if not given:
        return os.path.join(workdir, default_name)
    path = given.split(":", 1)[1] if ":" in given else given
    if index is not None:
        path = path.replace("^array_index^", str(index))
    path = os.path.join(workdir, os.path.expanduser(path))
    return os.path.join(path, default_name) if os.path.isdir(path) else path


def copy_back(task: dict, result: dict) -> None:
    """The job's stdout and stderr reach their destination only when the task ends, each
    whole at once (copied beside it, then renamed): a reader never sees half a file."""
    for source, dest in task["copies"]:
        partial = "%s.%d.part" % (dest, os.getpid())
        try:
            shutil.copyfile(source, partial)
            os.replace(partial, dest)
        except OSError as e:
            with open(os.path.join(os.path.dirname(source), "undelivered"), "a") as note:
                note.write("%s -> %s: %s\n" % (source, dest, e))


# ------------------------------------------------------------------ finding jobs


def resolve(spool, text: str, command: str):
    """(job, task indices or None for all) for a job id as the user wrote it."""
    match = ID_PATTERN.match(text)
    if not match:
        raise CommandError("%s: illegally formed job identifier: %s" % (command, text), 1)
    if match.group(3) in (None, server()):
        job = spool.job(int(match.group(1)))
        bracket = match.group(2)
        if job and not common.finished(job) and (bracket is not None) == bool(job["array"]):
            if not bracket:
                return job, None
            index = int(bracket)
            if index in job["states"] and (job["flavor"] == "pbspro" or job["states"][index][0] != DONE):
                return job, [index]
    shown = text if match.group(3) or flavor() == "pbspro" else "%s.%s" % (text, server())
    raise CommandError("%s: Unknown Job Id %s" % (command, shown), UNKNOWN_JOB)


def each_job(spool, ids, command: str):
    """(id, job, indices) for each id given, or for every unfinished job; unknown ids are
    reported on stderr as they come, and the exit code says whether there were any."""
    if not ids:
        jobs = [job for job in map(spool.job, spool.job_ids()) if job and not common.finished(job)]
        return [(job["job_name"], job, None) for job in jobs], 0
    found, code = [], 0
    for text in ids:
        try:
            found.append((text,) + resolve(spool, text, command))
        except CommandError as e:
            sys.stderr.write(e.message + "\n")
            code = e.code
    return found, code


def task_letter(job: dict, index: int) -> str:
    state = job["states"][index][0]
    return {QUEUED: "Q", RUNNING: "R", EXITING: "E", DONE: "X"}[state]


def job_letter(job: dict) -> str:
    states = [state for state, _ in job["states"].values()]
    if job["array"] and job["flavor"] == "pbspro":
        return "Q" if all(s == QUEUED for s in states) else "B"
    if RUNNING in states or (QUEUED in states and DONE in states):
        return "R"
    return "Q" if QUEUED in states else "E"


# ------------------------------------------------------------------ qstat


def qstat(argv) -> int:
    options, ids = common.parse_options(argv, {"-u"}, {"-f", "-t", "-x"}, "qstat")
    opts = dict(options)
    spool = common.Spool("pbs", "qstat")
    found, code = each_job(spool, ids, "qstat")
    if "-u" in opts:
        found = [item for item in found if item[1]["owner"] in opts["-u"].split(",")]
    rows = []
    for _, job, indices in found:
        if indices is not None:
            rows.extend((job, index) for index in indices)
            continue
        if not job["array"] or "-t" not in opts or job["flavor"] == "pbspro":
            rows.append((job, None))
        if job["array"] and "-t" in opts:
            rows.extend((job, index) for index in sorted(job["states"])
                        if job["flavor"] == "pbspro" or job["states"][index][0] != DONE)
    if "-f" in opts:
        sys.stdout.write("".join(full_status(job, index) for job, index in rows))
    elif rows:
        print_table(rows, flavor())
    return code


def print_table(rows, kind: str) -> None:
    if kind == "torque":
        widths, gaps, cut = (25, 16, 15), (" ", " ", " "), ""
        header = ("Job ID", "Name", "User")
    else:
        widths, gaps, cut = (16, 16, 16), ("  ", " ", "  "), "*"
        header = ("Job id", "Name", "User")
    lines = [(header, "Time Use", "S", "Queue"), (tuple("-" * w for w in widths), "-" * 8, "-", "-" * 5)]
    for job, index in rows:
        if index is None:
            shown_id, name, letter = job["job_name"], job["name"], job_letter(job)
            pid, start = first_running(job)
        else:
            task = next(t for t in job["tasks"] if t["index"] == index)
            shown_id, name, letter = task["id"], task["name"], task_letter(job, index)
            record = job["states"][index][1]
            pid, start = record.get("pid"), record.get("start")
        used = "0" if letter == "Q" or not pid else common.cpu_time(pid, start)
        lines.append(((shown_id, name, job["owner"]), used, letter, job["queue"]))
    for (fields, used, letter, queue) in lines:
        cells = "".join(fit(f, w, cut) + g for f, w, g in zip(fields, widths, gaps))
        print("%s%8s %s %s" % (cells, used, letter, queue))


def fit(text: str, width: int, cut: str) -> str:
    if len(text) <= width:
        return text.ljust(width)
    return text[:width - len(cut)] + cut


def first_running(job: dict):
    for state, record in job["states"].values():
        if state in (RUNNING, EXITING):
            return record.get("pid"), record.get("start")
    return None, None


def full_status(job: dict, index) -> str:
    task = job["tasks"][0] if index is None else next(t for t in job["tasks"] if t["index"] == index)
    record = job["states"][task["index"]][1]
    letter = job_letter(job) if index is None else task_letter(job, index)
    fields = [
        ("Job_Name", job["name"] if index is None else task["name"]),
        ("Job_Owner", "%s@%s" % (job["owner"], job["host"])),
        ("job_state", letter), ("queue", job["queue"]), ("server", job["server"]),
        ("ctime", common.ctime(job["submitted_at"])),
        ("Error_Path", "%s:%s" % (job["host"], task["error_path"])),
        ("Join_Path", job["join"]),
        ("Output_Path", "%s:%s" % (job["host"], task["output_path"])),
    ]
    fields += [("Resource_List.%s" % key, value) for key, value in sorted(job["resources"].items())]
    if record.get("pid") and letter != "Q":
        fields += [("exec_host", "%s/0" % job["host"]), ("session_id", str(record["pid"])),
                   ("start_time", common.ctime(record["started_at"]))]
        used = int(time.time() - record["started_at"])
        fields.append(("resources_used.walltime", "%02d:%02d:%02d" % (used // 3600, used // 60 % 60, used % 60)))
        if job.get("walltime") and job["flavor"] == "torque":
            fields.append(("Walltime.Remaining", str(max(0, int(job["walltime"]) - used))))
    fields += [("Variable_List", ",".join("%s=%s" % kv for kv in sorted(job["origin"].items()))),
               ("euser", job["owner"]), ("submit_args", job["submit_args"]),
               ("init_work_dir", job["workdir"])]
    if job["array"] and job["flavor"] == "torque":
        fields.append(("job_array_request", job["array"]) if index is None else ("job_array_id", str(index)))
    elif job["array"]:
        fields += [("array", "True"), ("array_indices_submitted", job["array"])] if index is None else \
                  [("array_id", job["job_name"]), ("array_index", str(index))]
    shown = job["job_name"] if index is None else task["id"]
    return "Job Id: %s\n%s\n" % (shown, "".join("    %s = %s\n" % kv for kv in fields))


# ------------------------------------------------------------------ qselect


def qselect(argv) -> int:
    spool = common.Spool("pbs", "qselect")
    options, operands = common.parse_options(argv, {"-N", "-u", "-s", "-q", "-A"}, set(), "qselect", attached=True)
    if operands:
        raise CommandError("usage: qselect [-A account] [-N name] [-q destination] [-s states] [-u user_list] "
                           "(the fake knows these; it takes no job ids, got %s)" % " ".join(operands), 2)
    opts = dict(options)
    for job in map(spool.job, spool.job_ids()):
        if job is None or common.finished(job):
            continue
        if "-N" in opts and job["name"] != opts["-N"]:
            continue
        if "-u" in opts and job["owner"] not in opts["-u"].split(","):
            continue
        if "-q" in opts and job["queue"] != opts["-q"].split("@")[0]:
            continue
        if "-s" in opts and job_letter(job) not in opts["-s"]:
            continue
        print(job["job_name"])
    return 0


# ------------------------------------------------------------------ qdel and qsig


def qdel(argv) -> int:
    options, ids = common.parse_options(argv, {"-W", "-m"}, {"-x", "-p"}, "qdel")
    if not ids:
        raise CommandError("usage: qdel [-W delay|force] [-m message] [-p] job_identifier ...", 2)
    found, code = each_job(common.Spool("pbs", "qdel"), ids, "qdel")
    for _, job, indices in found:
        common.remove(job, indices if indices is not None else list(job["states"]), [signal.SIGTERM])
    return code


def qsig(argv) -> int:
    options, ids = common.parse_options(argv, {"-s"}, set(), "qsig")
    if not ids:
        raise CommandError("usage: qsig [-s signal] job_identifier ...", 2)
    name = dict(options).get("-s", "SIGTERM")
    sig = common.parse_signal(name)
    found, code = each_job(common.Spool("pbs", "qsig"), ids, "qsig")
    for text, job, indices in found:
        if sig is None:
            sys.stderr.write("qsig: Unknown/illegal signal name %s %s\n" % (name, text))
            code = BAD_SIGNAL
        elif not common.signal_tasks(job, indices, sig):
            sys.stderr.write("qsig: Request invalid for state of job %s\n" % text)
            code = BAD_STATE
    return code


COMMANDS = {"qsub": qsub, "qstat": qstat, "qselect": qselect, "qdel": qdel, "qsig": qsig}


def main(command: str, argv) -> int:
    return common.run_command(COMMANDS[command], argv)

