"""Fake LSF: bsub, bjobs, bkill.

What the formats are based on ([S] seen in public docs, issues or code; [K] knowledge, not
verified against a real cluster):
- bsub prints "Job <1> is submitted to default queue <normal>." or, with -q, "Job <1> is
  submitted to queue <short>." [S: TESTBED.md; equinor/ert LSF driver tests].
- bjobs columns JOBID USER STAT QUEUE FROM_HOST EXEC_HOST JOB_NAME SUBMIT_TIME, widths
  7/7/5/10/11/11/10 plus one space [S: the header, in public parsers such as beers' LSF
  scheduler; K: the widths]. One row per array element, named "name[i]". Without -w a field
  that does not fit is cut to "*" plus its tail [K]. EXEC_HOST is "N*host" with -n N, empty
  while pending [K].
- States: PEND, RUN, DONE (exit 0), EXIT (non-zero, killed, or removed while pending) [S: LSF
  7.3 manual]. Plain ``bjobs`` lists unfinished jobs only; ``bjobs ID`` and ``bjobs -a`` also show
  finished ones for CLEAN_PERIOD (FAKE_LSF_CLEAN_PERIOD seconds, default 3600, as LSF's one hour).
- With nothing to list: "No unfinished job found" (``-a``: "No job found") on stderr, exit 255
  [S: the message and a non-zero exit in brentp/bsub issue #11; K: 255]. Unknown id:
  "Job <7> is not found" on stderr, exit 255 [K; equinor/ert notes one site exiting 0].
- ``bjobs -J NAME`` lists this user's jobs of that name, and an array by its name without
  indices ("*" matches anything outside the brackets) [S: IBM's bjobs reference, -J job_name:
  "Displays information about the specified jobs or job arrays. Only displays jobs that were
  submitted by the user running this command"; its wildcard rule in the LSF 7 docs]. Like
  ``bjobs ID`` it shows finished jobs too for CLEAN_PERIOD [K]; none: "Job <NAME> is not found"
  on stderr, exit 255 [K].
- bkill prints "Job <1> is being terminated" (with -s: "is being signaled") on stdout; errors
  "Job <1>: Job has already finished" and "Job <1>: No matching job found" go to stderr with
  exit 255 [S: equinor/ert LSF driver tests].

Semantics: ``bsub < script`` reads #BSUB lines up to the first command and runs the script by
its #! line, else /bin/sh; ``bsub command args`` runs the words joined by spaces under /bin/sh
and, like LSF without LSB_BSUB_PARSE_SCRIPT, does not read #BSUB lines from a script named
there. Command-line options win over #BSUB lines. The job inherits the submission environment,
runs in the submission directory (or -cwd) and gets LSB_JOBID, LSB_JOBINDEX (0 outside arrays),
LSB_JOBNAME, LSB_QUEUE, LSB_HOSTS, LSB_MCPU_HOSTS, LSB_DJOB_NUMPROC, LS_SUBCWD. Arrays come from
-J "name[1-4]" ("1,3,5-9:2" and "%limit" accepted). -o / -e (append; -oo / -eo overwrite)
replace %J and %I and are written while the job runs, as with LSB_STDOUT_DIRECT=Y; a directory
gets "%J.out" / "%J.err"; -o without -e takes stderr too; a short job report is appended to the
-o file when the job ends. Without -o the output would be mailed: it stays in the spool.
-n N sizes LSB_HOSTS only (the script runs once). -W [hours:]minutes is enforced. bkill sends
SIGINT and SIGTERM, then SIGKILL after FAKE_BATCH_KILL_DELAY seconds (LSF's
JOB_TERMINATE_INTERVAL); ``bkill -s SIG`` signals every running task's process group.
"""
from __future__ import annotations

import fnmatch
import os
import re
import signal
import sys
import time

from . import common
from .common import DONE, EXITING, QUEUED, RUNNING, CommandError

FAILED = 255
CLUSTER = "fake_cluster"
ID_PATTERN = re.compile(r"^(\d+)(?:\[(\d+)\])?$")
BSUB_VALUE = {"-J", "-o", "-oo", "-e", "-eo", "-q", "-n", "-W", "-cwd", "-R", "-P", "-G", "-M", "-u",
              "-m", "-app", "-sla", "-g", "-L", "-c", "-We", "-w", "-E", "-Ep", "-i", "-Jd", "-b", "-t"}
BSUB_FLAGS = {"-x", "-B", "-N", "-r", "-rn", "-H"}


