"""Every section of ``minipar.toml``, written out: one dataclass per table.

Each field is declared with ``option(default, help)``: that one declaration validates the
file, coerces ``--section.key=value`` strings from the command line and renders the commented
file that ``profile create`` writes, so the three can never disagree. A setting people type
often also declares its short command-line flag (``flag=Flag("--ip", help=...)``), which the
programs add from here (see command_line.py).

Order matters: sections render in the order they are declared here, and fields in the order
they are written.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List

from .schema import Flag, option, section

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

LOG_LEVEL_FLAG = Flag("--log-level", help="DEBUG, INFO, WARNING or ERROR")


def log_to_file_flag(key: str) -> Flag:
    """``--log-to-file | --no-log-to-file``, as ipyparallel's, for the ``log_to_file`` of a section."""
    return Flag("--log-to-file", help="also log to a file in the profile's log/ dir (%s = true)" % key,
                negative_help="log to stderr only (%s = false)" % key)


@section("controller")
@dataclasses.dataclass
class ControllerConfig:
    """The controller process: where it listens, what it writes into connection files,
    how it schedules and when it declares an engine dead."""

    ip: str = option("127.0.0.1", "Interface to bind; \"*\" means all interfaces.",
                     flag=Flag("--ip", help="interface to listen on (default 127.0.0.1; '*' = all)"))
    location: str = option(
        "",
        "Host or IP written into connection files for clients and engines to connect to; "
        "empty means the hostname when ip is \"*\", else ip.",
        flag=Flag("--location", help="host or IP written into the connection files"),
    )
    ports: List[int] = option(
        [],
        "Explicit ports [client, engine, notification, heartbeat_ping, heartbeat_pong]; "
        "empty means random free ports.",
    )
    port_range: str = option(
        "", "\"LOW-HIGH\": pick random free ports in this range (for firewalls)."
    )
    reuse: bool = option(False, "Reuse ports and key from existing connection files.",
                         flag=Flag("--reuse", help="reuse the ports and key of the existing connection files"))
    curve: str = option(
        "auto",
        "Encrypt every connection (CurveZMQ): \"auto\" when listening beyond loopback (and "
        "libzmq has curve), \"true\" always, \"false\" never. The server key travels in the "
        "connection files.",
        choices=("auto", "true", "false"),
    )
    db: str = option(
        "dict",
        "Where task records are kept: dict (in memory), nodb (not kept), sqlite, mongodb, "
        "or an importable pkg.mod.Class.",
        flag=(Flag("--db", help="task database: dict, nodb, sqlite, mongodb or pkg.mod.Class"),
              Flag("--nodb", help="keep no task records (db = 'nodb')", const="nodb")),
    )
    ssh_server: str = option(
        "", "ssh server that clients tunnel through (written to the client connection file).",
        flag=Flag("--ssh", metavar="USER@HOST", help="ssh server clients tunnel through"),
    )
    engine_ssh_server: str = option(
        "", "ssh server that engines tunnel through (written to the engine connection file).",
        flag=Flag("--enginessh", metavar="USER@HOST", help="ssh server engines tunnel through"),
    )
    cluster_id: str = option(
        "", "Cluster id; names the connection files (controller-<id>-client.json).",
        flag=Flag("--cluster-id", help="tell apart several controllers in one profile"),
    )
    scheme: str = option(
        "leastload",
        "How the load-balanced scheduler picks an engine.",
        choices=("leastload", "lru", "twobin", "weighted", "plainrandom"),
    )
    heartbeat_period: float = option(1.0, "Seconds between heartbeat pings to engines.")
    heartbeat_misses: int = option(
        3, "Missed heartbeat periods before an engine is declared dead."
    )
    engine_hwm: int = option(
        16,
        "Load-balanced tasks in flight per engine: more keeps engines fed; tasks queued behind "
        "a long one are taken back by engines that go idle, so balance does not suffer.",
    )
    log_level: str = option("INFO", "Log level.", choices=LOG_LEVELS, flag=LOG_LEVEL_FLAG)
    log_to_file: bool = option(
        True, "Also log to log/controller[-<id>].log in the profile, besides stderr.",
        flag=log_to_file_flag("controller.log_to_file"),
    )


