"""One module per dashboard; each has UID, TITLE, VARIABLES, Q (its PromQL) and build()."""

from __future__ import annotations

from types import ModuleType

from grafana.dashboards_src import overview, queues, workers

# In this order in grafana/README.md.
DASHBOARDS: tuple[ModuleType, ...] = (overview, queues, workers)
