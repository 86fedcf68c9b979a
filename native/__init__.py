"""The native runner: the whole stack under supervisord, no Docker needed."""
