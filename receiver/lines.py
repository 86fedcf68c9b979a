"""Turn an Alertmanager webhook payload into one readable line per alert."""

from __future__ import annotations

from typing import Any

# Labels already shown in their own column, or noise to a person reading the line.
_SHOWN = {"alertname", "severity"}
_NOISE = {"job", "instance", "prometheus"}


def alert_line(alert: dict[str, Any], received_at: str) -> str:
    labels: dict[str, str] = alert.get("labels") or {}
    annotations: dict[str, str] = alert.get("annotations") or {}
    status = str(alert.get("status", "unknown")).upper()
    where = " ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in _SHOWN | _NOISE)
    text = annotations.get("description") or annotations.get("summary") or ""
    parts = [received_at, status, labels.get("alertname", "?"), f"[{labels.get('severity', 'none')}]"]
    if where:
        parts.append(where)
    line = " ".join(parts)
    return f"{line}: {' '.join(text.split())}" if text else line


def payload_lines(payload: dict[str, Any], received_at: str) -> list[str]:
    return [alert_line(a, received_at) for a in payload.get("alerts") or [] if isinstance(a, dict)]
