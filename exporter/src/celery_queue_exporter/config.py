"""Options of the exporter: one table drives the flags, the environment variables and the YAML keys.

Precedence, highest first: command-line flag, environment variable, `--config` YAML file,
the Celery app's `broker_transport_options` (with `--app`), built-in default.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from celery_queue_exporter.redis_layout import DEFAULT_PRIORITY_STEPS, DEFAULT_SEP, RedisLayout

ENV_PREFIX = "CELERY_EXPORTER_"


class ConfigError(Exception):
    """A bad option or config file: reported as one line on stderr, exit code 2."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # inf would overflow socket timeouts and sleeps
        raise ValueError("must be a finite number")
    return value


def _bounded(parse: Callable[[str], Any], ok: Callable[[Any], bool], rule: str) -> Callable[[str], Any]:
    """A parser of `parse`'s numbers that refuses those not `ok` with "must be <rule>"."""

    def parse_bounded(text: str) -> Any:
        value = parse(text)
        if not ok(value):
            raise ValueError(f"must be {rule}")
        return value

    return parse_bounded


_positive_float = _bounded(_finite_float, lambda v: v > 0, "> 0")
_non_negative_float = _bounded(_finite_float, lambda v: v >= 0, ">= 0")
_port = _bounded(int, lambda v: 0 < v < 65536, "1-65535")
_positive_int = _bounded(int, lambda v: v >= 1, ">= 1")


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _steps(text: str) -> tuple[int, ...]:
    steps = tuple(int(part) for part in _name_list(text))
    if not steps or any(s < 0 for s in steps):
        raise ValueError("needs one or more integers >= 0, e.g. 0,3,6,9")
    return steps


def _sep(text: str) -> str:
    # Written with Python escapes in flags, env and YAML, e.g. "\x06\x16" (kombu's default).
    value = text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    if not value:
        raise ValueError("must not be empty")
    return value


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("one of debug, info, warning, error")
    return level


def _app_ref(text: str) -> str:
    if not text or (":" not in text and "." not in text):
        raise ValueError("expected module:attribute, e.g. proj.celery:app")
    return text


def _text(text: str) -> str:
    return text


