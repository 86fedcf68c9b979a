"""The fault-injection tests' fixtures and hooks (shared with tests/security, in fixtures.py)."""

from tests.faults.fixtures import pytest_runtest_makereport, pytest_terminal_summary, report, stacks

__all__ = ["pytest_runtest_makereport", "pytest_terminal_summary", "report", "stacks"]
