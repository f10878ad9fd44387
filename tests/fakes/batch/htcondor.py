"""Fake HTCondor: condor_submit, condor_q, condor_rm.

What the formats are based on ([S] seen in public docs, issues or code; [K] knowledge, not
verified against a real pool):
- condor_submit prints "Submitting job(s)" with one dot per job, then "3 job(s) submitted to
  cluster 42." [S: pegasus and OSG tutorials; ipyparallel parses it with ``(\\d+)\\.$``].
- condor_q default batch view, as HTCondor >= 8.6 prints it [S: a HTCondor 8.8 walk-through and
  datalad-handbook, both showing the "-- Schedd:" line, the header below and the three "Total
  for" lines]. The HOLD column appears only when something is held, which never happens here:
      OWNER BATCH_NAME    SUBMITTED   DONE   RUN    IDLE  TOTAL JOB_IDS
      root  ID: 1       11/27 17:04      _      1      _      1 1.0-2
- ``condor_q -nobatch [cluster|cluster.proc|owner]``: " ID      OWNER            SUBMITTED
  RUN_TIME ST PRI SIZE CMD" with ST I (idle), R (running), X (removed, still stopping)
  [S: HTCondor manual and OSG tutorial output]. ``-af attr ...`` prints ClusterId, ProcId,
  JobStatus (1 idle, 2 running, 3 removed), Owner, Cmd, Args, Iwd, JobBatchName, QDate, Out,
  Err, UserLog, one line per job, space-separated; anything else is "undefined" [K].
- ``-constraint EXPR``: the fake evaluates ``Attr == "text"`` or ``Attr == number`` (also
  ``=?=``, ``!=``, ``=!=``) joined by ``&&``, over the attributes above, and refuses other
  expressions. A restriction list with an owner and a constraint matches jobs of that owner
  that meet it [S: condor_q man page, "If owner restrictions are present, the job matches the
  list if it matches one of the owner restrictions and at least one non-owner restriction"].
  ``batch_name = NAME`` (or ``+JobBatchName = "NAME"``) in the description sets JobBatchName,
  undefined otherwise [S: the submit-command table of a public HTCondor client,
  "batch_name" -> JobBatchName; the man page: -batch-name]. Finished jobs leave the queue at once
  (condor_history is not faked). An unknown cluster just lists nothing, exit 0 [K].
- condor_rm 42: "All jobs in cluster 42 have been marked for removal" [S: TESTBED.md, a public
  test suite]; unknown: "Couldn't find/remove all jobs in cluster 42" on stderr, exit 1
  [S: message; K: stream and code]. ``condor_rm 42.0``: "Job 42.0 marked for removal" [S]; unknown:
  "Couldn't find/remove job 42.0", exit 1 [K].
- The job event log (``log =``) gets 000 submitted, 001 executing, 005 terminated or 009 aborted
  events in the "mm/dd HH:MM:SS" style of HTCondor 8 [S: a HTCondor 8.8 walk-through].

Semantics: "key = value" lines (keys case-insensitive, "\\" continues a line, "+Attr" lines
accepted), macros $(Cluster) $(ClusterId) $(Process) $(ProcId), $ENV(NAME) and any key defined
in the file, then ``queue [N]`` (several queue statements are fine; other queue forms are
refused). Only the vanilla universe, run as on a shared filesystem: the job runs in
``initialdir`` (default: where condor_submit ran); output, error, input and log are relative to
it; the executable is relative to the submit directory, must exist and is run directly (a
script needs its #! line). ``arguments`` in the new syntax ("...", with '' quoting, "" for a
double quote) or the old one (split on spaces, \\" for a quote); ``environment`` in the new
syntax ("A=1 B='x y'") or the old one (A=1;B=2); ``getenv = True`` (or a list of names) copies
the submitter's variables, otherwise the job gets only ``environment`` plus _CONDOR_SCRATCH_DIR,
_CONDOR_SLOT, _CONDOR_JOB_IWD, _CONDOR_JOB_AD (a file with ClusterId and ProcId), TMPDIR and
BATCH_SYSTEM -- no PATH, as on a real execute node. output / error are written while the job
runs. condor_rm sends SIGTERM to every process group, then SIGKILL after FAKE_BATCH_KILL_DELAY.
"""
from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

