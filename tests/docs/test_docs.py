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
from fixtures.services import read_env

SKIPPED = {
    ("README.md", "python3 -m pip wheel --wheel-dir wheelhouse ."):
        "needs the internet; tests/docs/test_offline_install.py runs it",
    ("README.md", "python3 -m pip install --no-index --find-links wheelhouse minipar"):
        "installs over the running Python; tests/docs/test_offline_install.py runs it in a fresh venv",
    ("README.md", "scripts/run-tests"):
        "runs the whole test suite, this test among them; CI runs it (.ci/run)",
    ("README.md", "PROFILE  CLUSTER ID  CONTROLLER  ENGINES  LAUNCHERS    AGE"):
        "a pool two hours into its run (a draining job and its replacement) cannot be made in a test; "
        "tests/cluster/test_engine_pools.py checks this listing",
    ("README.md", "minipar.error.ProtocolMismatch: the controller at tcp://10.0.1.5:43447 refused this client: "
                  "protocol mismatch: the client speaks minipar protocol 3 (minipar 0.3.0, Python 3.11.7), this "
                  "controller speaks protocol 2 (minipar 0.1.0, Python 3.11.7); install the same minipar version "
                  "on both sides"):
        "the traceback's last line; the block above prints the message itself",
    ("README.md", "engine: the controller at tcp://10.0.1.5:38171 refused this engine: Python mismatch: this engine "
                  "runs Python 3.8.18 (minipar 0.1.0), but this controller's engines and clients run Python 3.11, as "
                  "the first of them to join did (engine 0 on host node17, pid 4242, Python 3.11.7). Functions that "
                  "cannot be pickled by name (...) travel as bytecode, which loads only on the Python minor version "
                  "that made it, so every engine and client of one controller runs the same one. Fix: start this "
                  "engine with Python 3.11 (the interpreter that runs `-m minipar.engine`: the Python that runs the "
                  "Cluster, launcher.ssh.remote_python, or a batch template's python), or give Python 3.8 engines a "
                  "controller of their own."):
        "an engine on another Python; tests/common/test_versions.py starts one and checks this message",
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


# ------------------------------------------------------------- what the pages name exists

SETTING_SPANS = re.compile(r"`\[([\w.]+)\](?: (\w+))?[^`]*`((?:,\s*(?:or\s+|and\s+)?`\w+`)*)")
"""A backticked `[section] key = ...` and the backticked keys listed after it: `, `key2`, `key3`"""
DOTTED_SETTING = re.compile(r"--((?:controller|engine|cluster|db|launcher)\.[\w.-]+)=")


def named_settings(text: str):
    """(section, [keys]) for each `[section] key, key2` the text names, and each --section.key=."""
    for m in SETTING_SPANS.finditer(text):
        if not re.search(r"\.[A-Z]+(\.|$)", m.group(1)):     # [launcher.SYSTEM] stands for each
            yield m.group(1), ([m.group(2)] if m.group(2) else []) + re.findall(r"`(\w+)`", m.group(3))
    for m in DOTTED_SETTING.finditer(text):
        section, _, key = m.group(1).replace("-", "_").rpartition(".")
        if not key.isupper():                                   # --controller.KEY=VALUE stands for each
            yield section, [key]


@pytest.mark.parametrize("doc", DOCUMENTS)
def test_every_setting_the_page_names_exists(doc):
    from minipar.config import sections
    known = {name: {f.name for f in __import__("dataclasses").fields(cls)} for name, cls in sections().items()}
    text = (docs_blocks.ROOT / doc).read_text()
    wrong = []
    for section, keys in named_settings(text):
        owner, _, leaf = section.rpartition(".")
        if section not in known and not (owner in known and leaf in known[owner]):   # [launcher.ssh.engines]
            wrong.append("[%s]" % section)
        else:
            wrong += ["[%s] %s" % (section, key) for key in keys if key not in known[section]
                      and "%s.%s" % (section, key) not in known]
    assert not wrong, "%s names settings minipar does not have: %s" % (doc, ", ".join(wrong))


@pytest.mark.parametrize("doc", DOCUMENTS)
def test_every_link_leads_to_a_file_and_heading(doc):
    text = (docs_blocks.ROOT / doc).read_text()
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"\w+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = (docs_blocks.ROOT / doc).parent / path if path else docs_blocks.ROOT / doc
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in docs_blocks.heading_anchors(file.read_text()):
            broken.append(target)
    assert not broken, "%s links to nothing: %s" % (doc, ", ".join(broken))


def migration_rows():
    """The rows of the tables of settings, each cell's `c.X.a`, `.b` written out as c.X.a c.X.b."""
    rows = []
    for line in (docs_blocks.ROOT / "docs" / "migration.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `c.") and len(cells) == 4:
            rows.append([re.sub(r"`(c\.\w+)\.(\w+)([^`]*)`((?:, `\.\w+`)+)",
                                lambda m: " ".join("`%s.%s`" % (m.group(1), a) for a in
                                                   [m.group(2)] + re.findall(r"\.(\w+)", m.group(4))) + m.group(3),
                                cell) for cell in cells])
    return rows


def test_the_migration_table_maps_launcher_names_as_minipar_reads_them():
    from minipar.cluster.launchers import launcher_key
    rows = migration_rows()
    assert len(rows) > 40
    for old, old013, new, _ in rows:
        chosen = re.search(r'(engines|controller) = "(\w+)"', new)
        for name in re.findall(r"'([\w.]+)'", old + " " + old013):
            if chosen and not name.endswith("DB"):
                assert launcher_key(name)[0] == chosen.group(2), (name, new)
        for cls in re.findall(r"c\.(\w+Launcher)\.", old + " " + old013):
            short, _ = launcher_key(cls)
            assert short, cls
            sections = re.findall(r"\[(launcher\.\w+)", new)
            expected = "launcher.ssh" if short == "sshproxy" else "launcher." + short
            assert all(s == expected for s in sections), (cls, new)


def test_the_migration_table_covers_the_names_of_both_chapters():
    names = " ".join(" ".join(row[:2]) for row in migration_rows())
    chapters = ["c.IPController.ip", "c.IPController.location", "c.IPController.ssh_server", "c.IPController.db_class",
                "c.HubFactory.ip", "c.HubFactory.location", "c.HubFactory.ssh_server", "c.HubFactory.db_class",
                "c.Cluster.n", "c.Cluster.engine_launcher_class", "c.Cluster.controller_launcher_class",
                "c.IPClusterEngines.n", "c.IPClusterEngines.engine_launcher_class",
                "c.IPClusterStart.controller_launcher_class", "c.PBSLauncher.queue",
                "c.PBSEngineSetLauncher.batch_template_file", "c.PBSControllerLauncher.batch_template_file",
                "c.SSHEngineSetLauncher.engines", "c.SSHEngineSetLauncher.engine_args",
                "c.SSHControllerLauncher.hostname", "c.SSHControllerLauncher.controller_args",
                "c.SSHLauncher.to_send", "c.SSHLauncher.to_fetch", "c.MongoDB.database", "c.SQLiteDB.table",
                "c.MongoDB.connection_args", "c.MPI.use", "c.MPI.init_script", "c.IPEngine.startup_script",
                "c.IPEngine.startup_command", "c.IPEngine.work_dir", "c.IPEngineApp.startup_script",
                "c.IPEngineApp.work_dir", "c.SlurmLauncher.account"]
    missing = [name for name in chapters if name not in names]
    assert not missing, missing


def test_the_convention_example_of_docs_readme_is_what_it_says():
    [example] = [b for b in parse_document("docs/README.md") if b.d.get("file") == "convention-example.md"]
    inner = "\n".join(line[4:] for line in example.text.splitlines()) + "\n"
    source, output = parse_document("example.md", inner)
    assert (source.kind, output.kind, output.d["any"]) == ("python", "output", ["4711"])
    assert re.fullmatch(output_pattern(output.text, output.d["any"]), "%d\n" % __import__("os").getpid())
