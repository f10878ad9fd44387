"""minipar.jobs: which batch job a process runs in, and when a job ends, as each system says.

The parsers are fed what each system's command prints (the real Slurm and Grid Engine of the
test bed are asked in cluster/test_walltime_batch.py); here a stand-in for subprocess.run answers."""
from __future__ import annotations

import subprocess
import time

import pytest

from minipar.error import JobQueryError
from minipar.jobs import current_job, in_batch_job, job_end_time, parse_duration, parse_end_time


@pytest.mark.parametrize("env, expected", [
    ({"SLURM_JOB_ID": "17"}, ("slurm", "17")),
    ({"PBS_JOBID": "12.server"}, ("pbs", "12.server")),
    ({"LSB_JOBID": "99"}, ("lsf", "99")),
    ({"CCP_JOBID": "17"}, ("windowshpc", "17")),
    ({"JOB_ID": "5", "SGE_ROOT": "/var/lib/gridengine"}, ("sge", "5")),
    ({"JOB_ID": "5"}, None),
    ({}, None),
])
def test_the_batch_job_is_read_from_its_variables(env, expected):
    assert current_job(env) == expected


def test_an_htcondor_job_id_comes_from_its_job_ad(tmp_path):
    ad = tmp_path / ".job.ad"
    ad.write_text('ClusterId = 31\nOwner = "me"\nProcId = 2\n')
    assert current_job({"_CONDOR_JOB_AD": str(ad)}) == ("htcondor", "31.2")


def test_in_batch_job_names_the_system_as_people_know_it():
    assert in_batch_job("SIGTERM", {"JOB_ID": "5", "SGE_TASK_ID": "1"}).startswith(" in Grid Engine job 5 (")
    assert in_batch_job("SIGTERM", {}) == ""


@pytest.mark.parametrize("text, seconds", [
    ("600", 600), ("10:00", 600), ("1:00:00", 3600), ("01:30:05", 5405), ("2-00:00:00", 172800),
    ("1-12", 129600), ("0:0:90", 90),
])
def test_durations_as_batch_systems_write_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1:2:3:4", "-5", "1h"])
def test_a_duration_that_is_none_is_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_end_times_a_user_writes():
    now = 1_000_000.0
    assert parse_end_time("+3600", now) == now + 3600
    assert parse_end_time("+1:30:00", now) == now + 5400
    assert parse_end_time("1767225600") == 1767225600.0
    assert parse_end_time("2026-12-31T18:00:00+00:00") == 1798740000.0
    assert parse_end_time("2026-12-31T18:00:00Z") == 1798740000.0
    assert parse_end_time("2026-12-31T18:00") == time.mktime((2026, 12, 31, 18, 0, 0, 0, 0, -1))
    with pytest.raises(ValueError, match=r"'tomorrow' is not an end time: give seconds since the epoch"):
        parse_end_time("tomorrow")


class Answers:
    """A stand-in for subprocess.run: each command's first word maps to (exit code, stdout[, stderr])."""

    def __init__(self, **answers):
        self.answers = answers
        self.asked = []

    def __call__(self, argv, **kwargs):
        self.asked.append(argv)
        if argv[0] not in self.answers:
            raise FileNotFoundError(argv[0])
        code, out, *err = self.answers[argv[0]]
        return subprocess.CompletedProcess(argv, code, out, err[0] if err else "")


def local(text, fmt):
    return time.mktime(time.strptime(text, fmt))


def test_slurm_end_time_from_squeue_in_local_time():
    run = Answers(squeue=(0, "2026-12-06T18:53:59\n"))
    assert job_end_time("slurm", "35", {}, run) == local("2026-12-06T18:53:59", "%Y-%m-%dT%H:%M:%S")
    assert run.asked == [["squeue", "--noheader", "--jobs", "35", "--format=%e"]]


def test_slurm_end_time_from_the_variable_of_slurm_23_saves_the_query():
    run = Answers()
    assert job_end_time("slurm", "35", {"SLURM_JOB_ID": "35", "SLURM_JOB_END_TIME": "1798740000"}, run) == 1798740000
    assert run.asked == []


@pytest.mark.parametrize("printed", ["N/A\n", "NONE\n", "Unknown\n"])
def test_a_slurm_job_without_a_limit_has_no_end(printed):
    assert job_end_time("slurm", "35", {}, Answers(squeue=(0, printed))) is None


