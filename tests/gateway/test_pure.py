"""The gateway's pure parts: routing, per-client order, frame conversion, merged reads."""

from __future__ import annotations

import base64
import json
import struct

import pytest

from comfyrig.gateway.frames import PREVIEW_IMAGE, legacy_preview, preview_metadata
from comfyrig.gateway.ledger import Ledger, PromptEntry, choose_backend
from comfyrig.gateway.merge import (
    CLIENT_KEY,
    encode_cursor,
    history_page,
    history_window,
    jobs_page,
    merge_queue,
    restore_extra,
)
from comfyrig.gateway.order import ClientOrder


def entry(pid: str, backend: str, client: str | None = "c", number: float = 0) -> PromptEntry:
    return PromptEntry(pid, client, backend, number, {})


# -- routing -------------------------------------------------------------------------------------
def test_the_least_loaded_live_worker_gets_the_prompt_ties_to_the_first() -> None:
    ledger = Ledger()
    assert choose_backend([], ledger, None) is None
    assert choose_backend(["a", "b"], ledger, None) == "a"
    ledger.add(entry("1", "a"))
    assert choose_backend(["a", "b"], ledger, None) == "b"
    ledger.add(entry("2", "b"))
    ledger.add(entry("3", "b"))
    assert choose_backend(["a", "b"], ledger, None) == "a"
    ledger.set_queue_remaining("a", 5)  # someone else queued directly on a
    assert choose_backend(["a", "b"], ledger, None) == "b"


def test_a_client_goes_back_to_its_idle_worker_and_spreads_when_it_is_busy() -> None:
    ledger = Ledger()
    ledger.add(entry("1", "b", client="krita"))
    ledger.finished("1")
    assert choose_backend(["a", "b"], ledger, "krita") == "b"  # idle: its node cache still helps
    assert choose_backend(["a", "b"], ledger, "other") == "a"
    ledger.add(entry("2", "b", client="krita"))
    assert choose_backend(["a", "b"], ledger, "krita") == "a"  # busy: spread
    assert choose_backend(["a"], ledger, "krita") == "a"  # its worker is gone: any live one


def test_numbers_keep_fleet_order_and_front_goes_first() -> None:
    ledger = Ledger()
    assert [ledger.next_number(False), ledger.next_number(False), ledger.next_number(True)] == [0.0, 1.0, -2.0]
    ledger.see_number(41.0)
    assert ledger.next_number(False) == 42.0


def test_the_book_stays_bounded() -> None:
    ledger = Ledger()
    for n in range(10_050):
        ledger.add(entry(str(n), "a", number=n))
        ledger.output(str(n), "a", [(f"{n}.png", "", "output")])
        ledger.finished(str(n))
    assert ledger.get("0") is None and ledger.get("10049") is not None
    assert ledger.backend_of_file("10049.png", "", "output") == "a"


# -- per-client order -------------------------------------------------------------------------------
def test_a_later_prompt_s_events_wait_for_the_earlier_prompt_to_end() -> None:
    order = ClientOrder()
    order.submitted("p1")
    order.submitted("p2")
    assert order.route("p2", "p2-start") == []
    assert order.route("p1", "p1-start") == ["p1-start"]
    assert order.route("p2", "p2-end") == []
    assert order.route(None, "status") == ["status"]  # not a prompt's event: at once
    assert order.route("elsewhere", "x") == ["x"]  # not this client's prompt
    assert order.ended("p2") == []  # p1 still runs
    assert order.route("p1", "p1-end") == ["p1-end"]
    assert order.ended("p1") == ["p2-start", "p2-end"]  # p2 ended too: everything at once
    assert order.pending() == []


def test_waiting_previews_are_dropped_beyond_the_budget_results_never() -> None:
    order = ClientOrder(held_bytes=10)
    order.submitted("p1")
    order.submitted("p2")
    assert order.route("p2", b"12345678", droppable=True) == []
    assert order.route("p2", b"12345678", droppable=True) == []  # over 10 bytes: dropped
    assert order.route("p2", "executed" * 10) == []  # a result: kept whatever its size
    assert order.dropped == 1
    assert order.ended("p1") == [b"12345678", "executed" * 10]
    assert order.route("p2", b"again-and-again", droppable=True) == [b"again-and-again"]  # now first: sent


def test_a_prompt_deleted_from_the_queue_releases_the_next() -> None:
    order = ClientOrder()
    for pid in ("p1", "p2", "p3"):
        order.submitted(pid)
    order.route("p3", "p3-start")
    assert order.ended("p2") == []
    assert order.ended("p1") == ["p3-start"]


# -- frames ------------------------------------------------------------------------------------------
def test_a_preview_with_metadata_becomes_comfyui_s_legacy_frame_for_old_clients() -> None:
    meta = json.dumps({"prompt_id": "p", "node_id": "3", "image_type": "image/png"}).encode()
    frame = struct.pack(">II", 4, len(meta)) + meta + b"PNGDATA"
    assert preview_metadata(frame) == {"prompt_id": "p", "node_id": "3", "image_type": "image/png"}
    assert legacy_preview(frame) == struct.pack(">II", PREVIEW_IMAGE, 2) + b"PNGDATA"
    jpeg = json.dumps({"prompt_id": "p", "image_type": "image/jpeg"}).encode()
    assert legacy_preview(struct.pack(">II", 4, len(jpeg)) + jpeg + b"J")[4:8] == struct.pack(">I", 1)
    assert legacy_preview(struct.pack(">II", 1, 1) + b"x") is None  # already legacy
    assert legacy_preview(struct.pack(">II", 4, 999) + b"{}") is None  # truncated
    assert preview_metadata(b"\x00") is None


