"""Who may use the gateway, and ComfyUI's own browser guard.

ComfyUI has no authentication: on loopback its only guard is the origin check
(a web page on another site must not queue prompts on 127.0.0.1), which the
gateway applies as ComfyUI does, since the workers behind it see the gateway,
not the browser. Beyond loopback the gateway asks for a token: an
``Authorization: Bearer`` header (scripts, Krita, comfy-cli through a
header), or a cookie the gateway sets when a browser first opens
``/?token=...`` (the web page and its websocket then carry the cookie). The
token is compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
import urllib.parse
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

__all__ = ["COOKIE", "auth_middleware", "origin_middleware"]

COOKIE = "comfyrig_token"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    found = False
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            for *_, sockaddr in socket.getaddrinfo(host, None, family, socket.SOCK_STREAM):
                if not ipaddress.ip_address(sockaddr[0]).is_loopback:
                    return False
                found = True
        except (socket.gaierror, UnicodeError):
            pass
    return found


def origin_refused(host_header: str | None, origin_header: str | None, fetch_site: str | None) -> bool:
    """ComfyUI's origin check (server.py ``create_origin_only_middleware``): a cross-site fetch,
    or an Origin that differs from a loopback Host."""
    if fetch_site == "cross-site":
        return True
    if not host_header or not origin_header:
        return False
    host = host_header.lower()
    origin = urllib.parse.urlparse(origin_header)
    origin_domain = origin.netloc.lower()
    host_parsed = urllib.parse.urlsplit("//" + host)
    if not _is_loopback(host_parsed.hostname):
        return False
    host_cmp: str | None = host
    if origin.port is None:
        host_cmp = host_parsed.hostname
    if host_parsed.port is None:
        origin_domain = origin.hostname or ""
    return bool(host_cmp and origin_domain and host_cmp != origin_domain)


def origin_middleware() -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if origin_refused(request.headers.get("Host"), request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site")):
            return web.Response(status=403)
        if request.method == "OPTIONS":
            return web.Response()
        return await handler(request)

    return middleware


def token_of(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE) or request.query.get("token")


def auth_middleware(token: str) -> Middleware:
    expected = token.encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = token_of(request)
        if given is None or not hmac.compare_digest(given.encode(), expected):
            return web.json_response(
                {"error": {"type": "unauthorized", "message": "This ComfyUI gateway needs its token "
                           "(Authorization: Bearer TOKEN, or open /?token=TOKEN once in the browser).",
                           "details": "", "extra_info": {}}},
                status=401,
            )
        response = await handler(request)
        if request.query.get("token") and request.cookies.get(COOKIE) is None and not response.prepared:
            # A browser that came with ?token= keeps it as a cookie, so the page's own requests
            # and its websocket are let in without the token in every URL.
            response.set_cookie(COOKIE, given, httponly=True, samesite="Strict")
        return response

    return middleware
