"""Generate prometheus/rules/<profile>/ from prometheus/alerting.yml.

`python -m prometheus.generate` rewrites the rule files, `--check` fails when they are stale.
"""

from __future__ import annotations

from prometheus.generate.catalog import ALERTS, BY_NAME, AlertSpec, Scope
from prometheus.generate.config import DEFAULT_PATH, PRODUCTION, AlertingConfig, ConfigError, load, parse
from prometheus.generate.render import RULES_DIR, render, stale_files, write_profile, write_tree
from prometheus.generate.rules import Profile, profile, uniform

__all__ = [
    "ALERTS",
    "BY_NAME",
    "DEFAULT_PATH",
    "PRODUCTION",
    "RULES_DIR",
    "AlertSpec",
    "AlertingConfig",
    "ConfigError",
    "Profile",
    "Scope",
    "load",
    "parse",
    "profile",
    "render",
    "stale_files",
    "uniform",
    "write_profile",
    "write_tree",
]
