from __future__ import annotations

import httpx
import pytest

from comfyrig.errors import ConfigError
from comfyrig.monitor.instances import InstancePoller, normalise_url


def test_states_and_last_error_survive_recovery() -> None:
    up = {"ok": False}
    requests: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(str(request.url))
        if request.url.port == 8189:
            raise httpx.ConnectError("Connection refused", request=request)
        if not up["ok"]:
            return httpx.Response(500)
        return httpx.Response(200, json={"exec_info": {"queue_remaining": 3}})

    poller = InstancePoller(
        ["http://127.0.0.1:8188", "http://127.0.0.1:8189"],
        http=lambda url: httpx.Client(transport=httpx.MockTransport(handler)),
        clock=lambda: 0.0,
    )
    try:
        broken, down = poller.poll()
        assert (broken.state, down.state) == ("error", "down")
        assert broken.last_error is not None and broken.last_error.endswith(" /prompt: HTTP 500 Internal Server Error.")
        up["ok"] = True
        healthy, _ = poller.poll()
    finally:
        poller.close()
    assert (healthy.state, healthy.running, healthy.pending, healthy.port) == ("up", 1, 2, 8188)
    assert healthy.last_error == broken.last_error
    # One request per instance per tick, and only the light /prompt route.
    assert sorted(requests) == ["http://127.0.0.1:8188/prompt"] * 2 + ["http://127.0.0.1:8189/prompt"] * 2


@pytest.mark.parametrize(
    "given, url",
    [("127.0.0.1:8188", "http://127.0.0.1:8188"), ("http://gpu-box:8190/", "http://gpu-box:8190"), ("https://x", "https://x")],
)
def test_normalise_url(given: str, url: str) -> None:
    assert normalise_url(given) == url


@pytest.mark.parametrize("given", ["ftp://x:21", "http://", "http://host:99999", "http://host:port", "notaurl", "8188", "", "http://h:0"])
def test_bad_urls(given: str) -> None:
    with pytest.raises(ConfigError, match="is not the URL of a ComfyUI"):
        normalise_url(given)


def test_discovered_instances_come_and_go_with_their_labels() -> None:
    """The workers behind a Ray gateway: asked each tick, since Ray restarts a worker elsewhere
    under a new URL; a tick where the gateway cannot say keeps the last list."""
    lists: list[dict[str, str] | None] = [
        {"http://10.0.0.2:40001": "ray-0 on head 10.0.0.2 aaaa", "http://10.0.0.3:40002": "ray-1 on w1 10.0.0.3 bbbb"},
        None,
        {"http://10.0.0.2:40001": "ray-0 on head 10.0.0.2 aaaa", "http://10.0.0.4:40009": "ray-1.1 on w2 10.0.0.4 cccc"},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"exec_info": {"queue_remaining": 0}})

    poller = InstancePoller(["http://127.0.0.1:8188"], http=lambda url: httpx.Client(transport=httpx.MockTransport(handler)),
                            labels={"http://127.0.0.1:8188": "gateway (Ray auto)"}, discover=lambda: lists.pop(0))
    try:
        ticks = [{s.url: s.label for s in poller.poll()} for _ in range(3)]
    finally:
        poller.close()
    assert ticks[0] == {"http://127.0.0.1:8188": "gateway (Ray auto)", "http://10.0.0.2:40001": "ray-0 on head 10.0.0.2 aaaa",
                        "http://10.0.0.3:40002": "ray-1 on w1 10.0.0.3 bbbb"}
    assert ticks[1] == ticks[0]
    assert list(ticks[2]) == ["http://127.0.0.1:8188", "http://10.0.0.2:40001", "http://10.0.0.4:40009"]
    assert ticks[2]["http://10.0.0.4:40009"] == "ray-1.1 on w2 10.0.0.4 cccc"
