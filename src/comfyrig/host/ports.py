"""Ports: is one free, which process holds it, the next free ones.

Who holds a port is read from /proc (the socket inode in /proc/net/tcp*, then
the process whose fd points at it), so no extra dependency is needed; on
other systems, or for another user's process, the answer is just "unknown".
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from ..secrets import mask_command

__all__ = ["PortHolder", "ephemeral_port", "free_ports", "listening_inodes", "port_is_free", "who_holds"]

_LISTEN = "0A"


@dataclass(frozen=True)
class PortHolder:
    pid: int
    command: str


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``port`` (checked by binding, like ComfyUI will)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "" if family == socket.AF_INET else "::"
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as aiohttp sets it: a port in TIME_WAIT is free for ComfyUI too.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(base: int, count: int, host: str = "127.0.0.1", taken: frozenset[int] = frozenset()) -> list[int]:
    """The first ``count`` free ports from ``base`` upwards (SwarmUI-style skipping)."""
    ports: list[int] = []
    port = base
    while len(ports) < count:
        if port > 65535:
            raise OSError(f"no {count} free ports at or above {base}")
        if port not in taken and port_is_free(port, host.split(",")[0]):
            ports.append(port)
        port += 1
    return ports


def listening_inodes(proc_root: Path = Path("/proc")) -> dict[str, int]:
    """Socket inode -> port, for every TCP socket in LISTEN state (from /proc/net/tcp*)."""
    inodes: dict[str, int] = {}
    for table in ("net/tcp", "net/tcp6"):
        try:
            lines = (proc_root / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN:
                inodes[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    return inodes


def who_holds(port: int) -> PortHolder | None:
    """The process listening on ``port``, when /proc lets us see it."""
    inodes = {inode for inode, listening in listening_inodes().items() if listening == port}
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in targets:
                    raw = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                    # Shown in messages only: a secret on another process's command line stays hidden.
                    return PortHolder(pid=int(entry.name), command=mask_command(raw) or "?")
        except OSError:
            continue
    return None


def ephemeral_port(host: str = "127.0.0.1") -> int:
    """A port the kernel picks as free on ``host`` (for instances started side by side
    without talking to each other, where counting up from a base would collide)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host.strip("[]"), 0))
        return int(sock.getsockname()[1])
