"""The stack of the end-to-end tests: native/child_stack.py (the benchmarks start it too), under
the names the tests import."""

from __future__ import annotations

from native.child_stack import FLOWER_AUTH, HTTP_KINDS, LocalStack, StackRedis

__all__ = ["FLOWER_AUTH", "HTTP_KINDS", "LocalStack", "StackRedis"]