# ------------------------------------------------------------------ bsub


def bsub(argv) -> int:
    options, command = common.parse_options(argv, BSUB_VALUE, BSUB_FLAGS, "bsub")
    spool = common.Spool("lsf", "bsub")
    if command:
        text, header = " ".join(command), []
    else:
        text = sys.stdin.read()
        header, _ = common.parse_options(common.directive_args(text, "#BSUB"), BSUB_VALUE, BSUB_FLAGS, "bsub")
        if not text.strip():
            raise CommandError("No command is specified. Job not submitted.", FAILED)
    opts = dict(header + options)
    cwd = os.path.join(os.getcwd(), opts["-cwd"]) if "-cwd" in opts else os.getcwd()
    name, array = split_array(opts.get("-J", text.splitlines()[0] if text else "bsub"))
    indices = common.index_ranges(array, "bsub") if array else [0]
    walltime = run_limit(opts.get("-W", ""))
    job_id, job_dir = spool.new_job_dir()
    queue = opts.get("-q", "")
    host, slots = common.hostname(), int(opts.get("-n", "1").split(",")[0])
    if command:
        argv_run = ["/bin/sh", "-c", text]
    else:
        argv_run = common.script_shell_argv(common.save_script(job_dir, text))
    out_option = "-oo" if "-oo" in opts else "-o"
    err_option = "-eo" if "-eo" in opts else "-e"
    tasks = []
    for index in indices:
        element = "%s[%d]" % (name, index) if array else name
        out = output_path(opts.get(out_option), job_id, index, cwd, "out")
        err = output_path(opts.get(err_option), job_id, index, cwd, "err")
        env = dict(os.environ, LSB_JOBID=str(job_id), LSB_JOBINDEX=str(index), LSB_JOBNAME=element,
                   LSB_QUEUE=queue or "normal", LSB_HOSTS=" ".join([host] * slots),
                   LSB_MCPU_HOSTS="%s %d" % (host, slots), LSB_DJOB_NUMPROC=str(slots),
                   LS_SUBCWD=os.getcwd(), LSB_EXEC_CLUSTER=CLUSTER)
        if array:
            env["LSB_JOBINDEX_END"] = str(indices[-1])
        if out:
            env["LSB_OUTPUTFILE"] = out
        if err:
            env["LSB_ERRORFILE"] = err
        mailed = str(job_dir / "tasks" / ("%d.mail" % index))
        tasks.append({"index": index, "name": element, "argv": argv_run, "env": env, "cwd": cwd,
                      "stdout": out or mailed, "stdout_mode": "wb" if out_option == "-oo" else "ab",
                      "stderr": err or (out or mailed), "stderr_mode": "wb" if err_option == "-eo" else "ab",
                      "report": bool(out)})
    job = {"name": name, "array": array, "queue": queue or "normal", "owner": common.user(), "host": host,
           "slots": slots, "cwd": cwd, "tasks": tasks, "walltime": walltime}
    common.submit(job_id, job_dir, job, on_finish=report, stop_signals=(signal.SIGINT, signal.SIGTERM),
                  walltime=walltime)
    if queue:
        print("Job <%d> is submitted to queue <%s>." % (job_id, queue))
    else:
        print("Job <%d> is submitted to default queue <normal>." % job_id)
    return 0


def split_array(spec: str):
    match = re.match(r"^(.*)\[([^\]]+)\]$", spec)
    return (match.group(1), match.group(2)) if match else (spec, None)


def output_path(given, job_id: int, index: int, cwd: str, suffix: str):
    if not given:
        return None
    path = os.path.join(cwd, given.replace("%J", str(job_id)).replace("%I", str(index)))
    if given.endswith("/") or os.path.isdir(path):
        path = os.path.join(path, "%d.%s" % (job_id, suffix))
    return path


def run_limit(text: str):
    if not text:
        return None
    try:
        hours, _, minutes = text.split("/")[0].rpartition(":")
        return (int(hours or 0) * 60 + int(minutes)) * 60
    except ValueError:
        raise CommandError("%s: Bad RUNLIMIT specification. Job not submitted." % text, FAILED) from None


