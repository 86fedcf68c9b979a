"""Child processes on 127.0.0.1 for tests and benchmarks: free ports, readiness waits, a child in
its own process group stopped by its id (never by name), its resident memory, a throwaway
redis-server. The test support (tests/support/procs.py) and the benchmarks use these."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

from native.settings import REPO, TOOLS_BIN, VENV_BIN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tool(name: str) -> str:
    """Path of a stack binary: the pinned copy in .tools/bin first, then the venv, then PATH."""
    for folder in (TOOLS_BIN, VENV_BIN):
        if (folder / name).exists():
            return str(folder / name)
    return name


def wait_until(check: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> object:
    """Poll `check` until it returns something truthy; bounded by `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - the check may fail until the server is up
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


def http_answers(url: str, timeout: float = 30) -> bool:
    """True once `url` answers 2xx (its body read in full)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        response.read()
        return True


def wait_http(url: str, timeout: float = 60) -> None:
    """Wait until `url` answers; TimeoutError after `timeout` seconds."""
    wait_until(lambda: http_answers(url), timeout, url, interval=0.2)


def rss_kib(pid: int) -> int:
    """Resident memory of process `pid` in KiB (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(f"no VmRSS for process {pid}")


class Proc:
    """A child process in its own process group, with its output kept in `log_dir`/`name`.log."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, **(env or {})}
        self.popen = subprocess.Popen(
            list(argv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=str(cwd or REPO),
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal only this process (not its group), e.g. SIGKILL a worker's main process."""
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, timeout: float = 10) -> None:
        """TERM the process group, then KILL it if it is still there after `timeout`."""
        if self.alive():
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
            except ProcessLookupError:
                pass
        # children left in the group (e.g. prefork pool processes of a SIGKILLed worker)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self._log.close()


class RedisServer:
    """A throwaway redis-server on 127.0.0.1 and a free port, keeping nothing on disk."""

    def __init__(self, log_dir: Path, port: int | None = None, extra_args: Sequence[str] = ()) -> None:
        self.port = port or free_port()
        self.log_dir = log_dir
        self.extra_args = list(extra_args)
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        argv = [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.log_dir),
            *self.extra_args,
        ]
        self.proc = Proc(f"redis-{self.port}", argv, self.log_dir)
        wait_until(lambda: self.client().ping(), 10, f"redis-server on port {self.port}")
        return self

    def client(self, db: int = 0, socket_timeout: float = 5) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=socket_timeout)

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()


def celery_worker(name: str, argv: Sequence[str], log_dir: Path, env: dict[str, str] | None = None) -> Proc:
    """A Celery worker process (`argv`), returned once it logged `ready.`; stopped if it never does."""
    proc = Proc(name, argv, log_dir, env=env)

    def ready() -> bool:
        if not proc.alive():
            raise AssertionError(f"worker {name} exited:\n{proc.log()}")
        return " ready." in proc.log()

    try:
        wait_until(ready, 30, f"worker {name} to be ready")
    except TimeoutError as exc:
        proc.stop()
        raise AssertionError(f"worker {name} did not start:\n{proc.log()}") from exc
    except BaseException:
        proc.stop()
        raise
    return proc