from . import common
from .common import DONE, QUEUED, CommandError

MACRO = re.compile(r"(?<!\$)\$(ENV)?\(([A-Za-z_][A-Za-z0-9_.]*)\)")
SCHEDD_ADDRESS = "<127.0.0.1:9618?addrs=127.0.0.1-9618&noUDP&sock=schedd_1_1>"


# ------------------------------------------------------------------ condor_submit


def condor_submit(argv) -> int:
    options, files = common.parse_options(argv, {"-a", "-append", "-batch-name"}, {"-verbose"}, "condor_submit")
    spool = common.Spool("htcondor", "condor_submit")
    if len(files) > 1:
        raise CommandError("ERROR: the fake condor_submit takes one submit description file", 1)
    try:
        text = Path(files[0]).read_text() if files and files[0] != "-" else sys.stdin.read()
    except OSError as e:
        raise CommandError("ERROR: Can't open \"%s\"  with flags 00 (%s)" % (files[0], e.strerror), 1)
    appended = [value for option, value in options if option in ("-a", "-append")]
    statements = parse_description(text, appended)
    if not statements:
        raise CommandError("ERROR: no 'queue' statement in the submit description", 1)
    submit_dir = os.getcwd()
    cluster, job_dir = spool.new_job_dir()
    procs = []
    for values, count in statements:
        for _ in range(count):
            procs.append(make_proc(values, cluster, len(procs), submit_dir, job_dir, dict(options)))
    for proc in procs:
        log_event(proc, "000", "Job submitted from host: %s" % SCHEDD_ADDRESS)
    given = dict(options).get("-batch-name") or procs[0]["batch_name"]
    job = {"owner": common.user(), "batch_name": given or "ID: %d" % cluster, "job_batch_name": given or None,
           "tasks": procs}
    common.submit(cluster, job_dir, job, on_start=started, on_finish=ended)
    print("Submitting job(s)" + "." * len(procs))
    print("%d job(s) submitted to cluster %d." % (len(procs), cluster))
    return 0


def parse_description(text: str, appended) -> list:
    """[(values, count)] for each queue statement, values as they stood at that statement."""
    values, statements = {}, []
    lines = re.sub(r"\\\n", "", text).splitlines() + list(appended)
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        queue = re.match(r"(?i)^queue\b\s*(.*)$", line)
        if queue:
            count = queue.group(1).strip()
            if count and not count.isdigit():
                raise CommandError("ERROR: the fake condor_submit supports only 'queue [N]', not %r" % line, 1)
            statements.append((dict(values), int(count or 1)))
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise CommandError("ERROR: on Line %d of submit file: syntax error: %s" % (number, line), 1)
        values[key.strip().lower()] = value.strip()
    return statements


def expand(value: str, macros: dict, depth: int = 0) -> str:
    def one(match):
        if match.group(1):
            return os.environ.get(match.group(2), "")
        return expand(macros.get(match.group(2).lower(), ""), macros, depth + 1) if depth < 10 else ""
    return MACRO.sub(one, value)


