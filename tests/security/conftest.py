"""The security tests share the fault tests' fixtures: a report per test, real stacks stopped after."""

from tests.faults.fixtures import pytest_runtest_makereport, pytest_terminal_summary, report, stacks

__all__ = ["pytest_runtest_makereport", "pytest_terminal_summary", "report", "stacks"]
