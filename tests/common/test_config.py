"""minipar.config (TOML profiles) and minipar.profile (profile directories)."""
from __future__ import annotations

import argparse
import os
import pickle
import re
import stat
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from minipar.config import schema
from minipar.config import (
    Config,
    ConfigError,
    Flag,
    add_flags,
    flag_keys,
    flag_overrides,
    load_config,
    option,
    render_profile,
    section,
    sections,
    split_overrides,
)
from minipar.profile import (
    ProfileError,
    locate_profile_dir,
    log_dir,
    minipar_dir,
    pid_dir,
    security_dir,
)


@pytest.fixture
def registry():
    """Lets a test declare sections without leaking them into other tests."""
    saved = dict(schema.REGISTRY)
    yield
    schema.REGISTRY.clear()
    schema.REGISTRY.update(saved)


def write_profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "minipar.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    write_profile(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    return str(info.value)


# ---------------------------------------------------------------- defaults


def test_builtin_sections_registered_in_order():
    names = list(sections())
    assert names[:3] == ["controller", "engine", "cluster"]
    assert {"db.sqlite", "db.mongodb"} <= set(names)


def test_defaults_without_profile():
    cfg = load_config()
    c = cfg.controller
    assert (c.ip, c.location, c.ports, c.port_range, c.reuse) == ("127.0.0.1", "", [], "", False)
    assert (c.db, c.ssh_server, c.engine_ssh_server, c.cluster_id) == ("dict", "", "", "")
    assert (c.scheme, c.heartbeat_period, c.heartbeat_misses) == ("leastload", 1.0, 3)
    assert (c.engine_hwm, c.log_level) == (16, "INFO")
    e = cfg.engine
    assert (e.file, e.ssh_server, e.startup_script, e.startup_command) == ("", "", "", "")
    assert (e.work_dir, e.mpi, e.cluster_id, e.log_level) == ("", "", "", "INFO")
    assert (e.registration_timeout, e.controller_timeout) == (20.0, 60.0)
    assert cfg.section("db.sqlite").filename == ""
    assert cfg.section("db.sqlite").table == ""
    mongo = cfg.section("db.mongodb")
    assert (mongo.database, mongo.connection_args, mongo.connection_kwargs) == ("", [], {})
    assert cfg.source_of("controller.ip") == "default"


def test_profile_dir_without_file_gives_defaults(tmp_path):
    assert load_config(tmp_path).to_dict() == Config().to_dict()


def test_mutable_defaults_not_shared():
    a, b = load_config(), load_config()
    a.controller.ports.append(1)
    a.section("db.mongodb").connection_kwargs["x"] = 1
    assert b.controller.ports == []
    assert b.section("db.mongodb").connection_kwargs == {}
    assert Config().controller.ports == []


def test_attribute_access_matches_section():
    cfg = load_config()
    assert cfg.db.sqlite is cfg.section("db.sqlite")
    assert cfg.db.mongodb is cfg.section("db.mongodb")
    assert cfg.controller is cfg.section("controller")
    with pytest.raises(AttributeError, match="no config section 'controler'; did you mean 'controller'"):
        cfg.controler
    with pytest.raises(AttributeError, match="no config section 'db.sqlit'"):
        cfg.db.sqlit
    with pytest.raises(KeyError, match="unknown section 'db.sqlit'; did you mean 'db.sqlite'"):
        cfg.section("db.sqlit")
    with pytest.raises(KeyError, match="unknown setting 'controller.ipp'; did you mean 'controller.ip'"):
        cfg.source_of("controller.ipp")


# ------------------------------------------------------- file and overrides

EXAMPLE = """\
[controller]
ip = "*"
location = "10.0.1.5"
ssh_server = "login.mycluster.net"
db = "sqlite"                 # dict (default) | nodb | sqlite | mongodb | pkg.mod.Class
ports = [5001, 5002, 5003, 5004, 5005]
heartbeat_period = 2
reuse = true

[db.sqlite]
table = "tasks"

[db.mongodb]
database = "tasks"
connection_kwargs = { host = "mongo.example", port = 27017 }

[engine]
startup_command = "import numpy"
work_dir = "/scratch/me"
mpi = "mpi4py"
"""


def test_file_overrides_defaults(tmp_path):
    path = write_profile(tmp_path, EXAMPLE)
    cfg = load_config(tmp_path)
    assert cfg.controller.ip == "*"
    assert cfg.controller.location == "10.0.1.5"
    assert cfg.controller.db == "sqlite"
    assert cfg.controller.ports == [5001, 5002, 5003, 5004, 5005]
    assert cfg.controller.reuse is True
    # an int in TOML is accepted for a float field, and stored as float
    assert cfg.controller.heartbeat_period == 2.0
    assert type(cfg.controller.heartbeat_period) is float
    assert cfg.db.sqlite.table == "tasks"
    assert cfg.db.mongodb.connection_kwargs == {"host": "mongo.example", "port": 27017}
    assert cfg.engine.mpi == "mpi4py"
    assert cfg.engine.work_dir == "/scratch/me"
    # untouched keys keep their defaults
    assert cfg.controller.scheme == "leastload"
    assert cfg.engine.controller_timeout == 60.0
    assert cfg.source_of("controller.ip") == str(path)
    assert cfg.source_of("controller.scheme") == "default"


