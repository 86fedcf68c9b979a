"""Talk to the stack's supervisord over its unix socket (XML-RPC), as supervisorctl does."""

from __future__ import annotations

import xmlrpc.client
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport


class Supervisor:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        transport = SupervisorTransport(None, None, f"unix://{socket_path}")
        self._proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def running(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            return self._proxy.supervisor.getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    def pid(self) -> int:
        return int(self._proxy.supervisor.getPID())

    def processes(self) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in self._proxy.supervisor.getAllProcessInfo()}

    def shutdown(self) -> None:
        self._proxy.supervisor.shutdown()