@dataclass(frozen=True)
class Option:
    name: str  # attribute name; flag --name-with-dashes, env CELERY_EXPORTER_NAME, YAML key name
    parse: Callable[[str], Any]
    default: Any
    help: str
    metavar: str = "VALUE"
    env_fallbacks: tuple[str, ...] = ()
    transport_option: str | None = None  # key in the app's broker_transport_options

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    Option(
        "broker_url",
        _text,
        "redis://localhost:6379/0",
        "broker URL: Redis (redis://, rediss://, unix://, sentinel://host:port;sentinel://...) or RabbitMQ "
        "(amqp://, amqps://, pyamqp://; read through its management API)",
        "URL",
        env_fallbacks=("CELERY_BROKER_URL",),
    ),
    Option("address", _text, "127.0.0.1", "address to serve /metrics on", "ADDR"),
    Option("port", _port, 9818, "port to serve /metrics on", "PORT"),
    Option("queues", _name_list, (), "queues to report even before any binding exists (comma-separated)", "Q1,Q2"),
    Option(
        "app",
        _app_ref,
        None,
        "Celery app (module:attr) whose task_queues are reported and whose broker_transport_options "
        "give the defaults of the layout options",
        "MODULE:ATTR",
    ),
    Option(
        "global_keyprefix",
        _text,
        "",
        "kombu's global_keyprefix transport option",
        "PREFIX",
        transport_option="global_keyprefix",
    ),
    Option(
        "priority_steps",
        _steps,
        DEFAULT_PRIORITY_STEPS,
        "kombu's priority_steps transport option",
        "0,3,6,9",
        transport_option="priority_steps",
    ),
    Option(
        "sep",
        _sep,
        DEFAULT_SEP,
        "kombu's sep transport option, Python escapes allowed",
        r"'\x06\x16'",
        transport_option="sep",
    ),
    Option(
        "unacked_key", _text, "unacked", "kombu's unacked_key transport option", "KEY", transport_option="unacked_key"
    ),
    Option(
        "unacked_index_key",
        _text,
        "unacked_index",
        "kombu's unacked_index_key transport option",
        "KEY",
        transport_option="unacked_index_key",
    ),
    Option(
        "visibility_timeout",
        _positive_float,
        3600.0,
        "kombu's visibility_timeout (seconds), exported for alerting on stuck unacked messages",
        "SECONDS",
        transport_option="visibility_timeout",
    ),
    Option(
        "sentinel_master",
        _text,
        None,
        "Sentinel master name (kombu's master_name transport option)",
        "NAME",
        transport_option="master_name",
    ),
    Option(
        "max_queues",
        _positive_int,
        20000,
        "report at most this many queues; the excess is counted in celery_exporter_queues_dropped",
        "N",
    ),
    Option(
        "queue_grace_period",
        _non_negative_float,
        300.0,
        "seconds a queue keeps reporting after its bindings and messages are gone",
        "SECONDS",
    ),
    Option(
        "redis_timeout",
        _positive_float,
        3.0,
        "seconds one Redis command may take (connect and read); bounds a scrape's Redis time",
        "SECONDS",
    ),
    Option(
        "management_url",
        _text,
        None,
        "RabbitMQ management API, http(s)://[user:pass@]host:port[/prefix] with Celery's ssl_* query "
        "options for https (default: the amqp:// URL's host on 15672, amqps:// on 15671 with its ssl_* options)",
        "URL",
    ),
    Option(
        "management_timeout",
        _positive_float,
        5.0,
        "seconds one RabbitMQ management API request may take (connect and read); bounds a scrape",
        "SECONDS",
    ),
    Option(
        "discovery_scan_count",
        _positive_int,
        1000,
        "keys SCANned for bindings per scrape (discovery is spread over scrapes in big databases)",
        "N",
    ),
    Option(
        "message_age",
        _bool,
        True,
        "read the oldest message of every non-empty list for celery_queue_oldest_message_age_seconds "
        "(one LINDEX per non-empty list; false drops that metric)",
        "true|false",
    ),
    Option(
        "consumers_interval",
        _non_negative_float,
        30.0,
        "seconds between background `inspect active_queues` readings; 0 disables them",
        "SECONDS",
    ),
    Option("consumers_timeout", _positive_float, 1.0, "seconds to wait for workers' replies", "SECONDS"),
    Option(
        "worker_grace_period",
        _non_negative_float,
        3600.0,
        "seconds a worker that stopped answering inspect keeps reporting celery_worker_up 0 before its "
        "series is dropped",
        "SECONDS",
    ),
    Option(
        "web_config_file",
        _text,
        None,
        "TLS and basic auth for /metrics, in the web configuration format of Prometheus' exporters "
        "(tls_server_config, basic_auth_users with bcrypt hashes)",
        "FILE",
    ),
    Option("log_level", _log_level, "INFO", "debug, info, warning or error", "LEVEL"),
)
OPTIONS_BY_NAME = {opt.name: opt for opt in OPTIONS}

# The config file's `targets:` mapping names the brokers served on /probe?target=NAME. These options
# belong to the process (one listener, one log), so a target cannot set them; a target takes the rest.
TARGETS_KEY = "targets"
_NO_TARGETS = object()  # a file without the key, unlike `targets:` left empty (an error)
PROCESS_OPTIONS = frozenset({"address", "port", "web_config_file", "log_level"})
# A target name travels in URLs and becomes the `broker` label in Prometheus: keep it plain.
TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
TARGET_NAME_RULE = "1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit"


@dataclass(frozen=True)
class Config:
    broker_url: str
    address: str
    port: int
    queues: tuple[str, ...]
    app: str | None
    global_keyprefix: str
    priority_steps: tuple[int, ...]
    sep: str
    unacked_key: str
    unacked_index_key: str
    visibility_timeout: float
    sentinel_master: str | None
    max_queues: int
    queue_grace_period: float
    redis_timeout: float
    management_url: str | None
    management_timeout: float
    discovery_scan_count: int
    message_age: bool
    consumers_interval: float
    consumers_timeout: float
    worker_grace_period: float
    web_config_file: str | None
    log_level: str
    config_file: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict)  # option -> where its value came from
    targets: Mapping[str, Config] = field(default_factory=dict)  # /probe?target=NAME -> its options

    @property
    def layout(self) -> RedisLayout:
        return RedisLayout(
            global_keyprefix=self.global_keyprefix,
            sep=self.sep,
            priority_steps=self.priority_steps,
            unacked_key=self.unacked_key,
            unacked_index_key=self.unacked_index_key,
        )