def test_overrides_beat_file(tmp_path):
    path = write_profile(tmp_path, EXAMPLE)
    cfg = load_config(
        tmp_path,
        {
            "controller.ip": "10.0.0.1",  # string, as from the command line
            "controller.heartbeat_misses": 7,  # typed, as from keyword args
            "controller.ports": (1, 2, 3, 4, 5),  # a tuple is a list
            "db.sqlite.table": "run2",
            "engine.work_dir": tmp_path,  # a path is a string
            "controller.location": None,  # None: not given
        },
    )
    assert cfg.controller.ip == "10.0.0.1"
    assert cfg.controller.heartbeat_misses == 7
    assert cfg.controller.ports == [1, 2, 3, 4, 5]
    assert cfg.db.sqlite.table == "run2"
    assert cfg.engine.work_dir == str(tmp_path)
    assert cfg.controller.location == "10.0.1.5"
    assert cfg.source_of("controller.ip") == "command line"
    assert cfg.source_of("controller.location") == str(path)
    assert cfg.source_of("controller.scheme") == "default"


def test_override_source_name():
    cfg = load_config(overrides={"controller.ip": "*"}, source="keyword arguments")
    assert cfg.source_of("controller.ip") == "keyword arguments"
    with pytest.raises(ConfigError) as info:
        load_config(overrides={"controller.engine_hwm": "x"}, source="Cluster()")
    assert str(info.value) == "Cluster(): controller.engine_hwm: expected an integer, got string 'x'"


def test_override_list_is_copied():
    ports = [1, 2, 3, 4, 5]
    cfg = load_config(overrides={"controller.ports": ports})
    ports.append(6)
    assert cfg.controller.ports == [1, 2, 3, 4, 5]


def test_group_table_with_only_subsections_is_fine(tmp_path):
    write_profile(tmp_path, '[db]\n[db.sqlite]\nfilename = "/x/t.db"\n')
    assert load_config(tmp_path).db.sqlite.filename == "/x/t.db"
    write_profile(tmp_path, 'db = { sqlite = { table = "t" } }\n')
    assert load_config(tmp_path).db.sqlite.table == "t"
    write_profile(tmp_path, '[controller]\n[engine]\n')
    assert load_config(tmp_path).to_dict() == Config().to_dict()


# ------------------------------------------------------------------- errors


def test_unknown_section(tmp_path):
    path = tmp_path / "minipar.toml"
    assert error_of(tmp_path, '[controler]\nip = "*"\n') == (
        "%s: controler: unknown section; did you mean 'controller'?" % path
    )


def test_unknown_section_without_close_match_lists_known(tmp_path):
    msg = error_of(tmp_path, "[zzzz]\n")
    assert msg == (
        "%s: zzzz: unknown section; known sections: %s" % (tmp_path / "minipar.toml", ", ".join(sections()))
    )


def test_unknown_subsection_of_group(tmp_path):
    msg = error_of(tmp_path, "[db.sqlit]\n")
    assert msg == "%s: db.sqlit: unknown section; did you mean 'db.sqlite'?" % (
        tmp_path / "minipar.toml"
    )


def test_setting_in_group_table_is_unknown(tmp_path):
    msg = error_of(tmp_path, '[db]\ntable = "x"\n')
    assert msg == "%s: db.table: unknown setting; did you mean 'db.sqlite.table'?" % (
        tmp_path / "minipar.toml"
    )


def test_unknown_key_with_close_match(tmp_path):
    msg = error_of(tmp_path, '[controller]\niip = "*"\n')
    assert msg == "%s: controller.iip: unknown setting; did you mean 'controller.ip'?" % (
        tmp_path / "minipar.toml"
    )


def test_key_in_wrong_section_points_to_right_one(tmp_path):
    msg = error_of(tmp_path, "[engine]\nreuse = true\n")
    assert msg.endswith("engine.reuse: unknown setting; did you mean 'controller.reuse'?")


def test_unknown_key_without_close_match_lists_section_keys(tmp_path):
    msg = error_of(tmp_path, "[db.sqlite]\nzzzzzz = 1\n")
    assert msg.endswith("db.sqlite.zzzzzz: unknown setting; [db.sqlite] has: filename, table")


def test_top_level_key_points_to_section(tmp_path):
    msg = error_of(tmp_path, 'ip = "*"\n')
    assert msg == "%s: ip: unknown setting; did you mean 'controller.ip'?" % (
        tmp_path / "minipar.toml"
    )


