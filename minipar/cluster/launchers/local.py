"""Local launchers: the controller and engines as child processes, each in its own session."""
from __future__ import annotations

from .base import (ControllerLauncher, EngineSetLauncher, Process, ProcessesMixin, child_env, python_command,
                   stop_processes)


class LocalProcessesMixin(ProcessesMixin):
    processes: list

    def signal(self, sig) -> None:
        for p in self.processes:
            p.signal(sig)

    def stop(self, timeout: float = 5.0) -> None:
        stop_processes(self.processes, timeout)


class LocalControllerLauncher(LocalProcessesMixin, ControllerLauncher):
    name = "local"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.processes = []

    @property
    def log_file(self) -> str:
        return str(self.log_dir / ("controller%s.out" % ("-" + self.cluster_id if self.cluster_id else "")))

    @property
    def pid(self):
        return self.processes[0].pid if self.processes else None

    def start(self) -> None:
        cmd = python_command("controller") + self.common_args() + self.args
        self.processes = [Process.spawn(cmd, self.log_file, env=child_env())]


class LocalEngineSetLauncher(LocalProcessesMixin, EngineSetLauncher):
    name = "local"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.processes = []

    def start(self) -> None:
        # The engine's output goes to its log file in log/ already; its own would repeat it.
        cmd = python_command("engine") + self.common_args() + ["--engine.log_to_file=false"] + self.args
        env = child_env()
        first = self.options.get("first_index", 0)
        for i in range(first, first + self.n):
            log_file = self.log_dir / ("engine-%s-%d.log" % (self.cluster_id or "default", i))
            self.processes.append(Process.spawn(cmd, log_file, env=env))
