"""The one proxy rule, for HTTP and the websocket: loopback never goes through a proxy;
any other host honours HTTP_PROXY / ALL_PROXY / NO_PROXY from the environment.

A stand-in proxy and a stand-in ComfyUI run in threads on this machine; which of the two
a request reaches shows the route it took. Nothing here leaves the machine: a proxied
request names its host only to the stand-in proxy, which never resolves it.
"""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from comfyrig.comfy.client import ComfyClient, http_client
from comfyrig.comfy.urls import env_proxy_allowed, is_local_host, local_url
from comfyrig.comfy.websocket import ComfyEvents
from comfyrig.errors import ComfyUnreachable, ConfigError

from ..conftest import json_server

PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")


@dataclass
class Server:
    """A thread answering GET with ``{"exec_info": {"queue_remaining": remaining}}``; ``seen``
    holds each request target (absolute, http://host:port/path, when it was sent to a proxy)."""

    remaining: int
    seen: list[str] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def serve() -> Iterator[Any]:
    with ExitStack() as stack:

        def start(remaining: int, host: str = "127.0.0.1") -> Server:
            state = Server(remaining)

            def answer(path: str) -> tuple[int, Any]:
                state.seen.append(path)
                return 200, {"exec_info": {"queue_remaining": state.remaining}}

            state.url, _ = stack.enter_context(json_server(answer, host))
            return state

        yield start


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def set_proxy(env: pytest.MonkeyPatch, proxy: str, no_proxy: str | None = None) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        env.setenv(name, proxy)
    if no_proxy is not None:
        env.setenv("NO_PROXY", no_proxy)
        env.setenv("no_proxy", no_proxy)


def this_machine_address() -> str | None:
    """A non-loopback IPv4 address of this machine (a UDP connect sends nothing), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the outgoing interface
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


# -- the rule ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "host, local",
    [
        ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
        ("LOCALHOST", True), ("comfy.localhost", True), ("0.0.0.0", True), ("::", True), ("::ffff:127.0.0.1", True),
        ("10.0.0.5", False), ("192.168.1.5", False), ("gpu-box", False), ("comfy.example.com", False), ("localhost.example", False),
    ],
)
def test_local_hosts(host: str, local: bool) -> None:
    assert is_local_host(host) is local


@pytest.mark.parametrize(
    "url, allowed",
    [("http://127.0.0.1:8188", False), ("http://[::1]:8188/", False), ("ws://localhost:8188/ws?clientId=x", False),
     ("http://gpu-box:8188", True), ("wss://10.1.2.3/ws", True)],
)
def test_env_proxy_allowed(url: str, allowed: bool) -> None:
    assert env_proxy_allowed(url) is allowed


@pytest.mark.parametrize(
    "listen, url",
    [
        ("127.0.0.1", "http://127.0.0.1:8188"),
        ("0.0.0.0", "http://127.0.0.1:8188"),
        ("0.0.0.0,::", "http://127.0.0.1:8188"),
        ("::1", "http://[::1]:8188"),
        ("192.168.1.5", "http://192.168.1.5:8188"),
    ],
)
def test_local_url(listen: str, url: str) -> None:
    assert local_url(listen, 8188) == url


def test_only_non_loopback_clients_trust_the_environment() -> None:
    with http_client("http://127.0.0.1:8188") as loopback, http_client("http://gpu-box:8188") as remote:
        assert (loopback.trust_env, remote.trust_env) == (False, True)


# -- HTTP, through the stand-ins --------------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_never_goes_through_the_proxy(environ: pytest.MonkeyPatch, serve: Any, host: str) -> None:
    proxy, comfy = serve(7), serve(2)
    set_proxy(environ, proxy.url)
    with ComfyClient(comfy.url.replace("127.0.0.1", host)) as client:
        assert client.queue_remaining() == 2
    assert (proxy.seen, comfy.seen) == ([], ["/prompt"])


def test_another_host_goes_through_the_proxy_of_the_environment(environ: pytest.MonkeyPatch, serve: Any) -> None:
    proxy = serve(7)
    set_proxy(environ, proxy.url)
    with ComfyClient("http://comfy.invalid:8188") as client:
        assert client.queue_remaining() == 7
    assert proxy.seen == ["http://comfy.invalid:8188/prompt"]


@pytest.mark.parametrize("listed", [True, False])
def test_no_proxy_naming_the_host_goes_direct(environ: pytest.MonkeyPatch, serve: Any, listed: bool) -> None:
    address = this_machine_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to serve on")
    proxy, comfy = serve(7), serve(2, host=address)
    set_proxy(environ, proxy.url, no_proxy=f"example.com,{address}" if listed else "example.com")
    with ComfyClient(comfy.url) as client:
        remaining = client.queue_remaining()
    if listed:
        assert (remaining, proxy.seen, comfy.seen) == (2, [], ["/prompt"])
    else:
        assert (remaining, proxy.seen, comfy.seen) == (7, [f"{comfy.url}/prompt"], [])


def test_a_dead_proxy_reads_as_unreachable_with_a_hint(environ: pytest.MonkeyPatch) -> None:
    set_proxy(environ, "http://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(ComfyUnreachable, match=r"^http://comfy.invalid:8188/prompt: nothing answers") as info:
        ComfyClient("http://comfy.invalid:8188").queue_remaining()
    assert info.value.hint is not None and "add comfy.invalid to NO_PROXY" in info.value.hint
    with pytest.raises(ComfyUnreachable) as direct:
        ComfyClient("http://127.0.0.1:9").queue_remaining()
    assert direct.value.hint is None  # loopback: no proxy was involved


def test_an_unusable_proxy_is_a_config_error_except_for_loopback(environ: pytest.MonkeyPatch) -> None:
    set_proxy(environ, "foo://127.0.0.1:9")
    with pytest.raises(ConfigError, match="The proxy set in the environment for http://gpu-box:8188 cannot be used") as info:
        ComfyClient("http://gpu-box:8188")
    assert info.value.hint is not None and "Add gpu-box to NO_PROXY" in info.value.hint
    ComfyClient("http://127.0.0.1:8188").close()


@pytest.mark.skipif(importlib.util.find_spec("socksio") is not None, reason="httpx's socks extra is installed")
def test_a_socks_proxy_without_the_extra_does_not_break_loopback(environ: pytest.MonkeyPatch) -> None:
    set_proxy(environ, "socks5://127.0.0.1:9")
    ComfyClient("http://127.0.0.1:8188").close()
    with pytest.raises(ConfigError, match="socksio"):
        ComfyClient("http://gpu-box:8188")


# -- the websocket: the same rule, handed to the connection factory ---------------------------------
class FakeConnection:
    def recv(self, timeout: float | None = None) -> str | bytes:
        raise TimeoutError

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "base_url, proxy",
    [("http://127.0.0.1:8188", None), ("http://localhost:8188", None), ("http://gpu-box:8188", True), ("https://comfy.example.com", True)],
)
def test_websocket_gets_the_same_rule(base_url: str, proxy: Literal[True] | None) -> None:
    opened: list[tuple[str, float, Literal[True] | None]] = []

    def connect(url: str, *, open_timeout: float, proxy: Literal[True] | None) -> FakeConnection:
        opened.append((url, open_timeout, proxy))
        return FakeConnection()

    events = ComfyEvents(base_url, "client-1", open_timeout_s=2.0, connect=connect)
    assert events.next(0.01) is None
    events.close()
    scheme = "wss" if base_url.startswith("https") else "ws"
    assert opened == [(f"{scheme}://{base_url.split('://')[1]}/ws?clientId=client-1", 2.0, proxy)]
