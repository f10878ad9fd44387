"""Every fenced block of README.md and docs/*.md runs, and shows what it really prints.

tests/docs_blocks.py states the convention (info strings and ``<!-- test: ... -->`` comments)
and runs the blocks; docs/README.md tells writers the same. Each test runs one document's blocks
that need the same things (nothing, a batch system, MPI, ssh...) in order, in a fresh home; those
that need a service of the test bed are marked ``service``, as the fixtures' other users are.
"""
from __future__ import annotations

import re

import pytest

import docs_blocks
from docs_blocks import DOCUMENTS, DocError, GroupRun, group_id, groups, output_pattern, parse_document
from fakes.batch import BIN_DIR, fake_batch_env, stop_all_jobs
from services import netns_hosts, sshd  # noqa: F401 - fixtures
from test_service_sge import sge  # noqa: F401 - a fixture
from test_services import mpi, read_env, slurm  # noqa: F401 - fixtures

SKIPPED = {
    ("README.md", "scripts/run-tests"):
        "runs the whole test suite, this test among them; CI runs it (.ci/run)",
    ("README.md", "PROFILE  CLUSTER ID  CONTROLLER  ENGINES  LAUNCHERS    AGE"):
        "a pool two hours into its run (a draining job and its replacement) cannot be made in a test; "
        "tests/test_engine_pools.py checks this listing",
}
"""Blocks the docs test does not run, by document and first line, with the reason the document
gives in its ``<!-- test: skip: REASON -->``: nothing is skipped without being listed here."""

FIXTURES = {"sshd": "sshd", "mpi": "mpi", "slurm": "slurm", "sge": "sge", "netns": "netns_hosts"}


def collect():
    params, problems = [], []
    for doc in DOCUMENTS:
        try:
            blocks = parse_document(doc)
            for block in blocks:
                block.kind  # noqa: B018 - raises DocError for a block that says not what it is
        except DocError as e:
            problems.append(str(e))
            continue
        for key in sorted(groups(blocks), key=sorted):
            marks = [pytest.mark.service] if key & set(docs_blocks.SERVICES) else []
            params.append(pytest.param(doc, key, id=group_id(doc, key), marks=marks))
    return params, problems


GROUPS, PROBLEMS = collect()


def test_every_block_says_what_it_is():
    assert not PROBLEMS, "\n".join(PROBLEMS)


def test_skipped_blocks_are_the_listed_ones():
    skipped = {}
    for doc in DOCUMENTS:
        for block in parse_document(doc):
            if "skip" in block.d:
                skipped[(doc, block.text.splitlines()[0].strip())] = block.d["skip"]
    assert skipped == SKIPPED


@pytest.mark.parametrize("doc, key", GROUPS)
def test_document_blocks(doc, key, tmp_path, request):
    extra_env, path_first = {}, []
    for need in sorted(key):
        if need in FIXTURES:
            request.getfixturevalue(FIXTURES[need])
    if "mpi" in key:
        extra_env.update(read_env("openmpi.env"))
    if "fakes" in key:
        fakes = fake_batch_env(tmp_path, kill_delay=0.5, base={})
        extra_env.update((k, v) for k, v in fakes.items() if k.startswith("FAKE_"))
        path_first.append(str(BIN_DIR))
        request.addfinalizer(lambda: stop_all_jobs(fakes))
    blocks = groups(parse_document(doc))[key]
    try:
        GroupRun(tmp_path, extra_env, path_first).run(blocks)
        problem = ""
    except DocError as e:
        problem = str(e)
    if problem:
        pytest.fail(problem, pytrace=False)


# -------------------------------------------------------------------- the convention itself

@pytest.mark.parametrize("shown, real, placeholders, matches", [
    ("a b\n", "a   b\n", (), True),
    ("engines: [0, 1]\n", "engines: [0, 1, 2]\n", (), False),
    ("... INFO Hub listening\n", "2026-12-06 12:00:01 [Controller] INFO Hub listening\n", (), True),
    ("first\n...\nlast\n", "first\nx\ny\nlast\n", (), True),
    ("first\n...\nlast\n", "first\nlast\n", (), True),
    ("job 4101 running\n", "job 17 running\n", ("4101",), True),
    ("job 4101 running\n", "job 17 running\n", (), False),
    ("'pid': 4711,\n", "'pid': 4711.5,\n", ("4711",), True),
])
def test_output_pattern(shown, real, placeholders, matches):
    assert bool(re.fullmatch(output_pattern(shown, placeholders), real)) is matches


def test_an_unmarked_text_block_is_an_error():
    with pytest.raises(DocError, match="must say what it is"):
        parse_document("x.md", "Some output:\n\n```\nhello\n```\n")


def test_annotations_and_continuation_parse():
    text = ("<!-- test: needs cluster; any 4711 -->\n```python\nprint(rc.ids)\n```\n\n"
            "<!-- test: output -->\n```text\n[0, 1]\n```\n\n"
            "<!-- test: continues; setup:\nx = 1\n-->\n```python\nprint(x)\n```\n")
    first, output, third = parse_document("x.md", text)
    assert (first.kind, first.needs, first.d["any"]) == ("python", frozenset({"cluster"}), ["4711"])
    assert output.kind == "output"
    assert third.d["continues"] and third.d["setup"].strip() == "x = 1"
    assert list(groups([first, output, third])) == [frozenset()]