class _QuietParser(argparse.ArgumentParser):
    """argparse that raises instead of printing its usage, so a bad flag is one line on stderr."""

    def error(self, message: str):  # type: ignore[override]
        raise ConfigError(message)


def build_arg_parser() -> argparse.ArgumentParser:
    parser = _QuietParser(
        prog="celery-queue-exporter",
        description="Prometheus exporter for what waits in a Celery broker (Redis or RabbitMQ). Every option is also "
        f"an environment variable {ENV_PREFIX}<NAME> and a key of the --config YAML file; precedence: "
        "flag, environment, config file, the app's broker_transport_options, default.",
    )
    parser.add_argument("--config", metavar="FILE", default=None, help=f"YAML file of options (env {ENV_PREFIX}CONFIG)")
    for opt in OPTIONS:
        parser.add_argument(
            opt.flag,
            dest=opt.name,
            metavar=opt.metavar,
            default=None,
            help=f"{opt.help} (env {opt.env}; default {shown_default(opt)})",
        )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def shown_default(opt: Option) -> str:
    if opt.name == "sep":
        return r"\x06\x16"
    if isinstance(opt.default, tuple):
        return ",".join(map(str, opt.default)) or "none"
    if isinstance(opt.default, bool):
        return str(opt.default).lower()
    if opt.default == "":
        return '""'
    return "none" if opt.default is None else str(opt.default)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    return build_arg_parser().parse_args(list(argv))


def _read_config_file(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        _refuse_duplicate_keys(path, yaml.compose(text, Loader=yaml.SafeLoader))
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"cannot parse config file {path}{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of option names to values")
    result: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in OPTIONS_BY_NAME and name != TARGETS_KEY:
            raise ConfigError(f"config file {path}: unknown option {key!r}")
        result[name] = value
    return result


def _refuse_duplicate_keys(path: str, node: yaml.Node | None, where: tuple[str, ...] = ()) -> None:
    """PyYAML keeps the last of two equal keys without a word: a target defined twice, or an option
    set twice, would silently lose one of them. Option keys compare with '-' read as '_'."""
    if not isinstance(node, yaml.MappingNode):
        return
    first_line: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
        if key is not None and key != "<<":  # "<<" merges an anchor's keys: explicit keys override them
            same = key if where == (TARGETS_KEY,) else key.replace("-", "_")
            line = key_node.start_mark.line + 1
            if same in first_line:
                what = f"target {key!r} is defined" if where == (TARGETS_KEY,) else f"key {key!r} appears"
                raise ConfigError(f"config file {path} line {line}: {what} twice (first at line {first_line[same]})")
            first_line[same] = line
        if len(where) < 2:  # options, target names, a target's options; deeper values are plain lists
            _refuse_duplicate_keys(path, value_node, (*where, (key or "").replace("-", "_")))


def _as_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def load_config(
    argv: Sequence[str],
    environ: Mapping[str, str] | None = None,
    transport_options: Callable[[str], Mapping[str, Any]] | None = None,
) -> Config:
    """Resolve every option. `transport_options(app_ref)` loads the app's broker_transport_options."""
    env = dict(os.environ if environ is None else environ)
    args = parse_args(argv)
    config_path = args.config or env.get(ENV_PREFIX + "CONFIG") or None
    file_values = _read_config_file(config_path) if config_path else {}
    targets = file_values.pop(TARGETS_KEY, _NO_TARGETS)

    raw: dict[str, tuple[str, Any]] = {}
    for opt in OPTIONS:
        flag_value = getattr(args, opt.name)
        if flag_value is not None:
            raw[opt.name] = (f"flag {opt.flag}", flag_value)
            continue
        for env_name in (opt.env, *opt.env_fallbacks):
            if env.get(env_name):
                raw[opt.name] = (f"environment {env_name}", env[env_name])
                break
        else:
            if opt.name in file_values and file_values[opt.name] is not None:
                raw[opt.name] = (f"config file key {opt.name}", _as_text(file_values[opt.name]))

    values, sources = _resolve(raw, transport_options)
    config = Config(**values, config_file=config_path, sources=sources)
    if targets is _NO_TARGETS:
        return config
    return replace(config, targets=_targets(str(config_path), targets, config, transport_options))


