"""Engines and the controller on other hosts, started through the system ssh client.

The remote processes are remote.py's: found again by their pid on that host, so stop,
signal and running work from any process that has the state file. Files move with scp:
``to_send`` before starting, ``to_fetch`` after. Left unset, to_send is the engine
connection file (for engines) and to_fetch the controller's connection files (for the
controller); a list given in the profile replaces those defaults, and an empty one (a
shared file system) copies nothing, as the chapter says.

Engine or controller arguments that name their own profile (``--profile-dir D`` as in the
chapter's host3 example, or ``--profile NAME``: ``.minipar/profile_NAME`` in the remote
home) are where that process looks, so the connection files go there (an engine's
``--file F``: to F) and the launcher adds no ``--profile-dir`` of its own.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import posixpath
import shlex
from pathlib import Path
from typing import Optional

from ...config import CONFIG_FILE, ConfigError
from ...connection import connection_file_path
from ...error import CannotSignal, LauncherError
from .base import PACKAGE, PACKAGE_ROOT, ControllerLauncher, EngineSetLauncher, ProcessesMixin, tail
from .ssh_processes import (SSH_TIMEOUT, Remote, RemoteProcess, alive_function, end_clients, file_tag, host_name,
                            in_parallel, restore_process, same_file, wait_started)

log = logging.getLogger(__name__)

CONTROLLER_TIMEOUT = 60.0
"""Seconds a remote controller gets to write its connection files."""
SPAWN_BATCH = 8
"""At most this many ssh logins to one host at once: sshd drops connections beyond its
MaxStartups (10 by default) while they are still logging in."""
PROXY_STOP_GRACE = 12.0
"""Extra seconds a stopped sshproxy gets to stop its own engines before it is killed."""
ENGINES_EXAMPLE = ('[launcher.ssh.engines]\n"host1" = 2\n"user@host2" = { n = 4, engine_args = '
                   '["--log-level=DEBUG"], engine_cmd = ["/opt/venv/bin/python", "-m", "%s.engine"] }'
                   % PACKAGE)


# ---------------------------------------------------------------------------- settings

@dataclasses.dataclass
class HostEngines:
    """What the engines map says about one host."""

    host: str
    n: int
    args: Optional[list] = None
    cmd: Optional[list] = None


def string_list(value, source: str, key: str, split: bool = False) -> list:
    if split and isinstance(value, str):
        value = shlex.split(value)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(source, key, "must be a list of strings, got %r" % (value,))
    return list(value)


def parse_engines(engines, source: str) -> list:
    """The [launcher.ssh] engines map: host = n, host = [n, [args]] or host = { n, engine_args, engine_cmd }."""
    if not isinstance(engines, dict):
        raise ConfigError(source, "launcher.ssh.engines", "must be a table of host = number of engines, e.g.\n"
                          + ENGINES_EXAMPLE)
    hosts = []
    for host, spec in engines.items():
        key = 'launcher.ssh.engines."%s"' % host
        args = cmd = None
        if isinstance(spec, (list, tuple)) and len(spec) == 2 and isinstance(spec[1], (list, tuple)):
            n, args = spec[0], string_list(spec[1], source, key + "[1]")
        elif isinstance(spec, dict):
            unknown = sorted(set(spec) - {"n", "engine_args", "engine_cmd"})
            if unknown:
                raise ConfigError(source, key, "unknown key(s) %s; use n, engine_args and engine_cmd"
                                  % ", ".join(unknown))
            n = spec.get("n", 1)
            if "engine_args" in spec:
                args = string_list(spec["engine_args"], source, key + ".engine_args")
            if "engine_cmd" in spec:
                cmd = string_list(spec["engine_cmd"], source, key + ".engine_cmd", split=True)
                if not cmd:
                    raise ConfigError(source, key + ".engine_cmd", "is empty")
        else:
            n = spec
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(source, key, "the number of engines must be an integer >= 0, got %r" % (n,))
        if n:
            hosts.append(HostEngines(host, n, args, cmd))
    return hosts


def flag_value(args, flag: str):
    """The value of the last ``--flag V`` or ``--flag=V`` in args, or None."""
    value = None
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(flag + "="):
            value = arg[len(flag) + 1:]
    return value


def home_relative(path: str) -> str:
    """'~/x' as 'x' and '~' as '.': ssh and scp read relative paths from the home dir."""
    if path == "~":
        return "."
    return path[2:] if path.startswith("~/") else path


def named_profile(args):
    """The remote profile dir that engine or controller arguments name, or None."""
    profile_dir = flag_value(args, "--profile-dir")
    if profile_dir:
        return home_relative(profile_dir)
    profile = flag_value(args, "--profile")
    return ".minipar/profile_%s" % profile if profile else None


def file_pairs(value, source: str, key: str) -> list:
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in value):
        raise ConfigError(source, key, "must be a list of [from, to] pairs of paths, got %r" % (value,))
    return [(a, b) for a, b in value]


# ---------------------------------------------------------------------------- launchers

class SSHLauncher(ProcessesMixin):
    """What the ssh launchers share: settings, hosts, remote paths, remote processes."""

    name = "ssh"
    settings_section = "launcher.ssh"
    processes: list

    def setup(self) -> None:
        self.processes = []
        self._remotes: dict = {}

    @property
    def source(self) -> str:
        return str(self.profile_dir / CONFIG_FILE)

    def remote(self, host: str) -> Remote:
        if host not in self._remotes:
            self._remotes[host] = Remote(host, self.settings)
        return self._remotes[host]

    @property
    def remote_profile_dir(self) -> str:
        """The setting, or the local path; '~/x' becomes 'x', which ssh reads from the home dir."""
        return home_relative(self.settings.remote_profile_dir or str(self.profile_dir))

    def profile_of(self, args) -> str:
        """The remote profile dir of a process started with args (see the module docstring)."""
        return named_profile(args) or self.remote_profile_dir

    def remote_path(self, local, args=()) -> str:
        """Where a file of the local profile is in the remote one of a process with args."""
        return posixpath.join(self.profile_of(args), Path(local).relative_to(self.profile_dir).as_posix())

    def chosen_files(self, key: str, defaults: list) -> list:
        """The to_send or to_fetch pairs: the defaults unless the profile sets the list."""
        if key not in self.settings.configured:
            return defaults
        return file_pairs(getattr(self.settings, key), self.source, "launcher.ssh." + key)

    @property
    def remote_env(self) -> dict:
        path = shlex.quote(self.settings.remote_pythonpath or PACKAGE_ROOT)
        return {"PYTHONPATH": path + "${PYTHONPATH:+:$PYTHONPATH}"}

    def remote_python(self) -> list:
        return shlex.split(self.settings.remote_python or "python3")

    def remote_common_args(self, own_args=()) -> list:
        args = [] if named_profile(own_args) else ["--profile-dir", self.remote_profile_dir]
        args += ["--log-level", self.log_level]
        if self.cluster_id:
            args += ["--cluster-id", self.cluster_id]
        return args

    def prepare(self, host: str, pairs, profiles=()) -> None:
        """Make the remote profiles' security dirs (0700) and the dirs of the files, then send them."""
        if not pairs and not profiles:
            return
        for local, _ in pairs:
            if not os.path.exists(local):
                raise ConfigError(self.source, "launcher.ssh.to_send", "local file %s does not exist" % local)
        dirs = sorted({posixpath.dirname(r) for _, r in pairs if posixpath.dirname(r)}
                      | {posixpath.join(p, "security") for p in profiles})
        script = " && ".join("mkdir -p %s%s" % ("-m 0700 " if posixpath.basename(d) == "security" else "",
                                                shlex.quote(d)) for d in dirs) or "true"
        remote = self.remote(host)
        remote.run(script, "create the directories %s" % " ".join(dirs))
        remote.send(pairs)

    def start_on(self, host: str, commands, spawned: list) -> tuple:
        """Run each (command, log file) on host, a few at a time; returns (processes, problem).
        Each one is also added to spawned at once, to be cleaned up if the start is cut short."""
        remote = self.remote(host)
        started = []
        for i in range(0, len(commands), SPAWN_BATCH):
            batch = []
            for cmd, log_file in commands[i:i + SPAWN_BATCH]:
                batch.append(remote.spawn(cmd, self.remote_env, log_file))
                spawned.append(batch[-1])
            wait_started(batch)
            started += batch
            problems = [s.problem for s in batch if s.problem]
            if problems:
                return started, problems[0]
        return started, ""

    def start_all(self, plans: dict, what: str, files: dict) -> None:
        """For each host (in parallel): make its profiles and send its files ({host:
        ([(local, remote)], [remote profile dirs])}), start its commands. If any host fails,
        stop everything started and raise naming the failures."""
        spawned: list = []

        def run(host):
            try:
                self.prepare(host, *files.get(host, ([], [])))
            except (LauncherError, ConfigError) as e:
                return e
            _, problem = self.start_on(host, plans[host], spawned)
            return LauncherError(problem) if problem else None

        def keep_started():
            self.processes = [RemoteProcess(s.remote, s.pid, s.client.log_file, s.client)
                              for s in spawned if s.pid is not None]

        try:
            errors = [e for e in in_parallel(run, list(plans)) if e is not None]
        except BaseException:
            wait_started(spawned)
            keep_started()
            self.stop()
            end_clients([s.client for s in spawned], 0)
            raise
        keep_started()
        if errors:
            self.stop()
            end_clients([s.client for s in spawned], 0)
            config_errors = [e for e in errors if isinstance(e, ConfigError)]
            if config_errors:
                raise config_errors[0]
            raise LauncherError("cannot start %s: %s" % (what, "\n".join(str(e) for e in errors)))

    # -- the launcher interface ---------------------------------------------------------------

    def signal(self, sig) -> None:
        by_host = self.by_host([p for p in self.processes if p.may_run_there])
        in_parallel(lambda host: self.remote(host).signal(by_host[host], sig), list(by_host))

    def by_host(self, processes) -> dict:
        hosts: dict = {}
        for p in processes:
            hosts.setdefault(p.host, []).append(p.pid)
        return hosts

    def stop_remote(self, timeout: float, then=None) -> None:
        """TERM the remote processes over ssh, wait, KILL the leftovers, then end the local
        ssh clients. A host that cannot be reached is logged, not raised: the rest still stop."""
        stopping = [p for p in self.processes if p.may_run_there]
        by_host = self.by_host(stopping)
        then = then or {}

        def stop_host(host):
            try:
                left = self.remote(host).stop(by_host[host], timeout, then.get(host, ""))
            except LauncherError as e:
                log.warning("%s", e)
                return
            if left:
                log.warning("pids %s on %s survived SIGKILL", " ".join(map(str, sorted(left))), host)
            for p in stopping:
                if p.host == host and p.pid not in left:
                    p.stopped = True

        in_parallel(stop_host, list(by_host))
        end_clients([p.client for p in self.processes if p.client is not None])

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_remote(timeout)

    def process_from_dict(self, d: dict) -> RemoteProcess:
        return restore_process(d, self.remote)