# -- merged reads ------------------------------------------------------------------------------------
def test_the_client_id_it_submitted_with_is_given_back() -> None:
    assert restore_extra({"client_id": "comfyrig-gw-x", CLIENT_KEY: "krita", "a": 1}) == {"client_id": "krita", "a": 1}
    assert restore_extra({"client_id": "comfyrig-gw-x", CLIENT_KEY: None}) == {}
    assert restore_extra({"client_id": "comfyrig-gw-x"}) == {}
    assert restore_extra({"client_id": "someone"}) == {"client_id": "someone"}


def test_queues_merge_in_number_order() -> None:
    a = {"queue_running": [[1.0, "r1", {}, {"client_id": "comfyrig-gw-1", CLIENT_KEY: "u"}, []]],
         "queue_pending": [[4.0, "p4", {}, {}, []], [2.0, "p2", {}, {}, []]]}
    b = {"queue_running": [[0.0, "r0", {}, {}, []]], "queue_pending": [[3.0, "p3", {}, {}, []], [-5.0, "front", {}, {}, []]]}
    merged = merge_queue([a, b])
    assert [i[1] for i in merged["queue_running"]] == ["r0", "r1"]
    assert [i[1] for i in merged["queue_pending"]] == ["front", "p2", "p3", "p4"]
    assert merged["queue_running"][1][3] == {"client_id": "u"}


def _history(pid: str, ended: int, number: float) -> dict[str, object]:
    return {pid: {"prompt": [number, pid, {}, {}, []], "outputs": {},
                  "status": {"status_str": "success", "completed": True,
                             "messages": [["execution_start", {"timestamp": ended - 5}], ["execution_success", {"timestamp": ended}]]}}}


def test_history_pages_as_comfyui_pages_its_own() -> None:
    a = {**_history("a1", 100, 0), **_history("a2", 300, 2)}
    b = {**_history("b1", 200, 1), **_history("b2", 400, 3)}
    assert list(history_page([a, b], None, None)) == ["a1", "b1", "a2", "b2"]
    assert list(history_page([a, b], 2, None)) == ["a2", "b2"]  # default offset: the newest
    assert list(history_page([a, b], 2, 1)) == ["b1", "a2"]
    assert list(history_page([a, b], None, 1)) == ["b1", "a2", "b2"]
    assert history_window(None, None) == (None, None)
    assert history_window(5, None) == (5, None)
    assert history_window(5, 10) == (15, 0)


def test_jobs_page_sorts_sums_and_mints_comfyui_s_cursor() -> None:
    a = {"jobs": [{"id": "a", "create_time": 3}, {"id": "c", "create_time": 1}], "pagination": {"total": 2, "has_more": False}}
    b = {"jobs": [{"id": "b", "create_time": 2}], "pagination": {"total": 5, "has_more": True}}
    page = jobs_page([a, b], sort_by="created_at", sort_order="desc", limit=2, offset=0, cursor_used=False)
    assert [j["id"] for j in page["jobs"]] == ["a", "b"]
    assert page["pagination"]["total"] == 7 and page["pagination"]["has_more"]
    cursor = page["pagination"]["next_cursor"]
    payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert payload == {"s": "created_at", "v": "2", "id": "b", "o": "desc"}
    assert encode_cursor("1", "<&>", "asc").startswith("eyJ")  # base64url of '{"'
    second = jobs_page([a, b], sort_by="created_at", sort_order="desc", limit=2, offset=2, cursor_used=False)
    assert [j["id"] for j in second["jobs"]] == ["c"]
    durations = jobs_page([{"jobs": [{"id": "x", "execution_start_time": 1, "execution_end_time": 9},
                                     {"id": "y", "execution_start_time": 1, "execution_end_time": 3}],
                            "pagination": {"total": 2}}],
                          sort_by="execution_duration", sort_order="asc", limit=None, offset=0, cursor_used=False)
    assert [j["id"] for j in durations["jobs"]] == ["y", "x"] and "next_cursor" not in durations["pagination"]


@pytest.mark.parametrize(("host", "url"), [("127.0.0.1", "http://127.0.0.1:8188"), ("0.0.0.0", "http://127.0.0.1:8188"),
                                           ("::", "http://127.0.0.1:8188"), ("0.0.0.0,::", "http://127.0.0.1:8188"),
                                           ("::1", "http://[::1]:8188"), ("10.0.0.5,127.0.0.1", "http://10.0.0.5:8188")])
def test_the_gateways_url_is_one_this_machine_reaches(host: str, url: str) -> None:
    """--listen :: or 0.0.0.0,:: gave 'http://:::8188', which no client (nor status, monitor and
    stop, which read it from the Ray gateway's record) could parse."""
    from comfyrig.gateway.server import GatewayOptions
    from comfyrig.gateway.service import GatewayThread

    gateway = GatewayThread([], GatewayOptions(host=host, port=8188))
    try:
        assert gateway.url == url
    finally:
        gateway._loop.close()
