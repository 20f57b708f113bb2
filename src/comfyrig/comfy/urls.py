"""How to reach a ComfyUI from this machine, given its --listen and --port."""

from __future__ import annotations

__all__ = ["local_url"]


def local_url(listen: str, port: int) -> str:
    """The URL to reach, from this machine, a ComfyUI started with ``--listen listen --port port``.

    A wildcard address (0.0.0.0, ::) is reached through the loopback.
    """
    host = listen.split(",")[0].strip().strip("[]")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"
