"""One HA topology shared by the tests of a module (starting it and letting its gossip settle is
the slow part); each test leaves it whole, and the fixture checks that before handing it on."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from native import ha
from tests.faults.fixtures import pytest_runtest_makereport, pytest_terminal_summary, report
from tests.ha.topology import HATopology

__all__ = ["pytest_runtest_makereport", "pytest_terminal_summary", "report"]


@pytest.fixture(scope="module")
def shared_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HATopology]:
    topo = HATopology(Path(tmp_path_factory.mktemp("ha")))
    topo.start()
    try:
        yield topo
    finally:
        topo.stop()


@pytest.fixture
def topology(shared_topology: HATopology, request: pytest.FixtureRequest) -> Iterator[HATopology]:
    """The shared topology with every instance up and both Alertmanagers in one settled cluster;
    the logs of every process printed if the test fails."""
    for name in shared_topology.instances:
        proc = shared_topology.procs[name]
        if proc.alive():
            proc.kill(signal.SIGCONT)  # a test that failed while it had one frozen
        else:  # a test that failed before starting again what it killed
            shared_topology.restart_instance(name)
    for name in ha.INSTANCES["alertmanager"]:
        shared_topology.wait_instance(name)
    yield shared_topology
    if getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed:
        print(shared_topology.diagnostics())