def test_section_given_as_value(tmp_path):
    msg = error_of(tmp_path, "controller = 5\n")
    assert msg.endswith("controller: expected a table ([controller]), got integer 5")


def test_wrong_type_names_file_and_key(tmp_path):
    msg = error_of(tmp_path, '[controller]\nheartbeat_period = "fast"\n')
    assert msg == "%s: controller.heartbeat_period: expected a number, got string 'fast'" % (
        tmp_path / "minipar.toml"
    )


@pytest.mark.parametrize(
    "line, problem",
    [
        ("heartbeat_misses = 1.5", "controller.heartbeat_misses: expected an integer, got float 1.5"),
        ("heartbeat_misses = true", "controller.heartbeat_misses: expected an integer, got boolean true"),
        ("heartbeat_period = false", "controller.heartbeat_period: expected a number, got boolean false"),
        ("reuse = 1", "controller.reuse: expected true or false, got integer 1"),
        ("reuse = \"yes\"", "controller.reuse: expected true or false, got string 'yes'"),
        ("ip = 127", "controller.ip: expected a string, got integer 127"),
        ("ports = 5000", "controller.ports: expected a list of integers, got integer 5000"),
        (
            'ports = [1, "2"]',
            "controller.ports: expected a list of integers, got list [1, \"2\"] (item 1 is string '2')",
        ),
        ("ports = { a = 1 }", "controller.ports: expected a list of integers, got table { a = 1 }"),
        ("location = 1979-05-27", "controller.location: expected a string, got date 1979-05-27"),
        (
            'scheme = "leastlod"',
            "controller.scheme: expected one of 'leastload', 'lru', 'twobin', 'weighted', "
            "'plainrandom', got string 'leastlod'; did you mean 'leastload'?",
        ),
        (
            'log_level = "debug"',
            "controller.log_level: expected one of 'DEBUG', 'INFO', 'WARNING', 'ERROR', "
            "'CRITICAL', got string 'debug'; did you mean 'DEBUG'?",
        ),
    ],
)
def test_wrong_types(tmp_path, line, problem):
    msg = error_of(tmp_path, "[controller]\n%s\n" % line)
    assert msg == "%s: %s" % (tmp_path / "minipar.toml", problem)


def test_wrong_type_dict_and_list(tmp_path):
    msg = error_of(tmp_path, '[db.mongodb]\nconnection_kwargs = ["a"]\nconnection_args = []\n')
    assert msg.endswith('db.mongodb.connection_kwargs: expected a table, got list ["a"]')
    msg = error_of(tmp_path, '[db.mongodb]\nconnection_args = "a"\n')
    assert msg.endswith("db.mongodb.connection_args: expected a list, got string 'a'")


def test_toml_syntax_error_names_file_and_line(tmp_path):
    msg = error_of(tmp_path, '[controller]\nip = "*"\nlocation "x"\n')
    assert msg.startswith("%s: line 3, column 10: invalid TOML: " % (tmp_path / "minipar.toml"))
    msg = error_of(tmp_path, "[controller]\n[controller]\n")
    assert msg.startswith("%s: line 2" % (tmp_path / "minipar.toml"))


def test_unreadable_file(tmp_path):
    (tmp_path / "minipar.toml").mkdir()
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "minipar.toml")) + ": can't read"):
        load_config(tmp_path)
    (tmp_path / "minipar.toml").rmdir()
    (tmp_path / "minipar.toml").write_bytes(b"[controller]\nip = '\xff'\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(tmp_path)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("controller.heartbeat_misses", "three", "expected an integer, got string 'three'"),
        ("controller.heartbeat_period", "fast", "expected a number, got string 'fast'"),
        ("controller.reuse", "maybe", "expected true or false (or yes/no, 1/0), got string 'maybe'"),
        ("controller.ports", "1,a", "expected a list of integers, got string '1,a' (item 1 is string 'a')"),
        ("controller.ports", '[1, "a"]', "expected a list of integers, got list [1, \"a\"] (item 1 is string 'a')"),
        ("db.mongodb.connection_kwargs", "host=x", "expected a table like {name = \"value\", n = 1}, got string 'host=x'"),
        ("controller.scheme", "lru2", "expected one of 'leastload', 'lru', 'twobin', 'weighted', 'plainrandom', got string 'lru2'; did you mean 'lru'?"),
        ("controller.heartbeat_misses", True, "expected an integer, got boolean true"),
        ("controller.ip", 5, "expected a string, got integer 5"),
    ],
)
def test_bad_override(key, value, message):
    with pytest.raises(ConfigError) as info:
        load_config(overrides={key: value})
    assert str(info.value) == "command line: %s: %s" % (key, message)
    assert info.value.source == "command line"
    assert info.value.key == key


def test_bad_override_toml_syntax():
    with pytest.raises(ConfigError) as info:
        load_config(overrides={"db.mongodb.connection_kwargs": "{host = }"})
    assert str(info.value).startswith(
        "command line: db.mongodb.connection_kwargs: expected a table, got string '{host = }' (not valid TOML: "
    )


