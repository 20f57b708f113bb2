from __future__ import annotations

from pathlib import Path

import httpx

from comfyrig.config.settings import CliOverrides
from comfyrig.doctor.checks_net import check_cors, check_listen, check_port
from comfyrig.doctor.context import Probes, gather
from comfyrig.host.ports import PortHolder
from tests.doctor.conftest import comfy_tree, inventory, make_ctx, refused, stats_answer

HOLDER = PortHolder(pid=777, command="python -m http.server 8188")


def test_port_free_busy_auto(tmp_path: Path) -> None:
    assert check_port(make_ctx(tmp_path)).message == "Port 8188 is free on 127.0.0.1."
    busy = check_port(make_ctx(tmp_path, port_free=False, holder=HOLDER))
    assert busy.status == "fail" and busy.message == "Port 8188 is in use by pid 777 (python -m http.server 8188)."
    unseen = check_port(make_ctx(tmp_path, port_free=False))
    assert "a process comfyrig cannot see" in unseen.message
    auto = check_port(make_ctx(tmp_path, CliOverrides(port="auto")))
    assert auto.status == "pass" and "'auto'" in auto.message


def test_port_held_by_comfyui_is_a_warning(tmp_path: Path) -> None:
    holder = PortHolder(pid=4242, command="python main.py --port 8188")
    result = check_port(make_ctx(tmp_path, port_free=False, holder=holder, http=stats_answer))
    assert result.status == "warn" and "held by a running ComfyUI, pid 4242" in result.message


def test_port_from_comfyui_args_is_the_one_checked(tmp_path: Path) -> None:
    seen: list[tuple[int, str]] = []
    probes = Probes(
        inventory=lambda _f: inventory(),
        port_is_free=lambda port, host: seen.append((port, host)) is None,
        who_holds=lambda port: None,
        http_client=lambda url: httpx.Client(transport=httpx.MockTransport(refused)),
    )
    gather(CliOverrides(comfyui_args="--port 9000 --listen 0.0.0.0"), {}, tmp_path, torch=False, probes=probes)
    assert seen == [(9000, "0.0.0.0")]


def test_listen(tmp_path: Path) -> None:
    assert check_listen(make_ctx(tmp_path)).status == "pass"
    exposed = check_listen(make_ctx(tmp_path, CliOverrides(listen="0.0.0.0")))
    assert exposed.status == "warn" and "has no authentication" in exposed.message
    assert "ssh -L 8188:127.0.0.1:8188" in (exposed.fix or "")
    # A bare --listen in COMFYUI_ARGS wins over COMFYUI_LISTEN and means every address.
    via_args = check_listen(make_ctx(tmp_path, CliOverrides(comfyui_args="--listen")))
    assert via_args.status == "warn" and "listen on 0.0.0.0,::" in via_args.message


def test_cors(tmp_path: Path) -> None:
    assert check_cors(make_ctx(tmp_path)).status == "pass"
    comfy = comfy_tree(tmp_path / "ComfyUI")
    result = check_cors(make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy, comfyui_args="--enable-cors-header '*'")))
    assert result.status == "warn" and "CSRF" in result.message


def test_abbreviated_flags_count_as_argparse_reads_them(tmp_path: Path) -> None:
    comfy = comfy_tree(tmp_path / "ComfyUI")
    # --lis is --listen (bare: every address), --enable-cors is --enable-cors-header, --po is --port.
    ctx = make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy, comfyui_args="--lis --enable-cors --po=8191"))
    assert check_listen(ctx).status == "warn" and "listen on 0.0.0.0,::" in check_listen(ctx).message
    assert check_cors(ctx).status == "warn"
    assert ctx.port is not None and ctx.port.port == 8191
    # Without the checkout, a prefix is not guessed at.
    bare = make_ctx(tmp_path, CliOverrides(comfyui_args="--lis"))
    assert check_listen(bare).status == "pass"
