"""What ``comfyrig --workers --ray`` leaves in the state folder for ``status``, ``monitor`` and ``stop``.

One record per gateway port (``ray-gateway-PORT.json``, 0600 in the private state folder):
the gateway's URL, the launch's pid and start time (a pid reused since is never signalled),
the cluster's address and whether the gateway asks for a token. The workers themselves run
on the cluster's nodes, not here: what they are, and on which node, comes from the gateway's
fleet view (``/comfyrig/fleet``), which ``fleet_workers`` reads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..host.processes import is_zombie, pid_alive, start_time
from .registry import StateDir

__all__ = ["RayGatewayRecord", "fleet_workers", "ray_records", "write_record"]

PREFIX = "ray-gateway-"


@dataclass(frozen=True)
class RayGatewayRecord:
    url: str  # how this machine reaches the gateway
    port: int
    pid: int
    start_ticks: int | None
    ray: str
    auth: bool

    def matches_process(self) -> bool:
        """The launch that wrote it still runs (the same pid and start time)."""
        if not pid_alive(self.pid) or is_zombie(self.pid):
            return False
        return self.start_ticks is None or start_time(self.pid) == self.start_ticks

    @classmethod
    def from_json(cls, text: str) -> RayGatewayRecord:
        """Raises ValueError/TypeError/KeyError for anything but a record."""
        data = json.loads(text)
        record = cls(str(data["url"]), int(data["port"]), int(data["pid"]), data.get("start_ticks"),
                     str(data.get("ray") or "auto"), bool(data.get("auth")))
        if record.start_ticks is not None and not isinstance(record.start_ticks, int):
            raise TypeError("start_ticks")
        return record


def write_record(state: StateDir, url: str, port: int, ray: str, auth: bool) -> Path:
    """This launch's record (its own pid); returns the path to remove when it stops."""
    pid = os.getpid()
    record = RayGatewayRecord(url, port, pid, start_time(pid), ray, auth)
    return state.write_private(f"{PREFIX}{record.port}.json", json.dumps(asdict(record)) + "\n")


def ray_records(state: StateDir) -> list[RayGatewayRecord]:
    """Every Ray gateway of this user that still runs, by port; records of launches that
    ended without removing theirs (kill -9) are removed."""
    if not state.root.is_dir():
        return []
    found = []
    for path in sorted(state.root.glob(f"{PREFIX}*.json")):
        text = state.read_private(path.name)
        if text is None:
            continue
        try:
            record = RayGatewayRecord.from_json(text)
        except (ValueError, TypeError, KeyError):
            continue
        if record.matches_process():
            found.append(record)
        else:
            path.unlink(missing_ok=True)
    return sorted(found, key=lambda r: r.port)


def fleet_workers(record: RayGatewayRecord, state: StateDir, environ: Mapping[str, str]) -> list[dict[str, Any]] | None:
    """The workers behind the gateway, each with its node and current URL (its token sent when
    it asks for one); None when it does not answer."""
    import httpx

    from ..comfy.client import probe_http_client
    from ..errors import ConfigError
    from ..gateway.token import client_headers

    headers = client_headers(environ, state, record.auth)
    try:
        with probe_http_client(record.url) as http:
            view = http.get(record.url + "/comfyrig/fleet", headers=headers).raise_for_status().json()
        return [{"name": b["name"], "node": b.get("node") or "", "url": b["url"], "live": b["live"],
                 "in_flight": b["in_flight"], "completed": b["completed"], "failed": b["failed"]}
                for b in view["backends"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError, ConfigError):  # ConfigError: a proxy rule it cannot use
        return None