def make_proc(values: dict, cluster: int, process: int, submit_dir: str, job_dir: Path, options: dict) -> dict:
    macros = dict(values, cluster=str(cluster), clusterid=str(cluster), process=str(process), procid=str(process))

    def get(key, default=""):
        return expand(values.get(key, default), macros).strip()

    universe = get("universe", "vanilla").lower()
    if universe != "vanilla":
        raise CommandError("ERROR: the fake HTCondor runs only the vanilla universe, not %r" % universe, 1)
    executable = get("executable")
    if not executable:
        raise CommandError("ERROR: No 'executable' parameter was provided\nERROR: Failed to queue job.", 1)
    executable = os.path.join(submit_dir, os.path.expanduser(executable))
    if not os.path.isfile(executable):
        raise CommandError("ERROR: Executable file %s does not exist" % executable, 1)
    iwd = os.path.join(submit_dir, get("initialdir") or get("iwd") or ".")
    if not os.path.isdir(iwd):
        raise CommandError("ERROR: Initialdir %s does not exist" % iwd, 1)

    def in_iwd(key):
        path = get(key)
        return os.path.normpath(os.path.join(iwd, path)) if path else ""

    scratch = job_dir / "tasks" / ("%d.scratch" % process)
    scratch.mkdir()
    ad = job_dir / "tasks" / ("%d.ad" % process)
    ad.write_text('ClusterId = %d\nProcId = %d\nOwner = "%s"\nIwd = "%s"\nCmd = "%s"\n'
                  % (cluster, process, common.user(), iwd, executable))
    args = parse_arguments(get("arguments") or get("args"))
    env = environment_from(get("getenv"))
    env.update(parse_environment(get("environment") or get("env")))
    env.update(_CONDOR_SCRATCH_DIR=str(scratch), _CONDOR_SLOT="slot1_%d" % (process + 1), _CONDOR_JOB_IWD=iwd,
               _CONDOR_JOB_AD=str(ad), TMPDIR=str(scratch), TMP=str(scratch), TEMP=str(scratch),
               BATCH_SYSTEM="HTCondor")
    output, error = in_iwd("output") or os.devnull, in_iwd("error") or os.devnull
    return {"index": process, "cluster": cluster, "argv": [executable] + args, "env": env, "cwd": iwd,
            "stdin": in_iwd("input"), "stdout": output, "stderr": error, "log": in_iwd("log"),
            "args": " ".join(args), "batch_name": get("batch_name") or get("+jobbatchname").strip('"')}


def parse_arguments(text: str) -> list:
    if not (text.startswith('"') and text.endswith('"') and len(text) > 1):
        return [word.replace('\\"', '"') for word in text.split()]
    body, words, word, quoted, started, i = text[1:-1], [], "", False, False, 0
    while i < len(body):
        char = body[i]
        if char == '"' and body[i + 1:i + 2] == '"':
            word, started, i = word + '"', True, i + 2
            continue
        if char == "'":
            if quoted and body[i + 1:i + 2] == "'":
                word, i = word + "'", i + 2
                continue
            quoted, started = not quoted, True
        elif char.isspace() and not quoted:
            if started:
                words.append(word)
            word, started = "", False
        else:
            word, started = word + char, True
        i += 1
    if quoted:
        raise CommandError("ERROR: Arguments string %s has an unterminated single quote" % text, 1)
    return words + ([word] if started else [])


def parse_environment(text: str) -> dict:
    if text.startswith('"') and text.endswith('"') and len(text) > 1:
        entries = parse_arguments(text)
    else:
        entries = [entry for entry in text.split(";") if entry.strip()]
    env = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep:
            raise CommandError("ERROR: environment entry %r is not NAME=VALUE" % entry, 1)
        env[key.strip()] = value
    return env


def environment_from(getenv: str) -> dict:
    if getenv.lower() in ("", "false", "no", "0"):
        return {}
    if getenv.lower() in ("true", "yes", "1"):
        return dict(os.environ)
    names = [name for name in re.split(r"[\s,]+", getenv) if name]
    return {name: os.environ[name] for name in names if name in os.environ}


def log_event(proc: dict, code: str, text: str) -> None:
    if proc["log"]:
        stamp = time.strftime("%m/%d %H:%M:%S")
        with open(proc["log"], "a") as f:
            f.write("%s (%03d.%03d.000) %s %s\n...\n" % (code, proc["cluster"], proc["index"], stamp, text))


def started(proc: dict, record: dict) -> None:
    log_event(proc, "001", "Job executing on host: %s" % SCHEDD_ADDRESS)


def ended(proc: dict, result: dict) -> None:
    if result.get("removed"):
        log_event(proc, "009", "Job was aborted.\n\tvia condor_rm (by user %s)" % common.user())
    elif result["signal"]:
        log_event(proc, "005", "Job terminated.\n\t(0) Abnormal termination (signal %d)" % result["signal"])
    else:
        log_event(proc, "005", "Job terminated.\n\t(1) Normal termination (return value %d)" % result["returncode"])


# ------------------------------------------------------------------ the queue