@pytest.mark.parametrize(
    "key, message",
    [
        ("controller.iip", "unknown setting; did you mean 'controller.ip'?"),
        ("controler.ip", "unknown setting; did you mean 'controller.ip'?"),
        ("ip", "unknown setting; did you mean 'controller.ip'?"),
        ("db.sqlite.tabel", "unknown setting; did you mean 'db.sqlite.table'?"),
        ("nosuch", "unknown setting; settings are named section.key"),
    ],
)
def test_unknown_override(key, message):
    with pytest.raises(ConfigError) as info:
        load_config(overrides={key: "1"})
    assert str(info.value) == "command line: %s: %s" % (key, message)


def test_config_error_pickles():
    err = ConfigError("/p/minipar.toml", "controller.ip", "expected a string, got integer 1")
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err) == "/p/minipar.toml: controller.ip: expected a string, got integer 1"
    assert (copy.source, copy.key, copy.problem) == (err.source, err.key, err.problem)
    assert str(ConfigError("/p", None, "line 1: bad")) == "/p: line 1: bad"


# ----------------------------------------------------------------- coercion


@pytest.mark.parametrize(
    "key, text, expected",
    [
        ("controller.ip", "*", "*"),
        ("controller.ip", " spaced ", " spaced "),
        ("controller.heartbeat_misses", "5", 5),
        ("controller.heartbeat_misses", " -2 ", -2),
        ("controller.heartbeat_period", "2", 2.0),
        ("controller.heartbeat_period", "0.25", 0.25),
        ("controller.reuse", "true", True),
        ("controller.reuse", "TRUE", True),
        ("controller.reuse", "yes", True),
        ("controller.reuse", "1", True),
        ("controller.reuse", "on", True),
        ("controller.reuse", "false", False),
        ("controller.reuse", "No", False),
        ("controller.reuse", "0", False),
        ("controller.reuse", "off", False),
        ("controller.ports", "[1, 2,3, 4, 5]", [1, 2, 3, 4, 5]),
        ("controller.ports", "1, 2,3,4,5", [1, 2, 3, 4, 5]),
        ("controller.ports", "", []),
        ("controller.ports", "[]", []),
        ("db.mongodb.connection_args", "a, b", ["a", "b"]),
        ("db.mongodb.connection_args", '["a", 1, true]', ["a", 1, True]),
        ("db.mongodb.connection_kwargs", "{host = 'h', port = 27017}", {"host": "h", "port": 27017}),
        ("db.mongodb.connection_kwargs", "{}", {}),
        ("engine.mpi", "mpi4py", "mpi4py"),
    ],
)
def test_coerce_from_string(key, text, expected):
    cfg = load_config(overrides={key: text})
    section_name, _, leaf = key.rpartition(".")
    value = getattr(cfg.section(section_name), leaf)
    assert value == expected
    assert type(value) is type(expected)


# ---------------------------------------------------------- split_overrides


def test_split_overrides():
    argv = [
        "start",
        "--controller.ip=*",
        "-n",
        "4",
        "--engine.work_dir",
        "/scratch/me",
        "--reuse",
        "--db.sqlite.table=t=1",
        "--profile=pbs",
        "--other.thing=1",
        "--controller.heartbeat-period", "2",
        "--controller.reuse",
        "--ip",
        "10.0.0.1",
        "--engine.cluster_id=",
    ]
    rest, overrides = split_overrides(argv)
    assert rest == ["start", "-n", "4", "--reuse", "--profile=pbs", "--other.thing=1", "--ip", "10.0.0.1"]
    assert overrides == {
        "controller.ip": "*",
        "engine.work_dir": "/scratch/me",
        "db.sqlite.table": "t=1",
        "controller.heartbeat_period": "2",
        "controller.reuse": "true",
        "engine.cluster_id": "",
    }
    cfg = load_config(overrides=overrides)
    assert cfg.controller.heartbeat_period == 2.0
    assert cfg.controller.reuse is True


def test_split_overrides_bool_takes_only_yes_no_words():
    rest, overrides = split_overrides(["--controller.reuse", "no", "--controller.reuse", "stop"])
    assert overrides == {"controller.reuse": "true"}  # the later one wins
    assert rest == ["stop"]
    rest, overrides = split_overrides(["--controller.reuse", "false"])
    assert (rest, overrides) == ([], {"controller.reuse": "false"})


def test_split_overrides_value_may_start_with_dash():
    rest, overrides = split_overrides(["--controller.heartbeat_misses", "-1"])
    assert (rest, overrides) == ([], {"controller.heartbeat_misses": "-1"})


def test_split_overrides_stops_at_double_dash():
    rest, overrides = split_overrides(["--controller.ip=*", "--", "--engine.file=x", "y"])
    assert rest == ["--", "--engine.file=x", "y"]
    assert overrides == {"controller.ip": "*"}