@section("engine")
@dataclasses.dataclass
class EngineConfig:
    """An engine process: how it finds the controller, what it runs first, and when it
    gives up on a controller that has gone away."""

    file: str = option(
        "", "Engine connection file; empty means look in the profile's security dir.",
        flag=Flag("--file", help="engine connection file (default: from the profile's security dir)"),
    )
    ssh_server: str = option(
        "", "ssh server to tunnel the connection to the controller through.",
        flag=Flag("--ssh", metavar="USER@HOST", help="tunnel the connections through this ssh server"),
    )
    startup_script: str = option(
        "", "Python file to run in the engine namespace at startup.",
        flag=Flag("--startup-script", help="Python file run once in the engine's namespace"),
    )
    startup_command: str = option(
        "", "Python code to run in the engine namespace at startup.",
        flag=Flag("--startup-command", help="Python code run once in the engine's namespace"),
    )
    work_dir: str = option(
        "", "Directory to change to at startup; empty means stay put.",
        flag=Flag("--work-dir", help="directory to chdir into before anything else"),
    )
    mpi: str = option(
        "",
        "Initialise MPI when the engine starts (the chapter's c.MPI.use): \"mpi4py\" imports "
        "mpi4py.MPI and puts MPI, mpi_rank and mpi_size in the namespace; \"init_script\" runs "
        "the file engine.mpi_init_script instead, for another MPI binding. Under mpiexec the "
        "engine then asks for its MPI rank as its engine id.",
        choices=("", "mpi4py", "init_script"),
    )
    mpi_init_script: str = option(
        "",
        "Python file run in the engine namespace at start when engine.mpi = \"init_script\" (the "
        "chapter's c.MPI.init_script). It should set mpi_rank and mpi_size; if it does not, they "
        "are read from mpiexec's environment (Open MPI, MPICH).",
    )
    mpi_registration_delay: float = option(
        0.02,
        "Seconds per MPI rank an engine waits before registering (rank r waits r times this), "
        "so a large mpiexec job does not flood the controller; 0 registers all at once.",
    )
    id: int = option(
        -1,
        "Engine id to ask the controller for; registration fails if a live engine holds it. "
        "-1: an MPI engine asks for its rank (and takes another id if that one is held), any "
        "other gets the next free id.",
        flag=Flag("--id", metavar="N",
                  help="ask the controller for engine id N; registration fails if a live engine has it "
                       "(default: the MPI rank with engine.mpi, else the next free id)"),
    )
    registration_timeout: float = option(
        20.0,
        "Seconds to wait for the controller: for its engine connection file to appear, then "
        "for it to accept the registration; 0 means no limit, so an engine can start before "
        "its controller (with --reuse files, or on a shared file system).",
    )
    controller_timeout: float = option(
        60.0,
        "Seconds without controller heartbeats before the engine gives up and exits, "
        "so a lost controller doesn't burn an allocation.",
    )
    cluster_id: str = option("", "Cluster id, to pick controller-<id>-engine.json.",
                             flag=Flag("--cluster-id", help="which controller of the profile to join"))
    tags: List[str] = option(
        [],
        "Labels of this engine (\"gpu\", \"bigmem\"): rc.load_balanced_view(tags=[...]) runs tasks "
        "only on engines that have every tag named, rc.direct_view(tags=[...]) addresses them.",
        flag=Flag("--tags", metavar="TAG,...",
                  help="labels of this engine, comma-separated (engine.tags): load-balanced views with "
                       "tags=[...] send tasks only to engines that have them"),
    )
    end_time: str = option(
        "",
        "When this engine's allocation ends, for a batch system minipar cannot ask (HTCondor, "
        "Windows HPC, a reservation): seconds since the epoch, an ISO date and time (local "
        "unless it names a zone) or +DURATION from the engine's start (+3600, +2:00:00). Empty: "
        "asked of Slurm, PBS, Grid Engine or LSF when the engine runs in one of their jobs.",
        flag=Flag("--end-time", metavar="WHEN",
                  help="when this engine's allocation ends (engine.end_time): seconds since the epoch, an "
                       "ISO date and time, or +DURATION (+3600, +2:00:00); by default asked of the batch "
                       "system it runs in"),
    )
    drain_before: float = option(
        300.0,
        "Seconds before its job's end (end_time, or the batch job's walltime) when the engine "
        "drains: it takes no new tasks, gives back those it has not started, finishes the one it "
        "runs and leaves, so the batch system never kills work; 0 never drains.",
        flag=Flag("--drain-before", metavar="SECONDS",
                  help="drain this long before the end (engine.drain_before, default 300; 0: never)"),
    )
    nanny: bool = option(
        True,
        "Run the engine as a child of the launched process (its nanny), which passes signals on "
        "and, when the engine dies, tells the controller why (the signal, the exit code, the "
        "out-of-memory killer) at once; false runs the engine in the launched process "
        "(ipyparallel: IPEngine.enable_nanny).",
    )
    log_level: str = option("INFO", "Log level.", choices=LOG_LEVELS, flag=LOG_LEVEL_FLAG)
    log_to_file: bool = option(
        True,
        "Also log to log/engine[-<id>]-<pid>.log in the profile, besides stderr. Engines "
        "started by the local launcher have their output in log/ already and skip it.",
        flag=log_to_file_flag("engine.log_to_file"),
    )


