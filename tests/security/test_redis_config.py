"""The broker's Redis as docker-compose runs it (redis/start.sh, redis/redis.conf, redis/users.acl),
run for real: nobody gets in without a password, the workers' user cannot reconfigure Redis, the
exporter's user cannot change a queue, and no password leaks on the way."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.faults.support import ComposeRedis, Report
from tests.support.procs import REPO

SEP = "\x06\x16"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeRedis]:
    s = ComposeRedis(tmp_path_factory.mktemp("compose-redis")).start()
    try:
        yield s
    finally:
        s.stop()


def is_refusal(exc: redis.exceptions.ResponseError) -> bool:
    """Redis said no: an ACL denial (NOPERM), a write in a read-only script, a disabled command."""
    text = str(exc)
    said_no = ("not allowed", "Write commands", "can't access", "no permissions")
    return isinstance(exc, redis.exceptions.NoPermissionError) or any(words in text for words in said_no)


def anonymous(server: ComposeRedis, **kw) -> redis.Redis:
    # no retries: redis-py would retry a refused login with backoff, for nothing
    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5, retry=Retry(NoBackoff(), 0), **kw)


def test_nobody_gets_in_without_the_password(server: ComposeRedis, report: Report) -> None:
    with pytest.raises(redis.AuthenticationError):
        anonymous(server).ping()
    with pytest.raises(redis.AuthenticationError):
        anonymous(server, password="not-the-password-at-all").ping()
    with pytest.raises(redis.AuthenticationError):
        anonymous(server, username="exporter", password=server.password).ping()
    # The admin user exists only when REDIS_ADMIN_PASSWORD is set (it is, here): a wrong one fails.
    with pytest.raises(redis.AuthenticationError):
        anonymous(server, username="admin", password=server.exporter_password).ping()
    assert server.client().ping() and server.client(user="exporter").ping() and server.client(user="admin").ping()
    report.observed("no password, a wrong one or another user's: refused; each user with its own: in")


DANGEROUS = [
    ("CONFIG", "SET", "dir", "/tmp"),  # the classic: write the RDB file anywhere
    ("CONFIG", "GET", "*"),
    ("MODULE", "LOAD", "/tmp/x.so"),
    ("ACL", "SETUSER", "default", "+@all"),
    ("DEBUG", "SLEEP", "0"),
    ("REPLICAOF", "127.0.0.1", "1"),
    ("FLUSHALL",),
    ("KEYS", "*"),
    ("SHUTDOWN", "NOSAVE"),
    ("MONITOR",),
]


@pytest.mark.parametrize("command", DANGEROUS, ids=lambda c: " ".join(c[:2]))
def test_the_workers_user_cannot_take_over_redis(server: ComposeRedis, command: tuple[str, ...]) -> None:
    with pytest.raises(redis.exceptions.ResponseError) as refused:
        server.client().execute_command(*command)
    assert is_refusal(refused.value), refused.value


def test_the_workers_user_does_what_celery_needs(server: ComposeRedis) -> None:
    c = server.client()
    c.sadd("_kombu.binding.default", f"default{SEP}{SEP}default")
    c.lpush("default", "{}")
    assert c.brpop(["default"], timeout=1) == (b"default", b"{}")
    c.publish("/0.celeryev/worker.heartbeat", "x")
    assert c.eval("return redis.call('SET', KEYS[1], 'v')", 1, "k") == b"OK"
    assert "redis_version" in c.info()


READ_ONLY_REFUSED = [
    ("LPUSH", "default", "x"),
    ("RPOP", "default"),
    ("BRPOP", "default", "1"),
    ("DEL", "default"),
    ("RENAME", "default", "elsewhere"),
    ("HSET", "unacked", "tag", "x"),
    ("HDEL", "unacked", "tag"),
    ("ZADD", "unacked_index", "1", "tag"),
    ("SADD", "_kombu.binding.default", f"evil{SEP}{SEP}evil"),
    ("SET", "default", "x"),
    ("EVAL", "return redis.call('DEL', KEYS[1])", "1", "default"),
    ("EVAL_RO", "return redis.call('DEL', KEYS[1])", "1", "default"),
    ("PUBLISH", "/0.celeryev/task.revoked", "x"),
    ("FLUSHDB",),
    ("KEYS", "*"),
    ("CONFIG", "SET", "appendonly", "no"),
]


@pytest.mark.parametrize("command", READ_ONLY_REFUSED, ids=lambda c: " ".join(c[:2]))
def test_the_exporter_user_cannot_change_a_queue(server: ComposeRedis, command: tuple[str, ...]) -> None:
    admin = server.client(user="admin")
    admin.delete("default", "unacked")
    admin.lpush("default", "a task")
    admin.hset("unacked", "tag", "x")
    with pytest.raises(redis.exceptions.ResponseError) as refused:
        server.client(user="exporter").execute_command(*command)
    assert is_refusal(refused.value), refused.value
    assert admin.lrange("default", 0, -1) == [b"a task"] and admin.hget("unacked", "tag") == b"x"


def test_the_exporter_user_reads_and_may_broadcast_inspect(server: ComposeRedis) -> None:
    admin = server.client(user="admin")
    admin.delete("default", "unacked_index")
    admin.lpush("default", "a task")
    admin.zadd("unacked_index", {"tag": 1})
    ro = server.client(user="exporter")
    assert ro.llen("default") == 1 and ro.lindex("default", -1) == b"a task"
    assert ro.zrange("unacked_index", 0, -1) == [b"tag"]
    assert ro.execute_command("EVAL_RO", "return redis.call('LLEN', KEYS[1])", 1, "default") == 1
    assert ro.execute_command("CLIENT", "TRACKING", "on") == b"OK"  # told which lists changed
    assert ro.scan(0, match="_kombu.binding.*")[0] == 0
    # what Celery's inspect needs, and only on its own keys and channel
    assert ro.publish("/0.celery.pidbox", "x") == 0
    ro.sadd("_kombu.binding.reply.celery.pidbox", "r")
    admin.lpush("1234.reply.celery.pidbox", "a worker's reply")
    assert ro.brpop(["1234.reply.celery.pidbox"], timeout=1) == (b"1234.reply.celery.pidbox", b"a worker's reply")


def test_start_sh_refuses_unsafe_passwords_and_never_prints_them(tmp_path: Path) -> None:
    good = "a" * 20
    cases = {
        "unset": ({"REDIS_EXPORTER_PASSWORD": "b" * 20}, "REDIS_PASSWORD is not set"),
        "short": ({"REDIS_PASSWORD": "short-Pass1", "REDIS_EXPORTER_PASSWORD": "b" * 20}, "at least 16"),
        "not URL-safe": ({"REDIS_PASSWORD": "p@ss:word/with#chars", "REDIS_EXPORTER_PASSWORD": "b" * 20}, "may hold"),
        "spaces": ({"REDIS_PASSWORD": "pass word with spaces", "REDIS_EXPORTER_PASSWORD": "b" * 20}, "may hold"),
        "same": ({"REDIS_PASSWORD": good, "REDIS_EXPORTER_PASSWORD": good}, "must differ"),
        "admin same": (
            {"REDIS_PASSWORD": good, "REDIS_EXPORTER_PASSWORD": "b" * 20, "REDIS_ADMIN_PASSWORD": good},
            "must differ",
        ),
    }
    for name, (env, message) in cases.items():
        clean = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
        done = subprocess.run(
            ["sh", str(REPO / "redis" / "start.sh")],
            env={**clean, "REDIS_ACL_FILE": str(tmp_path / "users.acl"), **env},
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        assert message in done.stderr, (name, done.stderr)
        for value in env.values():
            assert value not in done.stdout + done.stderr, f"{name}: a password was printed"
        assert not (tmp_path / "users.acl").exists()


def test_no_password_in_the_process_list_the_log_or_a_readable_file(server: ComposeRedis, report: Report) -> None:
    acl_file = server.log_dir / f"redis-{server.port}-users.acl"
    assert stat.S_IMODE(acl_file.stat().st_mode) == 0o600, "the generated ACL file is private"
    cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes().decode(errors="replace")
    log = server.proc.log()
    for secret in server.secrets:
        assert secret not in cmdline
        assert secret not in log
    assert server.client(user="admin").config_get("appendonly") == {"appendonly": "yes"}
    assert server.client(user="admin").config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    report.observed(f"ACL file mode 0600; redis-server's command line: {cmdline.replace(chr(0), ' ')!r}")