def _resolve(
    raw: Mapping[str, tuple[str, str]], transport_options: Callable[[str], Mapping[str, Any]] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Parse the given (source, text) of each option; the app's transport options, then the
    defaults, fill the rest. Returns (values, sources)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, (source, text) in raw.items():
        try:
            values[name] = OPTIONS_BY_NAME[name].parse(text)
        except ValueError as exc:
            raise ConfigError(f"invalid value {text!r} for {source}: {_reason(exc)}") from None
        sources[name] = source

    app_ref = values.get("app")
    if app_ref and transport_options is not None:
        options = transport_options(app_ref)
        for opt in OPTIONS:
            key = opt.transport_option
            if key and opt.name not in values and options.get(key) is not None:
                try:
                    values[opt.name] = opt.parse(_as_text(options[key]) if key != "sep" else _escape(options[key]))
                except ValueError as exc:
                    raise ConfigError(f"invalid broker_transport_options[{key!r}] of {app_ref}: {exc}") from None
                sources[opt.name] = f"broker_transport_options of {app_ref}"

    for opt in OPTIONS:
        if opt.name not in values:
            values[opt.name] = opt.default
            sources[opt.name] = "default"
    return values, sources


def _targets(
    path: str, data: Any, process: Config, transport_options: Callable[[str], Mapping[str, Any]] | None
) -> dict[str, Config]:
    """The config file's `targets:`, each a mapping of options over the built-in defaults (flags and
    environment variables set the default target of /metrics only); the process options are shared."""
    if not data:
        raise ConfigError(
            f"config file {path}: {TARGETS_KEY}: is empty; define at least one target "
            "(NAME: {{broker_url: ...}}) or remove the key"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: {TARGETS_KEY}: must map target names to their options")
    targets: dict[str, Config] = {}
    for key, options in data.items():
        name = str(key)
        if not TARGET_NAME.fullmatch(name):
            raise ConfigError(f"config file {path}: target name {name!r} is malformed: use {TARGET_NAME_RULE}")
        if not isinstance(options, dict):
            raise ConfigError(f"config file {path}: target {name!r} must be a mapping of options (broker_url: ...)")
        raw: dict[str, tuple[str, str]] = {}
        for option_key, value in options.items():
            option = str(option_key).replace("-", "_")
            if option in PROCESS_OPTIONS:
                raise ConfigError(
                    f"config file {path}: target {name!r}: {option_key!r} is an option of the whole exporter, "
                    "set it at the top level"
                )
            if option not in OPTIONS_BY_NAME:
                raise ConfigError(f"config file {path}: target {name!r}: unknown option {option_key!r}")
            if value is not None:
                raw[option] = (f"config file key {TARGETS_KEY}.{name}.{option}", _as_text(value))
        if not raw.get("broker_url", ("", ""))[1]:
            raise ConfigError(f"config file {path}: target {name!r} has no broker_url")
        values, sources = _resolve(raw, transport_options)
        for option in PROCESS_OPTIONS:
            values[option], sources[option] = getattr(process, option), process.sources[option]
        targets[name] = Config(**values, config_file=path, sources=sources)
    return targets


def _reason(exc: ValueError) -> str:
    text = str(exc)
    if text.startswith("invalid literal for int()"):
        return "expected an integer"
    if text.startswith("could not convert string to float"):
        return "expected a number"
    return text


def _escape(sep: Any) -> str:
    # The app gives the real characters; _sep() expects them written with escapes.
    return str(sep).encode("unicode_escape").decode("ascii")