@section("cluster")
@dataclasses.dataclass
class ClusterConfig:
    """A managed cluster (minipar.Cluster, python -m minipar.cluster): which launchers
    start the controller and engines, how many, and how long to wait for them."""

    n: int = option(0, "Number of engines; 0 means one per CPU core of this machine.",
                    flag=Flag("-n", "--n", help="number of engines (default: [cluster] n, or one per core)"))
    engines: str = option(
        "local",
        "Engine launcher: local, mpi, ssh, sshproxy, pbs, sge, lsf, slurm, htcondor, windowshpc "
        "(in any case, or as ipyparallel's class name or dotted path), or a dotted "
        "pkg.mod.Class. Each reads its [launcher.NAME] section.",
        flag=Flag("--engines", help="engine launcher: local, mpi, ssh, sshproxy, pbs, sge, lsf, slurm, htcondor "
                                    "or pkg.mod.Class"),
    )
    controller: str = option(
        "local",
        "Controller launcher: local, mpi, ssh, pbs, sge, lsf, slurm, htcondor, windowshpc "
        "(as for engines), or a dotted pkg.mod.Class.",
        flag=Flag("--controller", help="controller launcher: local, mpi, ssh, pbs, sge, lsf, slurm, htcondor or "
                                       "pkg.mod.Class"),
    )
    controller_ip: str = option("", "Interface the controller listens on; empty keeps controller.ip.",
                                flag=Flag("--ip", help="interface the controller listens on ('*' = all)"))
    controller_location: str = option(
        "", "Address written into connection files; empty keeps controller.location.",
        flag=Flag("--location", help="address written into the connection files"),
    )
    controller_args: List[str] = option([], "Extra command-line arguments for the controller.")
    engine_args: List[str] = option([], "Extra command-line arguments for each engine.")
    log_level: str = option("INFO", "Log level of the cluster's processes.", choices=LOG_LEVELS,
                            flag=LOG_LEVEL_FLAG)
    log_to_file: bool = option(
        False,
        "python -m minipar.cluster also logs to log/cluster[-<id>].log in the profile, "
        "besides stderr (as ipyparallel, off unless asked for: --log-to-file).",
        flag=log_to_file_flag("cluster.log_to_file"),
    )
    shutdown_atexit: bool = option(
        True, "Stop the cluster when the Python process that started it exits."
    )
    controller_timeout: float = option(
        30.0, "Seconds to wait for the controller to write its connection files."
    )
    engine_timeout: float = option(
        120.0, "Seconds to wait for engines to register before giving up and stopping them."
    )
    stop_timeout: float = option(
        5.0, "Seconds a stopped process gets after SIGTERM before SIGKILL."
    )
    jobs: int = option(
        1,
        "How many jobs (engine sets) the n engines are split into, their sizes differing by at "
        "most one: with a batch launcher, smaller jobs fit a site's queue and array limits and "
        "start as nodes free up.",
        flag=Flag("--jobs", metavar="N",
                  help="split the engines into N engine sets, one batch job each (default: [cluster] jobs)"),
    )
    keep_engines: bool = option(
        False,
        "Keep the engines at their number while the cluster runs: a job that ends (walltime, "
        "cancelled from outside) gets a replacement of the same size, launcher and tags, and a "
        "job whose engines drain before its walltime (engine.drain_before) gets one early, so it "
        "can queue while the old one finishes. Needs a process that stays: the Python process "
        "that made the Cluster, or `cluster start` (with --daemonize it stays in the background).",
        flag=Flag("--keep-engines",
                  help="while the cluster runs, replace an engine job that ends or drains ([cluster] "
                       "keep_engines); this command (with --daemonize: a copy of it in the background) "
                       "stays to do it"),
    )
    max_jobs: int = option(
        0,
        "Most jobs (engine sets) the cluster has at once, replacements included; 0 means no "
        "limit. A split that needs more is refused; a replacement waits for a job to end.",
    )
    max_array_size: int = option(
        0,
        "Most engines in one job (a site's array or job size limit): n is split into more jobs "
        "than cluster.jobs if needed; 0 means no limit.",
    )
    submit_interval: float = option(
        0.0,
        "Seconds at least between two submissions of the cluster's jobs, first ones and "
        "replacements, for sites that limit how fast a user may submit; 0 submits at once.",
    )
    poll_interval: float = option(
        10.0,
        "Seconds between the cluster's questions to a batch system whether its jobs still run "
        "(one squeue/qstat/bjobs/condor_q for all of them): the scheduler answers them for every "
        "user of the site, so a big cluster must not ask often.",
    )


