"""How to reach a ComfyUI from this machine, and the one rule for proxies on the way.

The rule, for HTTP (``client.http_client``) and the websocket (``websocket.ComfyEvents``)
alike: a loopback host (127.0.0.0/8, ::1, localhost) or this machine's wildcard address is
always reached directly; any other host honours the proxy variables of the environment
(HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY, read by httpx and websockets themselves).
GPU clusters set a proxy for every process; a request to 127.0.0.1 that follows it reaches
the proxy, never the ComfyUI next to it.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from ..errors import ConfigError

__all__ = ["comfy_url", "env_proxy_allowed", "is_local_host", "local_url"]


def comfy_url(text: str, flag: str = "--url") -> str:
    """The URL of a ComfyUI as a person typed it: ``http(s)://HOST[:PORT][/path]``, or ``HOST:PORT``
    (http assumed). Raises ConfigError naming ``flag`` for anything else.

    A bare word ("notaurl", "8188", "") is refused although it parses as a host name: with
    neither a scheme nor a port it is a typo far more often than a ComfyUI on port 80.
    """
    stripped = text.strip()
    given_scheme = "://" in stripped
    candidate = stripped if given_scheme else "http://" + stripped
    parts = urlsplit(candidate)
    try:
        port = parts.port  # raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:
        port, valid = None, False
    else:
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and (given_scheme or port is not None)
    if not valid or port == 0 or any(c.isspace() for c in stripped):
        raise ConfigError(
            f"{flag} {text!r} is not the URL of a ComfyUI; write http://HOST:PORT, e.g. http://127.0.0.1:8188."
        )
    return candidate.rstrip("/")


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


def is_local_host(host: str) -> bool:
    """True for a host that is this machine's loopback: 127.0.0.0/8, ::1, localhost (and
    names under .localhost), or a wildcard address (0.0.0.0, ::), which connects to it."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False  # a host name: it may resolve anywhere, so the environment decides
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def env_proxy_allowed(url: str) -> bool:
    """The proxy rule: False when ``url`` is on this machine's loopback (never proxied),
    True when the proxy settings of the environment apply to it (NO_PROXY included)."""
    host = urlsplit(url).hostname
    return host is None or not is_local_host(host)
