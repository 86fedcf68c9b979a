"""Turn an Alertmanager webhook payload into one readable line per alert."""

from __future__ import annotations

from datetime import datetime
from typing import Any

# Labels already shown in their own column, or noise to a person reading the line.
_SHOWN = {"alertname", "severity"}
_NOISE = {"job", "instance", "prometheus"}


def _parse_time(text: object) -> datetime | None:
    if not isinstance(text, str) or text.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def alert_line(alert: dict[str, Any], received_at: str) -> str:
    labels: dict[str, str] = alert.get("labels") or {}
    annotations: dict[str, str] = alert.get("annotations") or {}
    status = str(alert.get("status", "unknown")).upper()
    where = " ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in _SHOWN | _NOISE)
    text = annotations.get("description") or annotations.get("summary") or ""
    parts = [received_at, status, labels.get("alertname", "?"), f"[{labels.get('severity', 'none')}]"]
    if where:
        parts.append(where)
    started, ended = _parse_time(alert.get("startsAt")), _parse_time(alert.get("endsAt"))
    if status == "RESOLVED" and started and ended:
        parts.append(f"(after {_duration((ended - started).total_seconds())})")
    line = " ".join(parts)
    return f"{line}: {' '.join(text.split())}" if text else line


def payload_lines(payload: dict[str, Any], received_at: str) -> list[str]:
    return [alert_line(a, received_at) for a in payload.get("alerts") or [] if isinstance(a, dict)]