@section("db.sqlite")
@dataclasses.dataclass
class SQLiteDBConfig:
    """Task records in SQLite, used when controller.db is "sqlite". Writes are committed
    in batches by a background thread; a crash loses at most the last fraction of a second."""

    filename: str = option(
        "",
        "Database file; empty means tasks.db in the profile's security dir, and a relative "
        "name is taken from there too. \":memory:\" keeps it in memory.",
    )
    table: str = option(
        "",
        "Table name; empty means one named after the controller session (a new table each "
        "run, but a --reuse restart keeps its predecessor's). Set a fixed name to keep task "
        "history across every controller restart.",
    )


@section("db.mongodb")
@dataclasses.dataclass
class MongoDBConfig:
    """Task records in MongoDB (needs pymongo), used when controller.db is "mongodb"."""

    database: str = option(
        "",
        "Database name; empty means one named after the controller session (a new database "
        "each run). Set a fixed name to keep task history across controller restarts.",
    )
    connection_args: list = option([], "Positional arguments for pymongo.MongoClient.")
    connection_kwargs: Dict[str, Any] = option(
        {}, "Keyword arguments for pymongo.MongoClient, e.g. { host = \"mongo.example\", port = 27017 }."
    )


@section("db.dict")
@dataclasses.dataclass
class DictDBConfig:
    """Task records in the controller's memory, used when controller.db is "dict" (the
    default). The oldest completed records are dropped to stay within the limits; records
    of pending tasks never are."""

    record_limit: int = option(
        10000,
        "Most records kept (0: no limit). A record costs about 2 KB besides its buffers, so "
        "10000 is about 20 MB: enough to fetch the results of a large map from another "
        "client, small enough for a shared login node. ipyparallel kept 1024.",
    )
    size_limit: int = option(
        256 * 1024 * 1024,
        "Most bytes of buffers (arguments and results) kept, in bytes (0: no limit); "
        "268435456 is 256 MiB. ipyparallel kept 1 GiB; use db = \"sqlite\" to keep big "
        "results on disk instead.",
    )
    cull_fraction: float = option(
        0.1,
        "Fraction of the limit dropped at once when a limit is hit, oldest completed first, "
        "so culling happens in batches rather than on every new task.",
    )


