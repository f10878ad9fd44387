"""Fake Windows HPC (HPC Pack) ``job`` command: job submit, job view, job list, job cancel.

What the formats are based on ([S] seen in public docs or code; [K] knowledge, not verified
against a real head node):
- ``job submit /jobfile:FILE [/scheduler:HOST]`` prints "Job has been submitted. ID: 42." and
  exits 0 [S: IPython 0.13's and ipyparallel's WindowsHPCLauncher (the command and its
  arguments, job id by regexp); the exact sentence in mrc-ide's didehpc/hipercow client tests
  and an EMOD MATLAB script parsing ``job submit`` with sscanf].
- The job file is IPython 0.13's winhpcjob.py shape: <Job> (namespace
  http://schemas.microsoft.com/HPCS2008/scheduler/) holding <Tasks> of <Task> elements with
  CommandLine, WorkDirectory, StdOutFilePath, StdErrFilePath and <EnvironmentVariables> of
  <Variable><Name/><Value/></Variable> [S: winhpcjob.py]. Parametric tasks: IsParametric="true"
  (or Type="ParametricSweep") with StartValue, EndValue, IncrementValue, "*" in the command line
  and paths replaced by the instance number [K]. Unknown Job/Task attributes or a Priority
  outside Lowest..Highest are refused: "The job file is not valid: ..." on stderr, exit 1 [K].
- ``job view ID`` prints "Name : value" lines, one "State : <state>" line [S: the EMOD script
  matches "\\nState" and "State\\W*Finished"]; the other lines are [K]. States: Queued, Running,
  Canceling, Canceled, Finished, Failed [S: Microsoft's "Understanding Job and Task States"].
  Finished and canceled jobs stay listed (TTLCompletedJobs) [S: IScheduler::CancelJob docs].
- ``job cancel ID`` prints nothing, exit 0 [K]; a job no longer Configuring/Submitted/
  Validating/Queued/Running cannot be canceled [S: IScheduler::CancelJob docs]: "The job
  cannot be canceled in its current state (Finished)." on stderr, exit 1 [K]. An unknown id:
  "Job 7 does not exist." on stderr, exit 1 [K].
- ``job list [/all] [/format:{list|table}] [/jobname:NAME|PREFIX*|*] [/state:S1,S2|All]
  [/user:NAME|*] [/scheduler:HOST]``: without /all, /state or /user only the current user's
  Queued and Running jobs [S: Microsoft's "job list" reference for HPC Pack 2008-2012 R2, the
  syntax and that default; table is the default format]. The table's columns (Id, Owner, Name,
  State, Priority, each row starting with the job's Id, a dashes line under the header) and the
  list format ("Name : value" lines as job view prints, a blank line between jobs) are [K]; an
  empty selection prints the header only, exit 0 [K].
- view and cancel take their switches before or after the id [S: the EMOD script writes
  ``job view /scheduler:HOST ID``, ipyparallel ``job cancel ID /scheduler:HOST``]; submit's
  switches come before a command line.
- /scheduler:HOST must be this host's name, localhost or FAKE_WINHPC_SCHEDULER; otherwise
  "Unable to connect to the head node HOST." on stderr, exit 1 [K].

Semantics: tasks do not inherit the submitting environment: they get HOME, USER, PATH, the
task's EnvironmentVariables and CCP_JOBID, CCP_TASKID, CCP_TASKINSTANCEID (the parametric
instance, 0 otherwise), CCP_JOBNAME, CCP_SCHEDULER [K: the variable names from HPC Pack's
docs, not checked here]. A command line runs under /bin/sh -c (HPC Pack's Linux nodes), in
WorkDirectory (default the home dir); relative output paths are in WorkDirectory; output is
written while the task runs. RuntimeSeconds is enforced. Cancel sends SIGTERM, then SIGKILL
after FAKE_BATCH_KILL_DELAY (the task cancel grace period).
"""
from __future__ import annotations

import os
import pwd
import signal
import sys
import time
import xml.etree.ElementTree as ET

from . import common
from .common import EXITING, QUEUED, RUNNING, CommandError

FAILED = 1
JOB_ATTRIBUTES = {"Version", "Name", "UnitType", "MinCores", "MaxCores", "MinSockets", "MaxSockets", "MinNodes",
                  "MaxNodes", "RunUntilCanceled", "IsExclusive", "UserName", "JobType", "Priority",
                  "RequestedNodes", "AutoCalculateMax", "AutoCalculateMin", "Project", "Owner", "NodeGroups",
                  "RuntimeSeconds", "JobTemplate", "FailOnTaskFailure"}
TASK_ATTRIBUTES = {"Version", "Name", "UnitType", "MinCores", "MaxCores", "MinSockets", "MaxSockets", "MinNodes",
                   "MaxNodes", "CommandLine", "WorkDirectory", "IsRerunnable", "StdOutFilePath", "StdErrFilePath",
                   "StdInFilePath", "IsParametric", "Type", "StartValue", "EndValue", "IncrementValue",
                   "RuntimeSeconds"}
PRIORITIES = ("Lowest", "BelowNormal", "Normal", "AboveNormal", "Highest")
CANCELABLE = ("Queued", "Running")


