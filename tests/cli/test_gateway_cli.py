"""The gateway's options on the command line: where it listens, who may use it, what it fronts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..conftest import InProcessCli


def _plan(run: InProcessCli, comfy_tree: Path, *args: str) -> tuple[int, str, str]:
    run.gpus(2)
    result = run("--dry-run", "--json", "--workers", *args,
                 env={"COMFYUI_DIR": str(comfy_tree), "COMFYUI_PYTHON": sys.executable})
    return result.returncode, result.stdout, " ".join(result.stderr.replace("│", " ").split())


def test_workers_get_one_url_on_the_port_and_loopback_ports_after_it(run: InProcessCli, comfy_tree: Path) -> None:
    code, out, err = _plan(run, comfy_tree, "--port", "8500")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["gateway"] == {"url": "http://127.0.0.1:8500", "listen": "127.0.0.1", "port": 8500, "urls": [], "auth": False}
    assert [i["listen"] for i in plan["instances"]] == ["127.0.0.1", "127.0.0.1"]
    assert all(i["port"] > 8500 for i in plan["instances"])
    code, out, _ = _plan(run, comfy_tree, "--port", "8500", "--no-gateway")
    assert json.loads(out)["gateway"] is None and json.loads(out)["instances"][0]["port"] == 8500


def test_beyond_loopback_the_gateway_needs_auth_or_an_explicit_no(run: InProcessCli, comfy_tree: Path) -> None:
    code, _, err = _plan(run, comfy_tree, "--listen", "0.0.0.0")
    assert code == 2 and "--auth" in err and "--insecure-no-auth" in err and "Traceback" not in err
    code, out, err = _plan(run, comfy_tree, "--listen", "0.0.0.0", "--auth")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["gateway"]["auth"] is True and plan["gateway"]["listen"] == "0.0.0.0"
    assert all(i["listen"] == "127.0.0.1" for i in plan["instances"])  # the workers stay behind it
    code, out, _ = _plan(run, comfy_tree, "--listen", "0.0.0.0", "--insecure-no-auth")
    assert code == 0 and json.loads(out)["gateway"]["auth"] is False


def test_gateway_options_without_a_gateway_are_refused(run: InProcessCli, comfy_tree: Path) -> None:
    run.gpus(2)
    env = {"COMFYUI_DIR": str(comfy_tree), "COMFYUI_PYTHON": sys.executable}
    for args in (["--auth"], ["--url", "http://10.0.0.2:8188"], ["--workers", "--no-gateway", "--auth"],
                 ["--workers", "--auth", "--insecure-no-auth"]):
        result = run("--dry-run", *args, env=env)
        assert result.returncode == 2 and "Traceback" not in result.stderr, args
    for url in ("ftp://x:1", "http://", "http://h:99999", "notaurl"):
        result = run("--dry-run", "--workers", "--url", url, env=env)
        assert result.returncode == 2 and "--url" in result.stderr, url


def test_the_gateway_command_checks_its_input(run: InProcessCli) -> None:
    assert run("gateway").returncode == 2
    refused = run("gateway", "--url", "http://127.0.0.1:9", "--listen", "0.0.0.0")
    assert refused.returncode == 2 and "--auth" in refused.stderr
    assert run("gateway", "--url", "nope").returncode == 2
    assert run("gateway", "--url", "http://127.0.0.1:9", "--port", "0").returncode == 2