# ---------------------------------------------------------------------------- launchers


@section("launcher.ssh")
@dataclasses.dataclass
class SSHLauncherConfig:
    """Engines (cluster.engines = "ssh" or "sshproxy") and the controller (cluster.controller
    = "ssh") started on other hosts through the system ssh client."""

    engines: Dict[str, Any] = option(
        {},
        "Engines per host: { \"host1\" = 2, \"user@host2\" = { n = 1, engine_args = [...], "
        "engine_cmd = [...] } }.",
    )
    controller_host: str = option("", "[user@]host the controller is started on (cluster.controller = \"ssh\").")
    ssh_command: List[str] = option(["ssh"], "The ssh client and its options.")
    scp_command: List[str] = option(["scp"], "The scp client and its options.")
    remote_python: str = option("python3", "Python interpreter on the remote hosts.")
    remote_pythonpath: str = option(
        "",
        "PYTHONPATH on the remote hosts; empty means the directory this minipar is imported "
        "from (right on a shared file system).",
    )
    remote_profile_dir: str = option(
        "", "Profile directory on the remote hosts; empty means the same path as here."
    )
    to_send: list = option(
        [], "Files copied to each host before starting: [[\"local\", \"remote\"], ...]. Unset: the engine "
        "connection file; set, it replaces that (list the connection file if it should still go), "
        "and [] (a shared file system) copies nothing."
    )
    to_fetch: list = option(
        [], "Files copied back from each host after starting: [[\"remote\", \"local\"], ...]. Unset: the "
        "controller's connection files; set, it replaces them, and [] copies nothing."
    )


@section("launcher.mpi")
@dataclasses.dataclass
class MPILauncherConfig:
    """Engines (cluster.engines = "mpi") or the controller started with mpiexec."""

    mpi_command: List[str] = option(["mpiexec"], "The MPI launcher command.")
    mpi_args: List[str] = option(
        [], "Extra arguments for mpiexec, before the program, e.g. [\"--hostfile\", \"hosts\"]."
    )


# Batch systems: [launcher.SYSTEM] holds what every job of the system is submitted with,
# [launcher.SYSTEM.engines] and [launcher.SYSTEM.controller] the job script of each role.


@dataclasses.dataclass
class BatchConfig:
    """What every batch system's section holds (registered through its subclasses below)."""

    queue: str = option("", "Queue (Slurm: partition) to submit to; empty means the system's default.")
    account: str = option("", "Account or project to charge; empty means none.")
    timelimit: str = option("", "Wall-clock limit as the system writes it (e.g. \"01:00:00\"); empty means none.")
    options: List[str] = option(
        [], "Extra header lines written as they are into the batch script (e.g. \"#SBATCH --mem=4G\")."
    )
    context: Dict[str, Any] = option(
        {}, "Extra template fields: { scratch = \"/scratch/me\" } makes {scratch} usable in templates."
    )


@dataclasses.dataclass
class BatchTemplateConfig:
    """What the sub-section of each batch system and role holds: the job script's template."""

    batch_template: str = option(
        "", "The batch script as a template with {fields}; empty means the built-in one."
    )
    batch_template_file: str = option(
        "", "File holding the template (relative paths are in the profile dir); wins over batch_template."
    )


