"""Fixed uids of the dashboards and datasources, and the datasource every query reads.

Alert annotations (dashboard_url) and hand-made links point at these uids, so a renamed title
never breaks a link. The dashboard uids are defined once, by the alert catalog of
prometheus.generate (its rules link to them); provisioning/datasources/datasources.yml uses the
datasource uids (tests/grafana/test_provisioning.py checks it).
"""

from __future__ import annotations

from grafana_foundation_sdk.models import common as cm

from prometheus.generate import catalog

OVERVIEW_UID = catalog.OVERVIEW
QUEUES_UID = catalog.QUEUES
WORKERS_UID = catalog.WORKERS
PROMETHEUS_UID = "prometheus"
ALERTMANAGER_UID = "alertmanager"
TAG = "celery"

# Panels query the datasource picked in the `datasource` variable (default: the provisioned one).
DATASOURCE = cm.DataSourceRef(type_val="prometheus", uid="${datasource}")