class SSHEngineSetLauncher(SSHLauncher, EngineSetLauncher):
    """Engines on the hosts of [launcher.ssh] engines, one ssh connection each.

    ``n`` comes from that map; the n the Cluster asks for is ignored when the map names
    hosts. A host's ``engine_args`` are used instead of [cluster] engine_args, and its
    ``engine_cmd`` replaces ``<remote_python> -m <package>.engine``."""

    name = "ssh"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.setup()
        self.hosts = parse_engines(self.settings.engines, self.source)
        if self.hosts:
            self.n = sum(h.n for h in self.hosts)

    def check_hosts(self) -> None:
        if not self.hosts:
            raise ConfigError(self.source, None, "[launcher.ssh] engines names no hosts; say where the engines "
                                                 "run and how many, e.g.\n" + ENGINES_EXAMPLE)

    def host_args(self, h: HostEngines) -> list:
        return self.args if h.args is None else h.args

    def reader_args(self, h: HostEngines) -> list:
        """The arguments of the process on h that reads the engine connection file."""
        return self.host_args(h)

    def engine_command(self, h: HostEngines) -> list:
        program = h.cmd or self.remote_python() + ["-m", PACKAGE + ".engine"]
        return program + self.remote_common_args(self.host_args(h)) + self.host_args(h)

    def files_to_send(self) -> dict:
        """{host: ([(local, remote)], [profiles])}: to_send if the profile sets it, else the
        engine connection file, to where each host's engines look for it, and their profiles."""
        local = connection_file_path(self.profile_dir, "engine", self.cluster_id)
        explicit = self.chosen_files("to_send", None)
        if explicit is not None:
            return {h.host: ([(os.path.expanduser(a), b) for a, b in explicit], []) for h in self.hosts}
        if not local.exists():
            raise LauncherError("cannot start engines over ssh: no engine connection file %s; start the "
                                "controller first" % local)
        files: dict = {}
        for h in self.hosts:
            args = self.reader_args(h)
            target = flag_value(args, "--file") or flag_value(args, "--engine.file")
            pair = (str(local), home_relative(target) if target else self.remote_path(local, args))
            pairs, profiles = files.setdefault(h.host, ([], []))
            if pair not in pairs:
                pairs.append(pair)
            if self.profile_of(args) not in profiles:
                profiles.append(self.profile_of(args))
        return files

    def fetch_files(self) -> None:
        """An explicit to_fetch, from every host, after the engines started."""
        pairs = self.chosen_files("to_fetch", [])
        for host in dict.fromkeys(h.host for h in self.hosts):
            self.remote(host).fetch([(r, os.path.expanduser(loc)) for r, loc in pairs])

    def log_file(self, host: str, i: int) -> str:
        return str(self.log_dir / ("engine-%s-%s-%d.log" % (self.cluster_id or "default", file_tag(host), i)))

    def start(self) -> None:
        self.check_hosts()
        files = self.files_to_send()
        plans: dict = {}
        i = self.options.get("first_index", 0)
        for h in self.hosts:
            plans.setdefault(h.host, [])
            for _ in range(h.n):
                plans[h.host].append((self.engine_command(h), self.log_file(h.host, i)))
                i += 1
        self.start_all(plans, "engines over ssh", files)
        self.fetch_files()