def test_split_overrides_unknown_key_is_left_to_load_config():
    rest, overrides = split_overrides(["--controller.iip=1"])
    assert (rest, overrides) == ([], {"controller.iip": "1"})
    with pytest.raises(ConfigError, match="did you mean 'controller.ip'"):
        load_config(overrides=overrides)


def test_split_overrides_missing_value():
    with pytest.raises(ConfigError) as info:
        split_overrides(["--controller.ip"])
    assert str(info.value) == "command line: controller.ip: needs a value: --controller.ip=VALUE"


# ---------------------------------------------------------------- rendering

KEY_LINE = re.compile(r"^# (\w+) = ")


def uncomment_keys(text: str) -> str:
    return "\n".join(
        line[2:] if KEY_LINE.match(line) else line for line in text.splitlines()
    ) + "\n"


def test_rendered_profile_loads_as_defaults(tmp_path):
    text = render_profile()
    path = write_profile(tmp_path, text)
    cfg = load_config(tmp_path)
    assert cfg.to_dict() == Config().to_dict()
    assert cfg.source_of("controller.ip") == "default"

    uncommented = uncomment_keys(text)
    assert uncommented != text
    write_profile(tmp_path, uncommented)
    cfg = load_config(tmp_path)
    assert cfg.to_dict() == Config().to_dict()
    # every key was really set by the file
    for name, cls in sections().items():
        for leaf in cls.__dataclass_fields__:
            assert cfg.source_of("%s.%s" % (name, leaf)) == str(path)


def test_rendered_profile_each_line_alone(tmp_path):
    text = render_profile()
    lines = text.splitlines()
    key_lines = [i for i, line in enumerate(lines) if KEY_LINE.match(line)]
    for i in key_lines:
        one = lines[:i] + [lines[i][2:]] + lines[i + 1 :]
        write_profile(tmp_path, "\n".join(one))
        load_config(tmp_path)


def test_rendered_profile_lists_every_key_with_help():
    text = render_profile()
    lines = text.splitlines()
    for name, cls in sections().items():
        assert "[%s]" % name in lines
        for leaf, f in cls.__dataclass_fields__.items():
            matches = [i for i, line in enumerate(lines) if line.startswith("# %s = " % leaf)]
            assert matches, leaf
    i = lines.index("# heartbeat_period = 1.0")
    assert lines[i - 1] == "## Seconds between heartbeat pings to engines."
    # prose never looks like a setting
    assert all(line.startswith(("##", "# ", "[")) or not line for line in lines)
    prose = [line for line in lines if line.startswith("#") and not KEY_LINE.match(line)]
    assert all(line.startswith("##") for line in prose)
    assert "# ports = []" in lines
    assert "# reuse = false" in lines
    assert "# connection_kwargs = {}" in lines
    assert '# ip = "127.0.0.1"' in lines
    i = lines.index('# scheme = "leastload"')
    assert "One of: \"leastload\", \"lru\"" in " ".join(lines[i - 3 : i])
    # keys of one section stay under their own header
    assert lines.index("[engine]") < lines.index("# registration_timeout = 20.0") < lines.index("[db.sqlite]")


GOLDEN_PROFILE = Path(__file__).parent / "golden" / "minipar.toml"


def test_rendered_profile_is_the_golden_copy():
    """The file users get from `profile create`, byte for byte: a change to a section, a help
    text or a default shows here, to be made on purpose (then copy render_profile() over it)."""
    assert render_profile() == GOLDEN_PROFILE.read_text(encoding="utf-8")


def test_render_and_load_tricky_values(tmp_path, registry):
    @section("tricky")
    class Tricky:
        """A section with awkward defaults."""

        text: str = option('quote " back \\ tab \t nl \n del \x7f é', "Awkward string.")
        big: float = option(1e300, "Big float.")
        tiny: float = option(1.5e-7, "Tiny float.")
        inf: float = option(float("inf"), "Infinity.")
        nums: List[float] = option([1.0, 2.5], "Numbers.")
        table: Dict[str, object] = option(
            {"a.b": 1, "plain": {"nested": [1, "x"]}, "": True, "sp ace": "v"}, "A table."
        )
        flags: list[bool] = option([True, False], "Flags, declared with a builtin generic.")

    text = render_profile()
    assert "## A section with awkward defaults.\n[tricky]\n" in text
    write_profile(tmp_path, uncomment_keys(text))
    cfg = load_config(tmp_path)
    assert cfg.tricky == Tricky()
    assert cfg.source_of("tricky.text") == str(tmp_path / "minipar.toml")


# ----------------------------------------------------------- declarations


