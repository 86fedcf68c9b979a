"""Helpers that start real processes for the tests: on 127.0.0.1, on free ports, stopped by pid."""