def report(task: dict, result: dict) -> None:
    """The summary LSF appends to the -o file when the job ends (shortened)."""
    if not task["report"]:
        return
    env = task["env"]
    if result["signal"]:
        outcome = "Exited with signal termination: %s." % signal.strsignal(result["signal"])
    elif result["returncode"]:
        outcome = "Exited with exit code %d." % result["returncode"]
    else:
        outcome = "Successfully completed."
    if result.get("walltime_exceeded"):
        outcome = "TERM_RUNLIMIT: job killed after reaching LSF run time limit.\n" + outcome
    elif result.get("removed"):
        outcome = "TERM_OWNER: job killed by owner.\n" + outcome
    lines = [
        "", "-" * 60,
        "Sender: LSF System <lsfadmin@%s>" % env["LSB_HOSTS"].split()[0],
        "Subject: Job %s: <%s> in cluster <%s> %s" % (env["LSB_JOBID"], task["name"], CLUSTER,
                                                       "Done" if outcome.startswith("Succ") else "Exited"),
        "", "Job <%s> was executed on host(s) <%s>, in queue <%s>, as user <%s> in cluster <%s>."
        % (task["name"], env["LSB_HOSTS"].split()[0], env["LSB_QUEUE"], common.user(), CLUSTER),
        "<%s> was used as the working directory." % task["cwd"],
        "Started at %s" % common.ctime(result["started_at"]),
        "Terminated at %s" % common.ctime(result["finished_at"]),
        "", outcome, ""]
    with open(task["stdout"], "a") as f:
        f.write("\n".join(lines))


# ------------------------------------------------------------------ finding jobs


def task_stat(job: dict, index: int) -> str:
    state, record = job["states"][index]
    if state == QUEUED:
        return "PEND"
    if state in (RUNNING, EXITING):
        return "RUN"
    return "DONE" if record.get("returncode") == 0 and not record.get("removed") else "EXIT"


def cleaned(job: dict) -> bool:
    """Finished longer ago than CLEAN_PERIOD: LSF has forgotten the job."""
    if not common.finished(job):
        return False
    ended = max([record.get("finished_at", 0) for _, record in job["states"].values()] + [job["submitted_at"]])
    return time.time() - ended > common.seconds_setting("FAKE_LSF_CLEAN_PERIOD", 3600.0)


def resolve(spool, text: str):
    """(job, indices) for "7" or "7[2]", or None if LSF does not know it."""
    match = ID_PATTERN.match(text)
    job = spool.job(int(match.group(1))) if match else None
    if job is None or cleaned(job):
        return None
    if match.group(2) is None:
        return job, sorted(job["states"])
    index = int(match.group(2))
    return (job, [index]) if job["array"] and index in job["states"] else None


# ------------------------------------------------------------------ bjobs


def bjobs(argv) -> int:
    options, ids = common.parse_options(argv, {"-u", "-q", "-J", "-m", "-P", "-g", "-o"},
                                        {"-a", "-w", "-noheader", "-d", "-p", "-r", "-hms"}, "bjobs")
    opts = dict(options)
    spool = common.Spool("lsf", "bjobs")
    rows, code = [], 0
    if "-J" in opts and not ids:
        rows = [(job, index) for job in map(spool.job, spool.job_ids()) if job and not cleaned(job)
                and job["owner"] == common.user() for index in sorted(job["states"])
                if named(job, index, opts["-J"])]
        if not rows:
            sys.stderr.write("Job <%s> is not found\n" % opts["-J"])
            return FAILED
    elif ids:
        for text in ids:
            found = resolve(spool, text)
            if found is None:
                sys.stderr.write("Job <%s> is not found\n" % text)
                code = FAILED
            else:
                rows.extend((found[0], index) for index in found[1])
    else:
        for job in map(spool.job, spool.job_ids()):
            if job and not cleaned(job):
                rows.extend((job, index) for index in sorted(job["states"]))
        wanted = {"-d": ("DONE", "EXIT"), "-p": ("PEND",), "-r": ("RUN",)}
        keep = [stats for flag, stats in wanted.items() if flag in opts]
        if keep:
            rows = [(job, i) for job, i in rows if any(task_stat(job, i) in stats for stats in keep)]
        elif "-a" not in opts:
            rows = [(job, i) for job, i in rows if task_stat(job, i) not in ("DONE", "EXIT")]
        if not rows:
            sys.stderr.write("No job found\n" if keep or "-a" in opts else "No unfinished job found\n")
            return FAILED
    if rows and "-o" in opts:
        print_fields(rows, opts["-o"].split(), header="-noheader" not in opts, hms="-hms" in opts)
    elif rows:
        print_table(rows, wide="-w" in opts, header="-noheader" not in opts)
    return code