def test_registered_section_is_loaded_and_nested(tmp_path, registry):
    @section("site.batch")
    class Slurm:
        partition: str = option("", "Partition.")
        account: str = option("", "Account.")

    @section("site.batch.engines")
    class SlurmEngines:
        batch_template_file: str = option("", "Template file.")

    write_profile(
        tmp_path,
        '[site.batch]\npartition = "short"\n[site.batch.engines]\nbatch_template_file = "e.t"\n',
    )
    cfg = load_config(tmp_path)
    assert cfg.site.batch.partition == "short"
    assert cfg.site.batch.engines.batch_template_file == "e.t"
    assert cfg.section("site.batch.engines") is cfg.site.batch.engines
    assert split_overrides(["--site.batch.account=p1"]) == ([], {"site.batch.account": "p1"})
    write_profile(tmp_path, "[site]\npartition = 1\n")
    with pytest.raises(ConfigError, match=r"site.partition: unknown setting; did you mean 'site.batch.partition'\?"):
        load_config(tmp_path)


def test_section_registered_after_config_was_made(registry):
    cfg = load_config()

    @section("late")
    class Late:
        n: int = option(3, "N.")

    assert cfg.late.n == 3
    assert cfg.source_of("late.n") == "default"


def test_declaration_errors(registry):
    with pytest.raises(TypeError, match=r"bad.x: declare it with option\(default, help\)"):
        @section("bad")
        class NoHelp:
            x: int = 1

    with pytest.raises(TypeError, match="bad.x: unsupported option type 'tuple'"):
        @section("bad")
        class BadType:
            x: tuple = option((), "A tuple.")

    with pytest.raises(TypeError, match=r"bad.x: unsupported option type 'List\[dict\]'"):
        @section("bad")
        class BadItem:
            x: List[dict] = option([], "Tables.")

    with pytest.raises(TypeError, match="bad.x: bad default: expected an integer, got string '1'"):
        @section("bad")
        class BadDefault:
            x: int = option("1", "One.")

    with pytest.raises(ValueError, match=r"controller.ip: clashes with section \[controller.ip\]|section \[controller.ip\] clashes with setting controller.ip"):
        @section("controller.ip")
        class Clash:
            x: int = option(1, "X.")

    with pytest.raises(ValueError, match=r"section \[engine\] is already declared by minipar.config.builtin_sections.EngineConfig"):
        @section("engine")
        class Again:
            x: int = option(1, "X.")

    with pytest.raises(ValueError, match="bad section name"):
        section("a..b")
    assert "bad" not in sections()


def test_parent_field_clashes_with_registered_child(registry):
    @section("p.q")
    class Child:
        x: int = option(1, "X.")

    with pytest.raises(ValueError, match=r"p.q: clashes with section \[p.q\]"):
        @section("p")
        class Parent:
            q: int = option(1, "Q.")


def test_typing_and_builtin_annotations_agree(registry):
    @section("ann")
    class Ann:
        a: List[int] = option([], "A.")
        b: list[int] = option([], "B.")
        c: Dict[str, int] = option({}, "C.")
        d: dict = option({}, "D.")

    for key in ("ann.a", "ann.b"):
        with pytest.raises(ConfigError, match="expected a list of integers"):
            load_config(overrides={key: "x"})
    assert load_config(overrides={"ann.c": "{a = 1}", "ann.d": "{b = 'x'}"}).ann.c == {"a": 1}


# ---------------------------------------------------------------- short flags


def option_strings(parser) -> set:
    return {name for action in parser._actions for name in action.option_strings}


def subparser(parser, command):
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]


def test_programs_offer_the_flags_they_always_had():
    from minipar.cluster.__main__ import build_parser as cluster_parser
    from minipar.controller.__main__ import build_parser as controller_parser
    from minipar.doctor.__main__ import build_parser as doctor_parser
    from minipar.engine.__main__ import build_parser as engine_parser

    assert option_strings(controller_parser()) == {
        "-h", "--help", "--profile", "--profile-dir", "--cluster-id", "--ip", "--location", "--reuse", "--nodb",
        "--db", "--enginessh", "--ssh", "--log-level", "--log-to-file", "--no-log-to-file"}
    assert option_strings(engine_parser()) == {
        "-h", "--help", "--file", "--profile", "--profile-dir", "--cluster-id", "--ssh", "--work-dir",
        "--startup-script", "--startup-command", "--log-level", "--id", "--tags", "--end-time", "--drain-before",
        "--log-to-file", "--no-log-to-file"}
    assert option_strings(doctor_parser()) == {
        "-h", "--help", "--file", "--profile", "--profile-dir", "--cluster-id", "--ssh", "--timeout", "--submit",
        "--submit-timeout"}
    start = {"-h", "--help", "--profile", "--profile-dir", "--cluster-id", "-n", "--n", "--engines", "--controller",
             "--ip", "--location", "--reuse", "--jobs", "--keep-engines", "--engine-args"}
    parser = cluster_parser()
    assert option_strings(subparser(parser, "start")) == start | {"--daemonize", "--log-level", "--log-to-file",
                                                                  "--no-log-to-file"}
    assert option_strings(subparser(parser, "render")) == start | {"--log-level"}
    assert option_strings(subparser(parser, "stop")) == {
        "-h", "--help", "--profile", "--profile-dir", "--cluster-id", "--all", "--log-to-file", "--no-log-to-file"}


