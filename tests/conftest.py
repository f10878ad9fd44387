"""Hooks, and the fixtures that start real controllers and engines as processes in throwaway
profiles. Plain helpers are in helpers.py; fixtures of the test bed in the plugins of fixtures/."""
from __future__ import annotations

import weakref

import pytest

from helpers import Profile, start_cluster

pytest_plugins = ["fixtures.services", "fixtures.batch", "fixtures.ssh_bed", "fixtures.mpi_bed"]
"""Fixtures shared by modules of several folders (only this top conftest may name plugins)."""

_clients = weakref.WeakSet()
_left_open = []


def _track_clients():
    from minipar.client.client import Client

    init = Client.__init__

    def tracked(self, *args, **kwargs):
        _clients.add(self)
        init(self, *args, **kwargs)

    Client.__init__ = tracked


_track_clients()


@pytest.fixture(autouse=True)
def close_clients_left_open(request):
    """A Client left open keeps reconnecting, every 100 ms for the rest of the session, to
    the ports of a controller long gone. When the kernel hands one of those port numbers to
    a new listener, such as MPICH's mpiexec, the stale client's ZeroMQ greeting reaches it
    ("HYD_pmcd_pmiserv_proxy_init_cb: cannot find proxy with ID 255": 0xff opens a ZMTP
    greeting) and kills that test's job. Clients a test opened are closed when it ends;
    those of module-scoped fixtures were opened before it and are left alone."""
    before = set(_clients)
    yield
    for rc in list(_clients):
        if rc not in before and not getattr(rc, "_closed", True):
            note = request.node.nodeid
            try:
                rc.close()
            except Exception as e:  # noqa: BLE001 - one half made by a failed __init__
                note = "%s (close failed: %r)" % (request.node.nodeid, e)
            request.node.user_properties.append(("left_client_open", note))


def pytest_runtest_logreport(report):
    """Collects the notes of clients left open from each test's report: with pytest-xdist the
    tests run in workers, and only their reports reach the process that prints the summary."""
    if report.when == "teardown":
        _left_open.extend(value for name, value in report.user_properties if name == "left_client_open")


def pytest_terminal_summary(terminalreporter):
    if _left_open:
        terminalreporter.write_line("%d test(s) left a minipar.Client open (closed after them): %s"
                                    % (len(_left_open), ", ".join(sorted(set(_left_open))[:20])))


@pytest.fixture
def profile(tmp_path):
    p = Profile(tmp_path)
    yield p
    p.stop_all()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One controller and two engines shared by a module's tests."""
    p = Profile(tmp_path_factory.mktemp("cluster"))
    rc, engines = start_cluster(p, 2)
    rc.profile = p
    rc.engine_procs = engines
    yield rc
    p.stop_all()


SERVICE_FIXTURES = {"sshd", "netns_hosts", "mpi", "slurm", "sge"}
"""Fixtures that bring up a system service (fixtures/services.py)."""
REAL_BATCH_SYSTEMS = {"slurm", "sge"}
"""Parameter values that name the test bed's real Slurm and Grid Engine."""


def pytest_collection_modifyitems(items):
    """Mark the tests that need a system service (ssh, MPI, Slurm, Grid Engine, the network
    namespaces) ``service``: run-tests runs them on one Python only (``-m "not service"`` on
    the others), which keeps the whole suite within CI's time."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if set(getattr(item, "fixturenames", ())) & SERVICE_FIXTURES or \
                REAL_BATCH_SYSTEMS & {v for v in params.values() if isinstance(v, str)}:
            item.add_marker(pytest.mark.service)