def in_queue(spool) -> list:
    """(job, proc, status letter) for every job still in the queue."""
    found = []
    for job in map(spool.job, spool.job_ids()):
        if job is None:
            continue
        removed = common.removed_indices(Path(job["dir"]))
        for proc in job["tasks"]:
            state = job["states"][proc["index"]][0]
            if state != DONE:
                letter = "X" if proc["index"] in removed else ("I" if state == QUEUED else "R")
                found.append((job, proc, letter))
    return found


def matches(proc: dict, job: dict, restriction: str) -> bool:
    if re.match(r"^\d+$", restriction):
        return proc["cluster"] == int(restriction)
    if re.match(r"^\d+\.\d+$", restriction):
        return "%d.%d" % (proc["cluster"], proc["index"]) == restriction
    return job["owner"] == restriction


CONDITION = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(==|=\?=|!=|=!=)\s*("(?:[^"\\]|\\.)*"|-?\d+)\s*$')


def parse_constraint(text: str) -> list:
    """[(attribute, operator, value)] of a ``A == "x" && B == 2`` constraint."""
    conditions = []
    for part in text.split("&&"):
        match = CONDITION.match(part)
        if not match:
            raise CommandError("Error: the fake condor_q evaluates only Attr == \"text\" or Attr == number "
                               "joined by &&, not %r" % text, 1)
        name, operator, value = match.groups()
        conditions.append((name, operator, value[1:-1].replace('\\"', '"') if value.startswith('"') else value))
    return conditions


def meets(job: dict, proc: dict, letter: str, conditions) -> bool:
    for name, operator, value in conditions:
        actual = attribute(job, proc, letter, name)
        if operator in ("==", "!="):  # ClassAd == compares strings without case, =?= with it
            actual, value = actual.lower(), value.lower()
        equal = actual == value and actual != "undefined"
        if equal != (operator in ("==", "=?=")):
            return False
    return True


def condor_q(argv) -> int:
    nobatch, attributes, restrictions, constraints = False, None, [], []
    words = list(argv)
    while words:
        word = words.pop(0)
        if word in ("-constraint", "-const"):
            if not words:
                raise CommandError("Error: -constraint requires another argument", 1)
            constraints.append(parse_constraint(words.pop(0)))
        elif attributes is not None and not word.startswith("-"):
            attributes.append(word)
        elif word in ("-nobatch", "-batch"):
            nobatch = word == "-nobatch"
        elif word.startswith("-af") or word == "-autoformat":
            attributes = []
        elif word in ("-allusers", "-totals", "-wide", "-w"):
            pass
        elif word.startswith("-"):
            raise CommandError("Error: the fake condor_q does not know %s" % word, 1)
        else:
            restrictions.append(word)
    spool = common.Spool("htcondor", "condor_q")
    queue = in_queue(spool)
    owners = [r for r in restrictions if not re.match(r"^\d+(\.\d+)?$", r)]
    ids = [r for r in restrictions if r not in owners]
    shown = [(job, proc, letter) for job, proc, letter in queue
             if (not owners or job["owner"] in owners)
             and ((not ids and not constraints) or any(matches(proc, job, r) for r in ids)
                  or any(meets(job, proc, letter, c) for c in constraints))]
    if attributes is not None:
        for job, proc, letter in shown:
            print(" ".join(attribute(job, proc, letter, name) for name in attributes))
        return 0
    out = ["", "", "-- Schedd: %s : <127.0.0.1:9618?... @ %s" % (common.hostname(), time.strftime("%m/%d/%y %H:%M:%S"))]
    out.extend(nobatch_lines(shown) if nobatch else batch_lines(shown))
    out.append("")
    owner = common.user()
    out.append(totals("Total for query", shown) + " ")
    out.append(totals("Total for %s" % owner, [item for item in queue if item[0]["owner"] == owner]) + " ")
    out.append(totals("Total for all users", queue))
    print("\n".join(out) + "\n")
    return 0


def submitted(job: dict, pad: str = "%-5s %s") -> str:
    t = time.localtime(job["submitted_at"])
    return pad % ("%d/%d" % (t.tm_mon, t.tm_mday), time.strftime("%H:%M", t))