class SSHProxyEngineSetLauncher(SSHEngineSetLauncher):
    """One ``python -m <package>.cluster engines --foreground -n N`` per host, which starts
    that host's engines there and stops them when it is stopped.

    Signals cannot go through it (SIGINT stops it), so the Cluster sends them through the
    controller instead."""

    name = "sshproxy"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        for h in self.hosts:
            if h.cmd:
                raise ConfigError(self.source, 'launcher.ssh.engines."%s".engine_cmd' % h.host,
                                  "sshproxy starts engines with the python that runs it; set remote_python "
                                  "instead, or use cluster.engines = \"ssh\"")

    def proxy_command(self, h: HostEngines) -> list:
        args = self.host_args(h)
        return (self.remote_python() + ["-m", PACKAGE + ".cluster", "engines", "--foreground", "-n", str(h.n)]
                + self.remote_common_args() + ["--engine-arg=%s" % a for a in args])

    def reader_args(self, h: HostEngines) -> list:
        return []  # the proxy runs in the launcher's remote profile, and its engines read it there

    def log_file(self, host: str, i: int = 0) -> str:
        return str(self.log_dir / ("sshproxy-%s-%s.log" % (self.cluster_id or "default", file_tag(host))))

    def start(self) -> None:
        self.check_hosts()
        files = self.files_to_send()
        plans = {h.host: [(self.proxy_command(h), self.log_file(h.host))] for h in self.hosts}
        self.start_all(plans, "engines over sshproxy", files)
        self.fetch_files()

    def signal(self, sig) -> None:
        raise CannotSignal("sshproxy engines are children of `cluster engines --foreground` on each host")

    def engines_running(self) -> int:
        per_host = {h.host: h.n for h in self.hosts}
        return sum(per_host.get(p.host, 0) for p in self.processes if p.running)

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_remote(timeout + PROXY_STOP_GRACE)