def options(argv, known, command: str, anywhere: bool = False):
    """{name: value} of the /name:value switches (case-insensitive) and the other words.
    Switches come before submit's command line, and anywhere for view and cancel (``job view
    ID /scheduler:HOST``, as Microsoft's syntax for the job command writes them)."""
    found, rest = {}, []
    for word in argv:
        if word.startswith("/") and (anywhere or not rest):
            name, _, value = word[1:].partition(":")
            if name.lower() not in known:
                raise CommandError("job %s: unknown option /%s (the fake knows /%s)"
                                   % (command, name, " /".join(sorted(known))), FAILED)
            found[name.lower()] = value
        else:
            rest.append(word)
    return found, rest


def check_scheduler(opts: dict) -> str:
    name = opts.get("scheduler", "")
    allowed = {"", "localhost", common.hostname(), os.environ.get("FAKE_WINHPC_SCHEDULER", "")}
    if name not in allowed:
        raise CommandError("Unable to connect to the head node %s." % name, FAILED)
    return name or os.environ.get("FAKE_WINHPC_SCHEDULER", "") or common.hostname()


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def invalid(problem: str) -> CommandError:
    return CommandError("The job file is not valid: %s" % problem, FAILED)


def read_job_file(path: str):
    try:
        root = ET.parse(path).getroot()
    except OSError as e:
        raise CommandError("Cannot read the job file %s: %s" % (path, e.strerror or e), FAILED) from None
    except ET.ParseError as e:
        raise invalid(str(e)) from None
    if local(root.tag) != "Job":
        raise invalid("the root element is <%s>, not <Job>" % local(root.tag))
    for name in set(root.attrib) - JOB_ATTRIBUTES:
        raise invalid("unknown Job attribute %s" % name)
    if root.get("Priority", "Normal") not in PRIORITIES:
        raise invalid("Priority %r is not one of %s" % (root.get("Priority"), ", ".join(PRIORITIES)))
    tasks = [t for t in root.iter() if local(t.tag) == "Task"]
    if not tasks:
        raise invalid("the job has no tasks")
    for task in tasks:
        for name in set(task.attrib) - TASK_ATTRIBUTES:
            raise invalid("unknown Task attribute %s" % name)
        if not task.get("CommandLine"):
            raise invalid("a task has no CommandLine")
    return root, tasks


def instances(task):
    """The parametric instance numbers of a task, or [0] for a plain one."""
    if task.get("IsParametric", "false").lower() != "true" and task.get("Type") != "ParametricSweep":
        return [0]
    try:
        start, end, step = (int(task.get(k, d)) for k, d in (("StartValue", "1"), ("EndValue", "1"),
                                                              ("IncrementValue", "1")))
    except ValueError:
        raise invalid("StartValue, EndValue and IncrementValue must be integers") from None
    if step <= 0 or end < start:
        raise invalid("the parametric range %d..%d step %d is empty" % (start, end, step))
    return list(range(start, end + 1, step))


def variables(task) -> dict:
    found = {}
    for var in task.iter():
        if local(var.tag) == "Variable":
            parts = {local(c.tag): c.text or "" for c in var}
            found[parts.get("Name", "")] = parts.get("Value", "")
    return found


# ------------------------------------------------------------------ job submit


def submit(argv) -> int:
    opts, rest = options(argv, {"jobfile", "scheduler", "jobname"}, "submit")
    scheduler = check_scheduler(opts)
    spool = common.Spool("windowshpc", "job")
    if "jobfile" in opts:
        if rest:
            raise CommandError("job submit: give a /jobfile: or a command line, not both", FAILED)
        root, elements = read_job_file(os.path.expanduser(opts["jobfile"]))
        name = opts.get("jobname") or root.get("Name", "")
        runtime = int(root.get("RuntimeSeconds", "0") or 0)
        priority = root.get("Priority", "Normal")
        project = root.get("Project", "")
    elif rest:
        elements = [ET.Element("Task", {"CommandLine": " ".join(rest)})]
        name, runtime, priority, project = opts.get("jobname", ""), 0, "Normal", ""
    else:
        raise CommandError("job submit: give /jobfile:FILE or a command line", FAILED)
    job_id, job_dir = spool.new_job_dir()
    account = pwd.getpwuid(os.getuid())
    tasks = []
    for task_number, element in enumerate(elements, 1):
        for instance in instances(element):
            def sub(text):
                return text.replace("*", str(instance)) if instance else text
            cwd = os.path.expanduser(sub(element.get("WorkDirectory", "")) or account.pw_dir)
            env = {"HOME": account.pw_dir, "USER": account.pw_name, "PATH": "/bin:/usr/bin"}
            env.update(variables(element))
            env.update(CCP_JOBID=str(job_id), CCP_TASKID=str(task_number), CCP_TASKINSTANCEID=str(instance),
                       CCP_JOBNAME=name, CCP_SCHEDULER=scheduler)
            out = os.path.join(cwd, sub(element.get("StdOutFilePath", "")) or os.devnull)
            err = os.path.join(cwd, sub(element.get("StdErrFilePath", ""))) if element.get("StdErrFilePath") else out
            tasks.append({"index": len(tasks) + 1, "task_id": task_number, "instance": instance,
                          "argv": ["/bin/sh", "-c", sub(element.get("CommandLine"))], "env": env, "cwd": cwd,
                          "stdout": out, "stderr": err})
    job = {"name": name, "owner": account.pw_name, "priority": priority, "project": project,
           "scheduler": scheduler, "tasks": tasks, "task_count": len(elements)}
    common.submit(job_id, job_dir, job, walltime=runtime or None)
    print("Job has been submitted. ID: %d." % job_id)
    return 0