def test_flags_are_read_back_as_the_settings_they_stand_for():
    from minipar.controller.__main__ import FLAGS, build_parser

    parser = build_parser()
    assert flag_overrides(parser.parse_args([]), FLAGS) == {}
    args = parser.parse_args(["--ip", "*", "--reuse", "--db", "sqlite", "--nodb", "--enginessh", "u@h",
                              "--no-log-to-file", "--cluster-id", "c"])
    assert flag_overrides(args, FLAGS) == {
        "controller.ip": "*", "controller.reuse": True, "controller.db": "nodb",
        "controller.engine_ssh_server": "u@h", "controller.log_to_file": False, "controller.cluster_id": "c"}
    assert flag_overrides(parser.parse_args(["--nodb", "--db", "sqlite"]), FLAGS) == {"controller.db": "nodb"}


def test_flag_values_are_typed_as_their_settings():
    from minipar.engine.__main__ import FLAGS, build_parser

    parser = build_parser()
    overrides = flag_overrides(parser.parse_args(["--id", "3", "--drain-before", "2.5", "--tags", "a,b",
                                                  "--work-dir", "/w", "--log-to-file"]), FLAGS)
    assert overrides == {"engine.id": 3, "engine.drain_before": 2.5, "engine.tags": "a,b", "engine.work_dir": "/w",
                         "engine.log_to_file": True}
    cfg = load_config(overrides=overrides).engine
    assert (cfg.id, cfg.drain_before, cfg.tags, cfg.log_to_file) == (3, 2.5, ["a", "b"], True)
    for argv in (["--id", "x"], ["--drain-before", "soon"], ["--log-to-file", "--no-log-to-file"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)


def test_flag_keys_follow_the_declaration():
    assert flag_keys("controller") == [
        "controller.ip", "controller.location", "controller.reuse", "controller.db", "controller.ssh_server",
        "controller.engine_ssh_server", "controller.cluster_id", "controller.log_level", "controller.log_to_file"]
    assert flag_keys("db.sqlite") == []


def test_a_declared_flag_with_metavar_type_and_a_program_s_own_help(registry):
    @section("site")
    class Site:
        nodes: int = option(1, "Nodes to ask for.", flag=Flag("-N", "--nodes", metavar="COUNT", help="how many nodes"))
        exclusive: bool = option(False, "Whole nodes.", flag=Flag("--exclusive", help="whole nodes",
                                                                   negative_help="share nodes"))
        plain: str = option("", "No flag.")

    parser = argparse.ArgumentParser(prog="p")
    add_flags(parser, flag_keys("site"), help={"--nodes": "nodes for this run", "--no-exclusive": "share them"})
    text = parser.format_help()
    shown = "-N COUNT, --nodes COUNT" if sys.version_info < (3, 13) else "-N, --nodes COUNT"  # 3.13's argparse
    assert shown in text and "nodes for this run" in text and "how many nodes" not in text
    assert "[--exclusive | --no-exclusive]" in " ".join(text.split()) and "share them" in text
    assert flag_overrides(parser.parse_args(["-N", "4", "--no-exclusive"]), flag_keys("site")) == {
        "site.nodes": 4, "site.exclusive": False}


def test_flag_declaration_errors(registry):
    with pytest.raises(ValueError, match="flag names start with '-'"):
        Flag("ip", help="x")
    with pytest.raises(TypeError, match="bad.x: --x: only a bool setting has a --no- flag"):
        @section("bad")
        class Negated:
            x: int = option(1, "X.", flag=Flag("--x", help="x", negative_help="not x"))
    with pytest.raises(TypeError, match="bad.x: --none: bad const: expected an integer"):
        @section("bad")
        class BadConst:
            x: int = option(1, "X.", flag=Flag("--none", help="none", const="none"))
    with pytest.raises(TypeError, match="bad.x: --mode: bad const: expected one of 'a', 'b'"):
        @section("bad")
        class BadChoice:
            x: str = option("a", "X.", choices=("a", "b"), flag=Flag("--mode", help="m", const="c"))
    with pytest.raises(ValueError, match="bad.y: flag --x clashes with bad.x's"):
        @section("bad")
        class Twice:
            x: int = option(1, "X.", flag=Flag("--x", help="x"))
            y: int = option(1, "Y.", flag=Flag("--x", help="y"))
    with pytest.raises(ValueError, match="bad.y: flag a_b clashes with bad.x's"):
        @section("bad")
        class SameDest:
            x: int = option(1, "X.", flag=Flag("--a-b", help="x"))
            y: int = option(1, "Y.", flag=Flag("--a_b", help="y"))
    assert "bad" not in sections()


# ------------------------------------------------------------------ profiles


def test_minipar_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIPAR_DIR", str(tmp_path / "mp"))
    assert minipar_dir() == tmp_path / "mp"
    monkeypatch.delenv("MINIPAR_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert minipar_dir() == tmp_path / "home" / ".minipar"


def test_locate_creates_profile(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIPAR_DIR", str(tmp_path / "mp"))
    old = os.umask(0o022)
    try:
        path = locate_profile_dir()
    finally:
        os.umask(old)
    assert path == tmp_path / "mp" / "profile_default"
    assert security_dir(path) == path / "security"
    assert log_dir(path) == path / "log"
    assert pid_dir(path) == path / "pid"
    for sub in ("security", "log", "pid"):
        assert (path / sub).is_dir()
    if os.name == "posix":
        assert stat.S_IMODE((path / "security").stat().st_mode) == 0o700
    assert locate_profile_dir("pbs") == tmp_path / "mp" / "profile_pbs"
    assert (tmp_path / "mp" / "profile_pbs" / "security").is_dir()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_locate_tightens_existing_security_dir(tmp_path):
    (tmp_path / "p" / "security").mkdir(parents=True)
    os.chmod(tmp_path / "p" / "security", 0o755)
    locate_profile_dir(profile_dir=tmp_path / "p")
    assert stat.S_IMODE((tmp_path / "p" / "security").stat().st_mode) == 0o700


def test_locate_without_create(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIPAR_DIR", str(tmp_path))
    with pytest.raises(ProfileError) as info:
        locate_profile_dir("foo", create=False)
    assert str(info.value) == (
        "profile dir %s does not exist; create it with: "
        "python -m minipar.profile create --profile foo" % (tmp_path / "profile_foo")
    )
    assert not (tmp_path / "profile_foo").exists()
    with pytest.raises(ProfileError, match=re.escape("create --profile-dir %s" % (tmp_path / "x"))):
        locate_profile_dir(profile_dir=str(tmp_path / "x"), create=False)
    locate_profile_dir("foo")
    assert locate_profile_dir("foo", create=False) == tmp_path / "profile_foo"
    (tmp_path / "afile").write_text("")
    with pytest.raises(ProfileError, match="exists but is not a directory"):
        locate_profile_dir(profile_dir=tmp_path / "afile", create=False)
    with pytest.raises(ProfileError, match="is not a directory"):
        locate_profile_dir(profile_dir=tmp_path / "afile")


def test_profile_dir_wins_and_is_absolute(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIPAR_DIR", str(tmp_path / "mp"))
    monkeypatch.chdir(tmp_path)
    path = locate_profile_dir("ignored", profile_dir="rel/prof")
    assert path == tmp_path / "rel" / "prof"
    assert path.is_absolute()
    assert (path / "security").is_dir()
    assert not (tmp_path / "mp").exists()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert locate_profile_dir(profile_dir="~/p") == tmp_path / "home" / "p"


@pytest.mark.parametrize("name", ["", "a/b", "../x", "a\0b"])
def test_bad_profile_names(monkeypatch, tmp_path, name):
    monkeypatch.setenv("MINIPAR_DIR", str(tmp_path))
    with pytest.raises(ProfileError, match="bad profile name"):
        locate_profile_dir(name)
    assert list(tmp_path.iterdir()) == []


def test_empty_profile_dir_is_an_error():
    with pytest.raises(ProfileError, match="empty profile dir"):
        locate_profile_dir(profile_dir="")


def test_load_config_from_located_profile(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIPAR_DIR", str(tmp_path))
    path = locate_profile_dir("x")
    (path / "minipar.toml").write_text(render_profile().replace("# ip = ", "ip = ", 1).replace(
        'ip = "127.0.0.1"', 'ip = "*"', 1))
    assert load_config(path).controller.ip == "*"


def test_launcher_sections_load_from_the_profile(tmp_path):
    write_profile(
        tmp_path,
        '[launcher.slurm]\nqueue = "short"\nqos = "high"\n[launcher.slurm.engines]\nbatch_template_file = "e.t"\n'
        '[launcher.ssh.engines]\n"host1" = 2\n"me@host2" = { n = 1, engine_args = ["--log-level=DEBUG"] }\n',
    )
    cfg = load_config(tmp_path)
    assert cfg.launcher.slurm.queue == "short" and cfg.launcher.slurm.qos == "high"
    assert cfg.launcher.slurm.engines.batch_template_file == "e.t"
    assert cfg.launcher.ssh.engines == {"host1": 2, "me@host2": {"n": 1, "engine_args": ["--log-level=DEBUG"]}}
    write_profile(tmp_path, '[launcher.sge]\nqos = "high"\n')
    with pytest.raises(ConfigError, match=r"launcher.sge.qos: unknown setting; did you mean 'launcher.slurm.qos'\?"):
        load_config(tmp_path)