def batch_lines(shown) -> list:
    clusters = {}
    for job, proc, letter in shown:
        clusters.setdefault(job["id"], (job, []))[1].append((proc, letter))
    width = max([5] + [len(job["owner"]) for job, _ in clusters.values()])
    lines = ["OWNER".ljust(width) + " BATCH_NAME    SUBMITTED   DONE   RUN    IDLE  TOTAL JOB_IDS"]
    for cluster, (job, procs) in sorted(clusters.items()):
        states = [state for state, _ in job["states"].values()]
        counts = [states.count(DONE), sum(1 for _, l in procs if l == "R"), sum(1 for _, l in procs if l == "I"),
                  len(job["tasks"])]
        numbers = [p["index"] for p, _ in procs]
        ids = "%d.%d" % (cluster, min(numbers)) + ("-%d" % max(numbers) if len(numbers) > 1 else "")
        lines.append("%s %-11s %s%s %s" % (job["owner"].ljust(width), job["batch_name"], submitted(job),
                                          "".join("%7s" % (n or "_") for n in counts), ids))
    return lines


def nobatch_lines(shown) -> list:
    lines = [" ID      OWNER            SUBMITTED     RUN_TIME ST PRI SIZE CMD"]
    for job, proc, letter in shown:
        record = job["states"][proc["index"]][1]
        run = int(time.time() - record["started_at"]) if record.get("started_at") else 0
        run_time = "%d+%02d:%02d:%02d" % (run // 86400, run // 3600 % 24, run // 60 % 60, run % 60)
        command = " ".join([os.path.basename(proc["argv"][0])] + proc["argv"][1:])
        lines.append("%4d.%-3d %-14s %11s %12s %-2s %-3d %4.1f %s" % (
            proc["cluster"], proc["index"], job["owner"], submitted(job, "%5s %s"), run_time, letter, 0, 0.0, command))
    return lines


def totals(label: str, items) -> str:
    letters = [letter for _, _, letter in items]
    return "%s: %d jobs; 0 completed, %d removed, %d idle, %d running, 0 held, 0 suspended" % (
        label, len(items), letters.count("X"), letters.count("I"), letters.count("R"))


def attribute(job: dict, proc: dict, letter: str, name: str) -> str:
    values = {"clusterid": proc["cluster"], "procid": proc["index"], "jobstatus": {"I": 1, "R": 2, "X": 3}[letter],
              "owner": job["owner"], "cmd": proc["argv"][0], "args": proc["args"], "arguments": proc["args"],
              "iwd": proc["cwd"], "jobbatchname": job.get("job_batch_name") or "undefined", "qdate": int(job["submitted_at"]),
              "out": proc["stdout"], "err": proc["stderr"], "userlog": proc["log"] or "undefined"}
    return str(values.get(name.lower(), "undefined"))


# ------------------------------------------------------------------ condor_rm


def condor_rm(argv) -> int:
    if not argv or any(word.startswith("-") for word in argv):
        raise CommandError("Usage: condor_rm cluster | cluster.proc ... (the fake knows no options)", 1)
    spool = common.Spool("htcondor", "condor_rm")
    queue = in_queue(spool)
    code = 0
    for target in argv:
        if not re.match(r"^\d+(\.\d+)?$", target):
            raise CommandError("condor_rm: the fake removes clusters and cluster.proc ids only, not %r" % target, 1)
        chosen = [(job, proc) for job, proc, _ in queue if matches(proc, job, target)]
        if not chosen:
            what = "all jobs in cluster" if "." not in target else "job"
            sys.stderr.write("Couldn't find/remove %s %s\n" % (what, target))
            code = 1
            continue
        job = chosen[0][0]
        common.remove(job, [proc["index"] for _, proc in chosen], [signal.SIGTERM])
        if "." in target:
            print("Job %s marked for removal" % target)
        else:
            print("All jobs in cluster %s have been marked for removal" % target)
    return code


COMMANDS = {"condor_submit": condor_submit, "condor_q": condor_q, "condor_rm": condor_rm}


def main(command: str, argv) -> int:
    return common.run_command(COMMANDS[command], argv)
