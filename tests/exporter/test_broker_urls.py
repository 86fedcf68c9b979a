"""Redis URL forms: database number, unix socket, TLS (rediss://), Sentinel, password never shown."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis

from tests.support.exporter import sample
from tests.support.procs import Proc, RedisServer, free_port, wait_until


def test_database_number(redis_server, start_exporter, celery_producer):
    app = celery_producer(redis_server.url.replace("/0", "/3"))
    app.send_task("tests.noop", queue="in3", priority=6)
    exporter = start_exporter("--broker-url", redis_server.url.replace("/0", "/3"))
    assert exporter.value("celery_queue_priority_length", queue_name="in3", priority="6") == 1
    other = start_exporter("--broker-url", redis_server.url)
    assert other.value("celery_queue_length", queue_name="in3") is None


def test_unix_socket_with_virtual_host(tmp_path: Path, start_exporter, celery_producer):
    sock = tmp_path / "redis.sock"
    server = RedisServer(tmp_path, extra_args=["--unixsocket", str(sock), "--unixsocketperm", "700"]).start()
    try:
        app = celery_producer(f"redis+socket://{sock}?virtual_host=2")
        app.send_task("tests.noop", queue="viasocket")
        assert server.client(db=2).llen("viasocket") == 1
        for url in (f"unix://{sock}?virtual_host=2", f"redis+socket://{sock}?virtual_host=2", f"unix://{sock}?db=2"):
            exporter = start_exporter("--broker-url", url)
            assert exporter.value("celery_queue_length", queue_name="viasocket") == 1, url
    finally:
        server.stop()


def make_certs(folder: Path) -> tuple[Path, Path, Path]:
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
    )
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        str(cert),
        "-extfile",
        str(ext),
    )
    return ca, cert, key


def test_tls_rediss(tmp_path: Path, start_exporter):
    ca, cert, key = make_certs(tmp_path)
    tls_port = free_port()
    server = RedisServer(
        tmp_path,
        extra_args=[
            "--tls-port",
            str(tls_port),
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(ca),
            "--tls-auth-clients",
            "no",
        ],
    ).start()
    try:
        server.client().lpush("tlsq", "{}")
        server.client().sadd("_kombu.binding.tlsq", "tlsq\x06\x16\x06\x16tlsq")
        url = f"rediss://127.0.0.1:{tls_port}/0?ssl_cert_reqs=CERT_REQUIRED&ssl_ca_certs={ca}"
        exporter = start_exporter("--broker-url", url)
        samples = exporter.scrape()
        assert sample(samples, "celery_broker_up") == 1
        assert sample(samples, "celery_queue_length", queue_name="tlsq") == 1
        # the same server's certificate is refused without the CA: broker down, not a crash
        untrusted = start_exporter("--broker-url", f"rediss://127.0.0.1:{tls_port}/0?ssl_cert_reqs=required")
        assert untrusted.value("celery_broker_up") == 0
    finally:
        server.stop()


def test_password_never_logged_or_exported(tmp_path: Path, start_exporter):
    # RedisServer's readiness check has no password: start this one by hand
    port = free_port()
    proc = Proc(
        f"redis-{port}",
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--requirepass", "Pa55-w0rd"],
        tmp_path,
    )
    try:
        wait_until(lambda: redis.Redis(port=port, password="Pa55-w0rd").ping(), 10, "redis with a password")
        exporter = start_exporter("--broker-url", f"redis://:Pa55-w0rd@127.0.0.1:{port}/0", "--queues", "q")
        assert exporter.value("celery_broker_up") == 1
        wrong = start_exporter("--broker-url", f"redis://:Wr0ng-pass@127.0.0.1:{port}/0", "--queues", "q")
        assert wrong.value("celery_broker_up") == 0
        for exp, secret in ((exporter, "Pa55-w0rd"), (wrong, "Wr0ng-pass")):
            assert secret not in exp.text()
            assert secret not in exp.proc.log()
            assert secret not in urlopen_text(f"http://127.0.0.1:{exp.port}/")
    finally:
        proc.stop()


def urlopen_text(url: str) -> str:
    from tests.support.exporter import fetch

    return fetch(url)[1]


def test_sentinel(tmp_path: Path, start_exporter, celery_producer):
    master = RedisServer(tmp_path).start()
    sentinel_port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\nsentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
    )
    # redis-server in sentinel mode is what Debian's redis-sentinel package runs (no extra package).
    sentinel = Proc(f"sentinel-{sentinel_port}", ["redis-server", str(conf), "--sentinel"], tmp_path)
    try:
        wait_until(
            lambda: redis.Redis(port=sentinel_port).execute_command("SENTINEL", "get-master-addr-by-name", "mymaster"),
            15,
            "redis-sentinel",
        )
        url = f"sentinel://127.0.0.1:{sentinel_port};sentinel://127.0.0.1:{free_port()}"
        app = celery_producer(url, {"master_name": "mymaster"})
        app.send_task("tests.noop", queue="sentq")
        assert master.client().llen("sentq") == 1
        exporter = start_exporter("--broker-url", url, "--sentinel-master", "mymaster")
        samples = exporter.scrape()
        assert sample(samples, "celery_broker_up") == 1
        assert sample(samples, "celery_queue_length", queue_name="sentq") == 1
    finally:
        sentinel.stop()
        master.stop()
