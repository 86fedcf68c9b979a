"""Grafana dashboards as code for the Celery monitoring stack.

`python -m grafana.generate` writes grafana/dashboards/*.json from grafana/dashboards_src/;
tests/grafana/queries.py lists every query of those dashboards for tests against a real Prometheus.
"""

import warnings

# The SDK deprecates its classic-dashboard builders in favour of the v2 schema. The classic
# JSON is on purpose: Grafana 12.2's file provisioning and "Import dashboard" take it as is.
warnings.filterwarnings(
    "ignore", message="Prefer using dashboardv2", category=DeprecationWarning, module=r"grafana_foundation_sdk\."
)