# ------------------------------------------------------------------ job view and cancel


def find(argv, command: str):
    opts, rest = options(argv, {"scheduler", "message", "detailed"}, command, anywhere=True)
    check_scheduler(opts)
    if len(rest) != 1 or not rest[0].isdigit():
        raise CommandError("usage: job %s JOBID [/scheduler:HOST]" % command, FAILED)
    job = common.Spool("windowshpc", "job").job(int(rest[0]))
    if job is None:
        raise CommandError("Job %s does not exist." % rest[0], FAILED)
    return job


def job_state(job: dict) -> str:
    states = [state for state, _ in job["states"].values()]
    live = any(s in (RUNNING, EXITING) for s in states)
    if common.removed_indices(job["dir"]):
        return "Canceling" if live else "Canceled"
    if all(s == QUEUED for s in states):
        return "Queued"
    if live or QUEUED in states:
        return "Running"
    codes = [record.get("returncode") for _, record in job["states"].values()]
    return "Finished" if all(c == 0 for c in codes) else "Failed"


def view(argv) -> int:
    job = find(argv, "view")
    rows = [("Job ID", job["id"]), ("Job Name", job["name"]), ("Owner", job["owner"]), ("State", job_state(job)),
            ("Priority", job["priority"]), ("Project", job["project"]),
            ("Submit Time", time.strftime("%m/%d/%Y %I:%M:%S %p", time.localtime(job["submitted_at"]))),
            ("Number of Tasks", job["task_count"])]
    for key, value in rows:
        print("%-24s: %s" % (key, value))
    return 0


LIST_COLUMNS = (("Id", 11), ("Owner", 16), ("Name", 26), ("State", 12), ("Priority", 11))


def list_jobs(argv) -> int:
    opts, rest = options(argv, {"all", "format", "jobname", "jobtemplate", "pool", "project", "scheduler", "state",
                                "status", "submittime", "user"}, "list", anywhere=True)
    check_scheduler(opts)
    if rest:
        raise CommandError("usage: job list [/all] [/format:{list|table}] [/jobname:NAME] [/state:STATES] "
                           "[/user:NAME] [/scheduler:HOST] (no job ids; got %s)" % " ".join(rest), FAILED)
    shape = opts.get("format", "table").lower()
    if shape not in ("list", "table"):
        raise CommandError("job list: /format must be list or table, not %s" % opts["format"], FAILED)
    everything = "all" in opts
    states = [s.strip().lower() for s in (opts.get("state") or opts.get("status") or "").split(",") if s.strip()]
    if not states and not everything:
        states = ["queued", "running"]
    user = opts.get("user") or ("*" if everything else common.user())
    pattern = opts.get("jobname", "*")
    spool = common.Spool("windowshpc", "job")
    rows = []
    for job in map(spool.job, spool.job_ids()):
        if job is None:
            continue
        state = job_state(job)
        if states and "all" not in states and state.lower() not in states:
            continue
        if user != "*" and job["owner"] != user:
            continue
        if pattern != "*" and not (job["name"] == pattern or (pattern.endswith("*") and
                                                              job["name"].startswith(pattern[:-1]))):
            continue
        rows.append((str(job["id"]), job["owner"], job["name"], state, job["priority"]))
    if shape == "list":
        for row in rows:
            print("".join("%-24s: %s\n" % (name, value) for (name, _), value in zip(LIST_COLUMNS, row)))
        return 0
    print(" ".join(name.ljust(width) for name, width in LIST_COLUMNS))
    print(" ".join("-" * width for _, width in LIST_COLUMNS))
    for row in rows:
        print(" ".join(value.ljust(width) for value, (_, width) in zip(row, LIST_COLUMNS)))
    return 0


def cancel(argv) -> int:
    job = find(argv, "cancel")
    state = job_state(job)
    if state not in CANCELABLE:
        raise CommandError("The job cannot be canceled in its current state (%s)." % state, FAILED)
    common.remove(job, list(job["states"]), [signal.SIGTERM])
    return 0


VERBS = {"submit": submit, "view": view, "list": list_jobs, "cancel": cancel}


def job(argv) -> int:
    common.Spool("windowshpc", "job")
    if not argv or argv[0].lower() not in VERBS:
        raise CommandError("usage: job {submit|view|list|cancel} ... (the fake knows these)", FAILED)
    return VERBS[argv[0].lower()](argv[1:])


def main(command: str, argv) -> int:
    return common.run_command(job, argv)


if __name__ == "__main__":
    sys.exit(main("job", sys.argv[1:]))
