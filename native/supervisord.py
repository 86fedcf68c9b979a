"""supervisord's configuration for the native stack, rendered from the component table
(native/components.py) into run/supervisord.conf when `make up` starts it. Every program runs
in its own process group, stopped as a whole; supervisord is reached through its unix socket
only. The file holds the broker URL and Flower's password in `environment=` lines: it is 0600."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from pathlib import Path

from supervisor.datatypes import dict_of_key_value_pairs

from native.components import Component

HEADER = """\
; Rendered by native/supervisord.py from native/components.py at `make up`: do not edit.

[supervisord]
logfile={run}/logs/supervisord.log
pidfile={run}/supervisord.pid
childlogdir={run}/logs
directory={run}
nodaemon=false
silent=true

[unix_http_server]
file={run}/supervisor.sock
chmod=0700

[supervisorctl]
serverurl=unix://{run}/supervisor.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
"""


def _escape(text: str) -> str:
    """supervisord expands %(name)s in its values: a literal % is written %%."""
    return text.replace("%", "%%")


def _carried(key: str, value: str) -> bool:
    try:
        return dict_of_key_value_pairs(f'{key}="{value}"') == {key: value}
    except ValueError:
        return False


def environment_line(env: dict[str, str]) -> str:
    """KEY="value",... as supervisord parses it. A value it would read back otherwise (a quote in
    a password) is refused, naming the variable only: the value may be a secret."""
    bad = [key for key, value in env.items() if not _carried(key, value)]
    if bad:
        raise ValueError(f"{', '.join(bad)}: a value with quotes cannot pass through supervisord's environment")
    return _escape(",".join(f'{key}="{value}"' for key, value in env.items()))


def program(c: Component, run_dir: Path, priority: int) -> str:
    return f"""
[program:{c.name}]
command={_escape(shlex.join(c.argv))}
directory={_escape(str(c.cwd))}
environment={environment_line(dict(c.env))}
priority={priority}
autostart=true
stopasgroup=true
killasgroup=true
stopwaitsecs={c.stop_wait_s}
redirect_stderr=true
stdout_logfile={_escape(str(run_dir / "logs" / f"{c.name}.log"))}
"""


def render(components: Iterable[Component], run_dir: Path) -> str:
    programs = [program(c, run_dir, priority) for priority, c in enumerate(components, start=1)]
    return HEADER.format(run=_escape(str(run_dir))) + "".join(programs)


def write(components: Iterable[Component], run_dir: Path) -> Path:
    path = run_dir / "supervisord.conf"
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text(render(components, run_dir))
    return path
