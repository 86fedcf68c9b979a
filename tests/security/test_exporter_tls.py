"""TLS and basic auth for the exporter's /metrics, and Prometheus scraping it that way.

`celery-queue-exporter --web-config-file FILE` reads the web configuration format of Prometheus'
exporter-toolkit (https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md):
`tls_server_config.cert_file/key_file` and `basic_auth_users` with bcrypt hashes. The Prometheus
side is the scrape config docs/security.md and exporter/README.md show, run here for real."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from tests.faults.support import Report
from tests.support.procs import VENV_BIN, Proc, free_port, tool, wait_until

EXPORTER = str(VENV_BIN / "celery-queue-exporter")
PASSWORD = "e2e-scrape-password-0123"


def certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "exporter.crt", folder / "exporter.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=celery-exporter",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_metrics_over_tls_with_basic_auth_and_prometheus_scrapes_them(tmp_path: Path, report: Report) -> None:
    import bcrypt  # the exporter's `web` extra, in requirements.txt

    cert, key = certificate(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": str(cert), "key_file": str(key)},
                "basic_auth_users": {"prometheus": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt()).decode()},
            }
        )
    )
    port = free_port()
    exporter = Proc(
        "exporter-tls",
        [EXPORTER, "--port", str(port), "--web-config-file", str(web), "--consumers-interval", "0",
         "--broker-url", f"redis://127.0.0.1:{free_port()}/0"],
        tmp_path,
    )  # fmt: skip
    url = f"https://127.0.0.1:{port}/metrics"
    password_file = tmp_path / "scrape-password"
    password_file.write_text(PASSWORD)
    try:
        wait_until(lambda: requests.get(url, verify=str(cert), auth=("prometheus", PASSWORD), timeout=2).ok, 15, "tls")
        assert "celery_broker_up" in requests.get(url, verify=str(cert), auth=("prometheus", PASSWORD), timeout=5).text
        assert requests.get(url, verify=str(cert), timeout=5).status_code == 401
        assert requests.get(url, verify=str(cert), auth=("prometheus", "wrong"), timeout=5).status_code == 401
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)

        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": "celery-queue-exporter",
                    "scheme": "https",
                    "tls_config": {"ca_file": str(cert)},
                    "basic_auth": {"username": "prometheus", "password_file": str(password_file)},
                    "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                }
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        prom_port = free_port()
        prometheus = Proc(
            "prometheus-tls",
            [tool("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
            tmp_path,
        )  # fmt: skip
        try:

            def up() -> bool:
                reply = requests.get(
                    f"http://127.0.0.1:{prom_port}/api/v1/query", params={"query": "up"}, timeout=2
                ).json()
                return [r["value"][1] for r in reply["data"]["result"]] == ["1"]

            wait_until(up, 30, "Prometheus scraping the exporter over TLS with basic auth")
        finally:
            prometheus.stop()
    finally:
        exporter.stop()
    report.observed("HTTPS only; 401 without or with wrong credentials; Prometheus scrapes it (up 1)")