class SSHControllerLauncher(SSHLauncher, ControllerLauncher):
    """The controller on [launcher.ssh] controller_host; its connection files (or what
    ``to_fetch`` lists instead) are copied back into this profile once it has written them."""

    name = "ssh"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.setup()

    @property
    def host(self) -> str:
        host = self.settings.controller_host
        if not host:
            raise ConfigError(self.source, "launcher.ssh.controller_host",
                              "is empty; set it to the [user@]host the controller runs on")
        return host

    @property
    def pid(self):
        return self.processes[0].pid if self.processes else None

    @property
    def log_file(self) -> str:
        return str(self.log_dir / ("controller%s.out" % ("-" + self.cluster_id if self.cluster_id else "")))

    def controller_args(self) -> list:
        args = list(self.args)

        def given(name):
            return any(a == "--" + name or a.startswith("--%s=" % name) or a.startswith("--controller.%s=" % name)
                       for a in args)

        if not given("ip"):
            args.append("--ip=*")
        if not given("location"):
            args.append("--location=%s" % host_name(self.host))
        return args

    def connection_files(self) -> list:
        """[(remote path, local path)] of the client and engine files."""
        local = [connection_file_path(self.profile_dir, role, self.cluster_id) for role in ("client", "engine")]
        return [(self.remote_path(p, self.args), str(p)) for p in local]

    def remote_pid_file(self) -> str:
        return posixpath.join(self.profile_of(self.args), "pid",
                              "controller%s.pid" % ("-" + self.cluster_id if self.cluster_id else ""))

    def start(self) -> None:
        host = self.host
        to_fetch = self.chosen_files("to_fetch", None)
        to_send = self.chosen_files("to_send", [])
        command = (self.remote_python() + ["-m", PACKAGE + ".controller"] + self.remote_common_args(self.args)
                   + self.controller_args())
        self.start_all({host: [(command, self.log_file)]}, "the controller over ssh",
                       {host: ([(os.path.expanduser(a), b) for a, b in to_send], [self.profile_of(self.args)])})
        try:
            self.wait_for_files()
            remote = self.remote(host)
            if to_fetch is None:
                remote.fetch(self.connection_files(), mode=0o600)
            else:
                pairs = [(r, os.path.expanduser(loc)) for r, loc in to_fetch]
                secret = [p for p in pairs if Path(p[1]).parent.name == "security"]  # keys: owner only
                remote.fetch(secret, mode=0o600)
                remote.fetch([p for p in pairs if p not in secret])
        except BaseException:
            self.stop()
            raise

    def wait_for_files(self) -> None:
        """Wait there until the controller has written its pid file (after its connection
        files), or has exited."""
        pid = self.pid
        tests = " && ".join("[ -s %s ]" % shlex.quote(r) for r, _ in self.connection_files())
        script = alive_function([pid]) + (
            "i=0\nwhile [ $i -lt %d ]; do\n"
            "  if [ \"$(cat %s 2>/dev/null)\" = %d ] && %s; then echo ready; exit 0; fi\n"
            "  [ -n \"$(alive)\" ] || { echo exited; exit 0; }\n"
            "  sleep 0.1; i=$((i+1))\ndone\necho timeout\n"
            % (int(CONTROLLER_TIMEOUT * 10), shlex.quote(self.remote_pid_file()), pid, tests))
        state = self.remote(self.host).run(script, "wait for the controller's connection files",
                                           CONTROLLER_TIMEOUT + SSH_TIMEOUT).strip()
        if state == "ready":
            return
        why = ("exited before writing its connection files" if state == "exited"
               else "did not write its connection files within %gs" % CONTROLLER_TIMEOUT)
        raise LauncherError("the controller on host %r (pid %d there) %s; last lines of %s:\n%s"
                            % (self.host, pid, why, self.log_file, tail(self.log_file)))

    def stop(self, timeout: float = 5.0) -> None:
        if not self.processes:
            return
        then = ""
        if not any(a.startswith("--reuse") for a in self.args):
            remote_files = [r for r, loc in self.connection_files() if not same_file(self.host, r, loc)]
            if remote_files:
                then = "rm -f %s\n" % " ".join(shlex.quote(r) for r in remote_files)
        self.stop_remote(timeout, {self.host: then})