@section("launcher.pbs")
@dataclasses.dataclass
class PBSLauncherConfig(BatchConfig):
    """Jobs submitted to PBS / Torque (qsub, qstat, qdel) (cluster.engines or cluster.controller =
    "pbs")."""


@section("launcher.pbs.engines")
@dataclasses.dataclass
class PBSEnginesTemplateConfig(BatchTemplateConfig):
    """The batch script that starts the engines on pbs."""


@section("launcher.pbs.controller")
@dataclasses.dataclass
class PBSControllerTemplateConfig(BatchTemplateConfig):
    """The batch script that starts the controller on pbs."""


@section("launcher.sge")
@dataclasses.dataclass
class SGELauncherConfig(BatchConfig):
    """Jobs submitted to Grid Engine (qsub, qstat, qdel) (cluster.engines or cluster.controller =
    "sge")."""


@section("launcher.sge.engines")
@dataclasses.dataclass
class SGEEnginesTemplateConfig(BatchTemplateConfig):
    """The batch script that starts the engines on sge."""


@section("launcher.sge.controller")
@dataclasses.dataclass
class SGEControllerTemplateConfig(BatchTemplateConfig):
    """The batch script that starts the controller on sge."""


@section("launcher.lsf")
@dataclasses.dataclass
class LSFLauncherConfig(BatchConfig):
    """Jobs submitted to LSF (bsub, bjobs, bkill) (cluster.engines or cluster.controller = "lsf")."""


@section("launcher.lsf.engines")
@dataclasses.dataclass
class LSFEnginesTemplateConfig(BatchTemplateConfig):
    """The batch script that starts the engines on lsf."""


@section("launcher.lsf.controller")
@dataclasses.dataclass
class LSFControllerTemplateConfig(BatchTemplateConfig):
    """The batch script that starts the controller on lsf."""


@section("launcher.slurm")
@dataclasses.dataclass
class SlurmLauncherConfig(BatchConfig):
    """Jobs submitted to Slurm (sbatch, squeue, scancel) (cluster.engines or cluster.controller =
    "slurm")."""

    qos: str = option("", "Quality of service (--qos); empty means none.")


@section("launcher.slurm.engines")
@dataclasses.dataclass
class SlurmEnginesTemplateConfig(BatchTemplateConfig):
    """The batch script that starts the engines on slurm."""


@section("launcher.slurm.controller")
@dataclasses.dataclass
class SlurmControllerTemplateConfig(BatchTemplateConfig):
    """The batch script that starts the controller on slurm."""


@section("launcher.htcondor")
@dataclasses.dataclass
class HTCondorLauncherConfig(BatchConfig):
    """Jobs submitted to HTCondor (condor_submit, condor_q, condor_rm) (cluster.engines or
    cluster.controller = "htcondor")."""


@section("launcher.htcondor.engines")
@dataclasses.dataclass
class HTCondorEnginesTemplateConfig(BatchTemplateConfig):
    """The batch script that starts the engines on htcondor."""


@section("launcher.htcondor.controller")
@dataclasses.dataclass
class HTCondorControllerTemplateConfig(BatchTemplateConfig):
    """The batch script that starts the controller on htcondor."""


@section("launcher.windowshpc")
@dataclasses.dataclass
class WindowsHPCLauncherConfig(BatchConfig):
    """Jobs submitted to Windows HPC (job submit, job view, job cancel; queue is the node group,
    account the project) (cluster.engines or cluster.controller = "windowshpc")."""

    scheduler: str = option(
        "", "Head node to submit to (job /scheduler:); empty means the client's default."
    )


@section("launcher.windowshpc.engines")
@dataclasses.dataclass
class WindowsHPCEnginesTemplateConfig(BatchTemplateConfig):
    """The batch script that starts the engines on windowshpc."""


@section("launcher.windowshpc.controller")
@dataclasses.dataclass
class WindowsHPCControllerTemplateConfig(BatchTemplateConfig):
    """The batch script that starts the controller on windowshpc."""