OUTPUT_FIELDS = ("jobid", "stat", "job_name", "time_left")
"""The bjobs -o fields the fake knows."""


def print_fields(rows, fields, header: bool, hms: bool) -> None:
    """bjobs -o "FIELD ..." [-hms]: a column per field, named in capitals. time_left is what is
    left of the run limit (-W) as "H:MM L" ("HH:MM:SS L" with -hms), or "-" without one or
    before the job runs."""
    unknown = [f for f in fields if f.lower() not in OUTPUT_FIELDS]
    if unknown:
        raise CommandError("%s: Illegal field name (the fake knows %s)" % (unknown[0], " ".join(OUTPUT_FIELDS)),
                           FAILED)
    lines = [[f.upper() for f in fields]] if header else []
    for job, index in rows:
        stat = task_stat(job, index)
        task = next(t for t in job["tasks"] if t["index"] == index)
        record = job["states"][index][1]
        left = "-"
        if job.get("walltime") and stat == "RUN" and record.get("started_at"):
            seconds = max(0, int(job["walltime"] - (time.time() - record["started_at"])))
            left = ("%02d:%02d:%02d L" % (seconds // 3600, seconds // 60 % 60, seconds % 60) if hms
                    else "%d:%02d L" % (seconds // 3600, seconds // 60 % 60))
        values = {"jobid": str(job["id"]), "stat": stat, "job_name": task["name"], "time_left": left}
        lines.append([values[f.lower()] for f in fields])
    for line in lines:
        print(" ".join(line))


def named(job: dict, index: int, pattern: str) -> bool:
    """Whether -J pattern names the job (an array by its own name) or this element of it."""
    element = next(t["name"] for t in job["tasks"] if t["index"] == index)
    name, indices = split_array(pattern)
    if indices is not None:
        return fnmatch.fnmatchcase(element.split("[")[0], name) and element.endswith("[%s]" % indices)
    return fnmatch.fnmatchcase(job["name"], pattern) or fnmatch.fnmatchcase(element, pattern)


def print_table(rows, wide: bool, header: bool) -> None:
    widths = (7, 7, 5, 10, 11, 11, 10)
    lines = [("JOBID", "USER", "STAT", "QUEUE", "FROM_HOST", "EXEC_HOST", "JOB_NAME", "SUBMIT_TIME")][:header]
    for job, index in rows:
        stat = task_stat(job, index)
        task = next(t for t in job["tasks"] if t["index"] == index)
        exec_host = job["host"] if job["slots"] == 1 else "%d*%s" % (job["slots"], job["host"])
        submitted = time.strftime("%b %e %H:%M", time.localtime(job["submitted_at"]))
        lines.append((str(job["id"]), job["owner"], stat, job["queue"], job["host"],
                      "" if stat == "PEND" else exec_host, task["name"], submitted))
    for line in lines:
        cells = [text if wide or len(text) <= width else "*" + text[len(text) - width + 1:]
                 for text, width in zip(line, widths)]
        print(" ".join(c.ljust(w) for c, w in zip(cells, widths)) + " " + line[-1])


# ------------------------------------------------------------------ bkill


def bkill(argv) -> int:
    options, ids = common.parse_options(argv, {"-s", "-u", "-q", "-J", "-m"}, {"-r"}, "bkill")
    if not ids:
        raise CommandError("Usage: bkill [-s signal_value] job_ID ...", FAILED)
    name = dict(options).get("-s")
    sig = common.parse_signal(name) if name else None
    if name and sig is None:
        raise CommandError("%s: Illegal signal value" % name, FAILED)
    spool = common.Spool("lsf", "bkill")
    code = 0
    for text in ids:
        found = resolve(spool, text)
        if found is None:
            sys.stderr.write("Job <%s>: No matching job found\n" % text)
            code = FAILED
            continue
        job, indices = found
        if all(job["states"][i][0] == DONE for i in indices):
            sys.stderr.write("Job <%s>: Job has already finished\n" % text)
            code = FAILED
        elif sig is not None:
            common.signal_tasks(job, indices, sig)
            print("Job <%s> is being signaled" % text)
        else:
            common.remove(job, indices, [signal.SIGINT, signal.SIGTERM])
            print("Job <%s> is being terminated" % text)
    return code


COMMANDS = {"bsub": bsub, "bjobs": bjobs, "bkill": bkill}


def main(command: str, argv) -> int:
    return common.run_command(COMMANDS[command], argv)