def test_a_slurm_job_squeue_does_not_know_is_an_error_naming_the_command():
    run = Answers(squeue=(1, "", "slurm_load_jobs error: Invalid job id specified\n"))
    with pytest.raises(JobQueryError, match=r"squeue --noheader --jobs 35 --format=%e failed \(exit 1\): "
                                            r"slurm_load_jobs error: Invalid job id"):
        job_end_time("slurm", "35", {}, run)
    with pytest.raises(JobQueryError, match="squeue does not list job 35"):
        job_end_time("slurm", "35", {}, Answers(squeue=(0, "")))


def test_a_missing_command_is_named():
    with pytest.raises(JobQueryError, match="squeue is not on PATH"):
        job_end_time("slurm", "35", {}, Answers())


def test_pbs_torque_counts_down_walltime_remaining():
    out = ("Job Id: 7.server\n    Job_Name = minipar-engine-ab\n    Resource_List.walltime = 01:00:00\n"
           "    resources_used.walltime = 00:10:00\n    Walltime.Remaining = 3000\n")
    before = time.time()
    end = job_end_time("pbs", "7.server", {}, Answers(qstat=(0, out)))
    assert before + 3000 <= end <= time.time() + 3000


def test_pbs_pro_end_is_the_limit_less_what_was_used():
    out = "Job Id: 7.server\n    Resource_List.walltime = 01:00:00\n    resources_used.walltime = 00:10:00\n"
    before = time.time()
    end = job_end_time("pbs", "7.server", {}, Answers(qstat=(0, out)))
    assert before + 3000 <= end <= time.time() + 3000
    assert job_end_time("pbs", "7.server", {}, Answers(qstat=(0, "Job Id: 7.server\n    queue = q\n"))) is None


SGE_DETAIL = """==============================================================
job_number:                 43
owner:                      root
hard resource_list:         h_vmem=2G,h_rt=120
job_name:                   minipar-engine-ab
"""
SGE_LIST = """job-ID  prior   name       user         state submit/start at     queue                          slots ja-task-ID
-----------------------------------------------------------------------------------------------------------------
     43 0.50000 minipar-en root         r     12/06/2026 18:51:50 all.q@vm                           1 1
     43 0.50000 minipar-en root         r     12/06/2026 18:52:10 all.q@vm                           1 2
     43 0.50000 minipar-en root         qw    12/06/2026 18:51:40                                    1 3
"""


def test_sge_end_is_the_task_start_plus_h_rt():
    def answer(argv, **kwargs):
        out = SGE_DETAIL if argv[1:2] == ["-j"] else SGE_LIST
        return subprocess.CompletedProcess(argv, 0, out, "")

    start1 = local("12/06/2026 18:51:50", "%m/%d/%Y %H:%M:%S")
    start2 = local("12/06/2026 18:52:10", "%m/%d/%Y %H:%M:%S")
    assert job_end_time("sge", "43", {}, answer) == start1 + 120  # from outside: the first task's end
    assert job_end_time("sge", "43", {"JOB_ID": "43", "SGE_TASK_ID": "2"}, answer) == start2 + 120


def test_an_sge_job_without_h_rt_has_no_end():
    detail = SGE_DETAIL.replace("h_vmem=2G,h_rt=120", "h_vmem=2G")
    assert job_end_time("sge", "43", {}, Answers(qstat=(0, detail))) is None


def test_lsf_end_from_the_time_left():
    before = time.time()
    run = Answers(bjobs=(0, "01:30:07 L\n"))
    end = job_end_time("lsf", "99", {}, run)
    assert before + 5407 <= end <= time.time() + 5407
    assert run.asked == [["bjobs", "-noheader", "-hms", "-o", "time_left", "99"]]
    assert before + 5400 <= job_end_time("lsf", "99", {}, Answers(bjobs=(0, "1:30 L\n")))
    assert job_end_time("lsf", "99", {}, Answers(bjobs=(0, "-\n"))) is None


@pytest.mark.parametrize("system", ["htcondor", "windowshpc", "local"])
def test_systems_without_a_walltime_say_none(system):
    run = Answers()
    assert job_end_time(system, "1", {}, run) is None
    assert run.asked == []
