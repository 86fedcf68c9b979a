"""Fixtures and report hooks of the fault-injection and security tests (their conftest.py files
import them): a real stack per test, a report per test, the measured numbers at the end."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest

from tests.faults.support import RESULTS, Report, summary_lines
from tests.support.stack import LocalStack


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Report:
    """Say what the test injected and observed; numbers go to the run's summary too."""
    r = Report(request.node.nodeid.split("::")[-1])
    RESULTS.append(r)
    return r


@pytest.fixture
def stacks(request: pytest.FixtureRequest) -> Iterator[Callable[[LocalStack], LocalStack]]:
    """Start LocalStacks for a test; each is stopped after it, its logs printed if the test failed."""
    started: list[LocalStack] = []

    def start(stack: LocalStack, **kwargs) -> LocalStack:
        started.append(stack)
        return stack.start(**kwargs)

    yield start
    # Task results the test dropped unsubscribe from Redis when collected: while it still runs.
    gc.collect()
    failed = getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed
    for stack in started:
        if failed:
            print(stack.diagnostics())
        stack.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    lines = summary_lines()
    RESULTS.clear()  # both conftest.py files register this hook: print once
    if lines:
        terminalreporter.section("faults and security: what was measured")
        for line in lines:
            terminalreporter.write_line(line)
