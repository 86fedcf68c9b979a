"""Fuzzing the exporter's configuration with hypothesis: flags, environment variables and the YAML
config file, in any combination and with any values. Whatever comes in, the result is a Config or
a ConfigError with one clear line, never another exception; and a broker URL's password never
shows in an error message or in the redacted URL the exporter logs and serves."""

from __future__ import annotations

import math
import subprocess

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from celery_queue_exporter.config import ENV_PREFIX, OPTIONS, Config, ConfigError, load_config
from celery_queue_exporter.connection import BrokerUrlError, make_client, redact_url
from tests.faults.support import Report
from tests.support.procs import VENV_BIN

FUZZ = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = [opt.name for opt in OPTIONS]

weird = st.sampled_from(
    [
        "",
        " ",
        "0",
        "-1",
        "1e309",
        "-inf",
        "nan",
        "NaN",
        "0x10",
        "1_000",
        "٣",
        "²",
        "65536",
        "3.5",
        "true",
        "no",
        "\x00",
        "\\x",
        "\\x0",
        "\\u12",
        "\\N{BELL}",
        "a" * 10_000,
        ",",
        ",,,",
        "0,3,,9",
        "-3",
        "redis://",
        "::",
        "🔥",
    ]
)
values = weird | st.text(max_size=30) | st.integers(-(10**20), 10**20).map(str) | st.floats().map(str)
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def non_finite(config: Config) -> list[str]:
    """Options holding a float that is not finite."""
    return [n for n in NAMES if isinstance(getattr(config, n), float) and not math.isfinite(getattr(config, n))]


@FUZZ
@given(
    flags=st.lists(st.tuples(st.sampled_from(NAMES), values), max_size=6),
    env=st.dictionaries(st.sampled_from(NAMES), values, max_size=6),
    stray=st.lists(st.text(max_size=10), max_size=2),
    file=st.none()
    | st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=10), yaml_values, max_size=6).map(yaml.safe_dump)
    | st.text(max_size=200),
)
def test_any_configuration_is_a_config_or_one_clear_error(
    tmp_path_factory: pytest.TempPathFactory, flags, env, stray, file
) -> None:
    argv = [part for name, value in flags for part in (OPTIONS[NAMES.index(name)].flag, value)] + stray
    environ = {ENV_PREFIX + name.upper(): value for name, value in env.items() if "\x00" not in value}
    if file is not None:
        path = tmp_path_factory.mktemp("config") / "exporter.yml"
        path.write_text(file, encoding="utf-8", errors="surrogatepass")
        argv += ["--config", str(path)]
    try:
        config = load_config(argv, environ=environ, transport_options=None)
    except ConfigError as exc:
        message = str(exc)
        newline_given = any("\n" in part for part in [*argv, *environ.values(), file or ""])
        assert message and "Traceback" not in message
        assert newline_given or "\n" not in message, message
        return
    assert isinstance(config, Config)
    assert 0 < config.port < 65536
    assert config.priority_steps and all(s >= 0 for s in config.priority_steps)
    assert config.sep and config.redis_timeout > 0 and config.max_queues >= 1
    assert not non_finite(config), non_finite(config)  # infinity is refused (test_infinite_timeouts_are_refused)
    try:  # an accepted broker URL gives a client, or the one error the command line reports cleanly
        make_client(config.broker_url, config.redis_timeout, config.sentinel_master)
    except BrokerUrlError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("option", ["redis_timeout", "consumers_interval", "visibility_timeout"])
def test_infinite_timeouts_are_refused(option: str) -> None:
    with pytest.raises(ConfigError):
        load_config([OPTIONS[NAMES.index(option)].flag, "inf"], environ={})


# RFC 3986 userinfo characters (";" included: test_reserved_characters_do_not_reveal_the_password)
password = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=", min_size=6).map(
    lambda p: "Pw9" + p
)


@FUZZ
@given(
    secret=password,
    user=st.sampled_from(["", "exporter", "default", "u%40x", "u@x"]),
    host=st.sampled_from(["redis", "127.0.0.1", "[::1]", "redis.internal", "", "h:1:2"]),
    port=st.sampled_from(["", ":6379", ":0", ":99999", ":abc", ":-1"]),
    db=st.sampled_from(["", "/0", "/15", "/x", "/0/1", "/0?password=PW", "/0?db=3&ssl_cert_reqs=none"]),
    scheme=st.sampled_from(["redis", "rediss", "unix", "sentinel", "http", "REDIS", "redis+socket"]),
    sentinel_master=st.none() | st.just("mymaster"),
)
def test_a_broker_password_never_shows(secret, user, host, port, db, scheme, sentinel_master) -> None:
    url = f"{scheme}://{user}:{secret}@{host}{port}{db.replace('PW', secret)}"
    shown = redact_url(url)
    assert secret not in shown, shown
    try:
        make_client(url, 1.0, sentinel_master)
    except BrokerUrlError as exc:
        assert secret not in str(exc), str(exc)
    except ValueError as exc:
        pytest.fail(f"make_client raised {type(exc).__name__} instead of BrokerUrlError for {shown}")


@pytest.mark.parametrize(
    "url", ["redis://ops@example:Pw9-s3cret@redis:6379/0", "redis://:Pw9-s3cret;x@redis:6379/0"], ids=["at", "semi"]
)
def test_reserved_characters_do_not_reveal_the_password(url: str) -> None:
    assert "Pw9-s3cret" not in redact_url(url)


CLI_CASES = {
    "bad port in the URL": ["--broker-url", "redis://user:Pw9-s3cret-value@host:notaport/0"],
    "unknown scheme": ["--broker-url", "http://user:Pw9-s3cret-value@host/0"],
    "sentinel without master": ["--broker-url", "sentinel://:Pw9-s3cret-value@h:26379"],
    "config file not YAML": ["--config", "/dev/null/none"],
    "bad number": ["--redis-timeout", "soon"],
}


def test_the_command_line_says_one_line_and_never_the_password(report: Report) -> None:
    for name, argv in CLI_CASES.items():
        done = subprocess.run(
            [str(VENV_BIN / "celery-queue-exporter"), *argv], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 2, (name, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, (name, done.stderr)
        assert "Pw9-s3cret-value" not in done.stdout + done.stderr, (name, done.stderr)
    report.observed(f"{len(CLI_CASES)} bad command lines: exit 2, one line on stderr each, no password, no traceback")
    report.observed(f"hypothesis: {FUZZ.max_examples} configurations and {FUZZ.max_examples} broker URLs per run")
