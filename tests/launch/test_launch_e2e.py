"""Fault tests: the installed comfyrig against ComfyUI, as real processes on loopback.

Every test runs against the fake ComfyUI; the ones that need no fault knob run
against real ComfyUI checkouts too (marker ``comfyui``), one parameter per checkout
named by its version, when COMFYUI_DIRS (or COMFYUI_DIR) names them, on the CPU
(tests/real_comfyui.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfyrig.host.ports import port_is_free

from ..conftest import Cli, fake_gpus
from ..launching import FAKE_DIR, Launched, pid_gone, python, wait_until
from ..real_comfyui import Checkout, real_params, usable

pytestmark = pytest.mark.e2e  # starts real processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Rig:
    def __init__(self, cli: Cli, comfy_dir: str, python: str, real: bool) -> None:
        self.cli, self.comfy_dir, self.python, self.real = cli, comfy_dir, python, real
        self.started: list[Launched] = []

    @property
    def ready_timeout(self) -> float:
        return 180.0 if self.real else 30.0


@pytest.fixture(params=["fake", *real_params("real-")])
def rig(request: pytest.FixtureRequest, cli: Cli, tmp_path: Path) -> Iterator[Rig]:
    if request.param == "fake":
        rig = Rig(cli, str(FAKE_DIR), python(), real=False)
    else:
        if request.node.get_closest_marker("fake_only"):
            pytest.skip("needs a fault knob only the fake ComfyUI has")
        checkout: Checkout = usable(request.param)
        rig = Rig(cli, checkout.dir, checkout.python, real=True)
    cli.env["COMFYRIG_STATE_DIR"] = str(tmp_path / "state")
    cli.env["COMFYRIG_FAKE_GPUS"] = json.dumps(fake_gpus(2))
    yield rig
    for launched in rig.started:
        launched.kill()


def start(rig: Rig, *args: str, env: dict[str, str] | None = None, port: int | None = None) -> tuple[Launched, int]:
    cli = rig.cli
    port = port or free_port()
    argv = ["launch", "--plain", "--comfyui-dir", rig.comfy_dir, "--python", rig.python, "--port", str(port),
            "--log-dir", str(cli.cwd / "logs"), *args]
    launched = Launched(argv, {**cli.env, **(env or {})}, cli.cwd)
    launched.default_timeout = rig.ready_timeout
    rig.started.append(launched)
    return launched, port


def get(url: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def read_pid(path: Path) -> int:
    return int(wait_until(lambda: path.exists() and path.read_text().strip(), 10, f"pid in {path}"))


@pytest.mark.fake_only
def test_ready_then_ctrl_c_leaves_nothing(rig: Rig, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    launched, port = start(rig, "--single", "1", env={"FAKE_COMFYUI_SPAWN_CHILD": "1", "FAKE_COMFYUI_CHILD_PIDFILE": str(pidfile)})
    launched.wait_for("READY")
    stats = get(f"http://127.0.0.1:{port}/system_stats")
    assert stats["system"]["fake_cuda_visible_devices"] == "1"
    grandchild = read_pid(pidfile)
    launched.interrupt()
    assert launched.wait() == 0
    wait_until(lambda: pid_gone(grandchild), 10, "the grandchild to be gone")
    assert port_is_free(port)
    assert (rig.cli.cwd / "logs" / f"comfyrig-{port}.log").read_text().count("To see the GUI go to") == 1


@pytest.mark.parametrize("delay", [1.0, 5.0])
def test_ctrl_c_during_startup(rig: Rig, delay: float) -> None:
    if delay > 1 and not rig.real:
        pytest.skip("the fake's start-up has no phases: at 5 s it is where it was at 1 s (fake-1.0 covers it)")
    launched, port = start(rig, "--cpu", env={"FAKE_COMFYUI_START_DELAY": "30"})
    launched.wait_for("started pid")
    pid = int(launched.text.split("started pid ")[1].split(",")[0])
    wait_until(lambda: "Device: cpu" in launched.text, 10, "startup lines")
    import time

    time.sleep(delay - 0.5 if delay > 1 else 0.0)  # the point in startup the test is about, not a wait for a condition
    launched.interrupt()
    assert launched.wait() == 0
    assert pid_gone(pid) and port_is_free(port)


@pytest.mark.fake_only
def test_escalates_to_sigkill(rig: Rig) -> None:
    launched, port = start(rig, "--cpu", "--stop-timeout", "1", env={"FAKE_COMFYUI_IGNORE_SIGINT": "1"})
    launched.wait_for("READY")
    launched.interrupt()
    assert launched.wait() == 0
    assert "SIGKILL" in launched.text or port_is_free(port)
    assert port_is_free(port)


def test_kill_9_is_restarted(rig: Rig) -> None:
    import signal

    launched, port = start(rig, "--cpu", "--restart", "on-failure", "--restart-delay", "0.2")
    launched.wait_for("READY")
    pid = int(launched.text.split("started pid ")[1].split(",")[0])
    os.kill(pid, signal.SIGKILL)
    launched.wait_for("exited with code -9")
    launched.wait_for("READY", count=2)
    assert get(f"http://127.0.0.1:{port}/prompt")["exec_info"]["queue_remaining"] == 0
    launched.interrupt()
    assert launched.wait() == 0


@pytest.mark.fake_only
def test_crash_loop_gives_up_with_log_tail(rig: Rig) -> None:
    launched, _ = start(rig, "--cpu", "--restart", "always", "--restart-delay", "0.05", env={"FAKE_COMFYUI_CRASH_AT_START": "1"})
    assert launched.wait(timeout=60) == 1
    assert "gave up: 5 failed starts" in launched.text
    assert "Last " in launched.text and "log lines" in launched.text


def test_unknown_flag_exit_2_not_restarted(rig: Rig) -> None:
    launched, _ = start(rig, "--cpu", "--restart", "always", "--", "--medvram")
    assert launched.wait() == 2
    assert "rejected its command line" in launched.text
    assert "unrecognized arguments: --medvram" in launched.text
    assert launched.text.count("started pid") == 1


def test_port_in_use_names_the_holder(rig: Rig) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        launched, _ = start(rig, "--cpu", port=port)
        assert launched.wait() == 1
    assert f"Port {port} on 127.0.0.1 is already in use by pid {os.getpid()}" in " ".join(launched.text.split())


def test_comfyrig_sigkilled_takes_comfyui_with_it(rig: Rig) -> None:
    import signal

    launched, port = start(rig, "--cpu")
    launched.wait_for("READY")
    pid = int(launched.text.split("started pid ")[1].split(",")[0])
    os.kill(launched.proc.pid, signal.SIGKILL)
    launched.proc.wait(timeout=10)
    wait_until(lambda: pid_gone(pid), 10, "ComfyUI to die with its parent")
    wait_until(lambda: port_is_free(port), 10, "the port to be free")


@pytest.mark.fake_only
@pytest.mark.parametrize("how", ["group", "setsid"])
def test_comfyrig_sigkilled_leaves_no_grandchild(rig: Rig, tmp_path: Path, how: str) -> None:
    # Before: ComfyUI died by its parent-death signal, its helper lived on under init.
    pidfile = tmp_path / "grandchild.pid"
    env = {"FAKE_COMFYUI_SPAWN_CHILD": "1", "FAKE_COMFYUI_CHILD_PIDFILE": str(pidfile),
           "FAKE_COMFYUI_CHILD_SETSID": "1" if how == "setsid" else "0"}
    launched, port = start(rig, "--cpu", env=env)
    launched.wait_for("READY")
    grandchild = read_pid(pidfile)
    pid = int(launched.text.split("started pid ")[1].split(",")[0])
    record = json.loads((tmp_path / "state" / "instances" / f"{port}.json").read_text())
    assert record["pid"] == pid and record["sentinel_pid"] not in (None, pid)
    (listed,) = json.loads(rig.cli("status", "--json").stdout)["instances"]
    assert listed["pid"] == pid and listed["sentinel_pid"] == record["sentinel_pid"]
    os.kill(launched.proc.pid, 9)
    launched.proc.wait(timeout=10)
    wait_until(lambda: pid_gone(grandchild), 10, f"the {how} grandchild to be gone")
    wait_until(lambda: pid_gone(pid) and pid_gone(record["sentinel_pid"]), 10, "ComfyUI and its sentinel to be gone")
    wait_until(lambda: port_is_free(port), 10, "the port to be free")
    # Nothing runs, so 'status' lists nothing (the record of the killed launcher is dropped as stale).
    assert json.loads(rig.cli("status", "--json").stdout)["instances"] == []


@pytest.mark.fake_only
def test_the_limit_a_sigkilled_sentinel_leaves_only_a_daemon(rig: Rig, tmp_path: Path) -> None:
    # The documented limit: ComfyUI dies by its parent-death signal and comfyrig kills its group,
    # but a helper that left the group with setsid is re-parented to init and lives on.
    env = {"FAKE_COMFYUI_SPAWN_CHILD": "1", "FAKE_COMFYUI_CHILD_PIDFILE": str(tmp_path / "daemon.pid"),
           "FAKE_COMFYUI_CHILD_SETSID": "1"}
    launched, port = start(rig, "--cpu", env=env)
    launched.wait_for("READY")
    daemon = read_pid(tmp_path / "daemon.pid")
    record = json.loads((tmp_path / "state" / "instances" / f"{port}.json").read_text())
    try:
        os.kill(record["sentinel_pid"], 9)
        assert launched.wait() != 0  # SIGKILL: not asked for, so a failure
        wait_until(lambda: pid_gone(record["pid"]), 10, "ComfyUI to die with its sentinel")
        assert not pid_gone(daemon)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon, 9)


@pytest.mark.fake_only
def test_stop_reaches_a_daemonized_grandchild(rig: Rig, tmp_path: Path) -> None:
    # A helper that left ComfyUI's group and session: the group signal misses it, the sentinel does not.
    pidfile = tmp_path / "daemon.pid"
    env = {"FAKE_COMFYUI_SPAWN_CHILD": "1", "FAKE_COMFYUI_CHILD_PIDFILE": str(pidfile), "FAKE_COMFYUI_CHILD_SETSID": "1"}
    launched, port = start(rig, "--cpu", "--restart", "always", env=env)
    launched.wait_for("READY")
    daemon = read_pid(pidfile)
    result = rig.cli("stop", "--port", str(port))
    assert result.returncode == 0, result.stdout + result.stderr
    assert launched.wait() == 0
    wait_until(lambda: pid_gone(daemon), 10, "the daemonized grandchild to be gone")


def test_stop_stops_an_instance_restarted_always(rig: Rig) -> None:
    # Before: 'stop' signalled ComfyUI's group and the supervisor restarted it within seconds.
    launched, port = start(rig, "--cpu", "--restart", "always")
    launched.wait_for("READY")
    result = rig.cli("stop", "--port", str(port))
    assert result.returncode == 0 and "will not restart it" in result.stdout, result.stdout + result.stderr
    assert launched.wait() == 0  # a stop asked for is never a failure
    assert launched.text.count("started pid") == 1 and port_is_free(port)


@pytest.mark.fake_only
def test_stop_that_ends_in_sigkill_is_not_restarted_on_failure(rig: Rig) -> None:
    launched, port = start(rig, "--cpu", "--restart", "on-failure", env={"FAKE_COMFYUI_IGNORE_SIGINT": "1"})
    launched.wait_for("READY")
    result = rig.cli("stop", "--port", str(port), "--timeout", "0.5")
    assert result.returncode == 0 and "SIGKILL after the grace period" in result.stdout
    assert launched.wait() == 0
    assert launched.text.count("started pid") == 1 and port_is_free(port)


@pytest.mark.fake_only
def test_workers_one_gpu_each_status_and_stop(rig: Rig) -> None:
    cli = rig.cli
    base = free_port()
    launched, _ = start(rig, "--workers", port=base)
    launched.wait_for("READY", count=2)
    ports = sorted(int(m) for m in re.findall(r"READY http://127\.0\.0\.1:(\d+)", launched.text))
    seen = {get(f"http://127.0.0.1:{p}/system_stats")["system"]["fake_cuda_visible_devices"] for p in ports}
    assert seen == {"0", "1"}
    status = json.loads(cli("status", "--json").stdout)["instances"]
    assert sorted(i["port"] for i in status) == ports and all(i["ready"] for i in status)
    result = cli("stop", "--all")
    assert result.returncode == 0 and result.stdout.count("stopped pid") == 2
    assert launched.wait() == 0  # its children stopped on request: not a failure
    assert all(port_is_free(p) for p in ports)


@pytest.mark.fake_only
def test_manager_reboot_protocol(rig: Rig) -> None:
    launched, port = start(rig, "--cpu")
    launched.wait_for("READY")
    request = urllib.request.Request(f"http://127.0.0.1:{port}/manager/reboot", method="GET")
    with contextlib.suppress(OSError):  # the server exits while answering
        urllib.request.urlopen(request, timeout=5).read()
    launched.wait_for("restart requested by ComfyUI-Manager")
    launched.wait_for("READY", count=2)
    launched.interrupt()
    assert launched.wait() == 0


SAME_NAME = {"FAKE_COMFYUI_DEVICE_NAME": "NVIDIA GeForce RTX 3090"}  # the simulated GPUs' name


@pytest.mark.fake_only
def test_dual_mode_says_second_gpu_idle_without_multigpu(rig: Rig) -> None:
    launched, _ = start(rig, "--dual", env=SAME_NAME)
    launched.wait_for("No multi-GPU nodes: ComfyUI 0.3.76 has no native multi-GPU nodes")
    launched.wait_for("0.3.76's /system_stats lists only its default device")
    launched.interrupt()
    assert launched.wait() == 0


@pytest.mark.fake_only
def test_dual_mode_sees_multigpu_nodes(rig: Rig) -> None:
    launched, _ = start(rig, "--dual", env={"FAKE_COMFYUI_NODE_PACKS": "multigpu", **SAME_NAME})
    launched.wait_for("ComfyUI-MultiGPU is loaded")
    launched.interrupt()
    assert launched.wait() == 0


@pytest.mark.fake_only
def test_dual_mode_with_native_nodes_checks_the_torch_devices(rig: Rig) -> None:
    # As ComfyUI 0.23+ does: its own multi-GPU nodes, and /system_stats lists both GPUs.
    launched, _ = start(rig, "--dual", env={"FAKE_COMFYUI_NATIVE_MULTIGPU": "1", **SAME_NAME})
    launched.wait_for("has native multi-GPU nodes (MultiGPU CFG Split, Select Model Device")
    launched.wait_for("/system_stats lists the selected GPUs: cuda:0 NVIDIA GeForce RTX 3090, cuda:1 NVIDIA GeForce RTX 3090")
    launched.interrupt()
    assert launched.wait() == 0


@pytest.mark.fake_only
def test_dual_mode_warns_when_torch_sees_other_gpus(rig: Rig) -> None:
    # A machine whose CUDA knows fewer GPUs than NVML lists: CUDA cuts "0,1" at the first index it
    # lacks, so torch sees one GPU of the two. (--cuda-device, which did the same, is now refused.)
    env = {"FAKE_COMFYUI_NATIVE_MULTIGPU": "1", "FAKE_COMFYUI_GPU_COUNT": "1", **SAME_NAME}
    launched, _ = start(rig, "--dual", env=env)
    launched.wait_for("torch sees 1 GPU (cuda:0 NVIDIA GeForce RTX 3090), but comfyrig selected 2")
    launched.interrupt()
    assert launched.wait() == 0


def test_cpu_mode_ready_and_clean_stop(rig: Rig) -> None:
    launched, port = start(rig, "--cpu")
    launched.wait_for("READY")
    pid = int(launched.text.split("started pid ")[1].split(",")[0])
    stats = get(f"http://127.0.0.1:{port}/system_stats")
    assert stats["devices"][0]["type"] == "cpu"
    assert "--cpu" in stats["system"]["argv"]
    launched.interrupt()
    assert launched.wait() == 0
    wait_until(lambda: pid_gone(pid), 10, "ComfyUI to be gone")
    assert port_is_free(port)


IMAGE_PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 123}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "gateway"}},
}


def post(url: str, body: object) -> dict:  # type: ignore[type-arg]
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_workers_behind_one_url(rig: Rig) -> None:
    """``--workers`` serves one ComfyUI URL on --port, the workers on loopback ports after it;
    a prompt sent there runs on a worker and its output is served back through the same URL."""
    cli = rig.cli
    base = free_port()
    # A real ComfyUI needs a GPU unless told --cpu (the GPUs here are simulated).
    launched, _ = start(rig, "--workers", *(["--", "--cpu"] if rig.real else []), port=base)
    launched.wait_for("READY", count=2)
    launched.wait_for("is routable", count=2)
    assert f"gateway: one ComfyUI URL http://127.0.0.1:{base}" in launched.text
    gateway = f"http://127.0.0.1:{base}"
    ports = sorted(int(m) for m in re.findall(r"READY http://127\.0\.0\.1:(\d+)", launched.text))
    assert base not in ports and all(p > base for p in ports)
    stats = get(f"{gateway}/system_stats")
    assert len(stats["devices"]) == 2  # both workers' devices, through one URL
    prompt_id = post(f"{gateway}/prompt", {"prompt": IMAGE_PROMPT})["prompt_id"]
    entry = wait_until(lambda: get(f"{gateway}/history/{prompt_id}").get(prompt_id), rig.ready_timeout, "the prompt to finish")
    image = entry["outputs"]["3"]["images"][0]
    query = urllib.parse.urlencode(image)
    with urllib.request.urlopen(f"{gateway}/view?{query}", timeout=10) as response:
        assert response.read().startswith(b"\x89PNG")
    fleet = get(f"{gateway}/comfyrig/fleet")
    assert [b["gpus"] for b in fleet["backends"]] == [[0], [1]] and sum(b["completed"] for b in fleet["backends"]) == 1
    assert [g["index"] for g in fleet["gpus"]] == [0, 1]  # the (simulated) GPUs, as NVML would give them
    with urllib.request.urlopen(f"{gateway}/comfyrig/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert 'comfyrig_gpu_memory_total_bytes{backend="worker-1",gpu="1",name="NVIDIA GeForce RTX 3090"}' in metrics
    assert 'comfyrig_gateway_backend_prompts_total{backend="worker-0",outcome="failed"} 0.0' in metrics
    status = json.loads(cli("status", "--json").stdout)
    assert sorted(i["port"] for i in status["instances"]) == ports
    assert all(i["gateway"] == gateway for i in status["instances"])
    assert status["gateways"] == [{"url": gateway, "answering": True, "routable": 2, "workers": 2, "queue_remaining": 0,
                                   "clients": 0, "prompts_routed": 1}]
    stopped = cli("stop", "--port", str(base))  # the gateway's port: every worker behind it
    assert stopped.returncode == 0 and stopped.stdout.count("stopped pid") == 2
    assert launched.wait() == 0
    assert port_is_free(base) and all(port_is_free(p) for p in ports)


def test_no_interpreter_for_the_checkout_is_refused(cli: Cli, tmp_path: Path) -> None:
    # Before: ComfyUI was started with comfyrig's own interpreter (no torch), without a word.
    from comfyrig.config.interpreter import has_torch

    if has_torch(Path(sys.prefix)):
        pytest.skip("comfyrig's own environment has torch here, so it is ComfyUI's too")
    cli.env.pop("VIRTUAL_ENV", None)
    cli.env.pop("CONDA_PREFIX", None)
    cli.gpus(1)
    for args in (["launch", "--cpu"], ["launch", "--cpu", "--dry-run", "--json"], ["launch", "--workers"]):
        result = cli(*args, "--comfyui-dir", str(FAKE_DIR), "--port", str(free_port()))
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stdout + result.stderr
        said = " ".join((result.stdout + result.stderr).split())
        assert "No Python environment for ComfyUI was found" in said and "--python PATH or COMFYUI_PYTHON=PATH" in said
        assert "started pid" not in said


@pytest.mark.fake_only
@pytest.mark.parametrize("how", ["after --", "COMFYUI_ARGS"])
def test_a_port_and_listen_in_comfyuis_flags_are_taken_over(rig: Rig, how: str) -> None:
    # Before: two --port flags, ComfyUI bound the last one and comfyrig waited 300 s on the first;
    # a --listen there exposed ComfyUI while the dashboard said 127.0.0.1.
    mine, theirs = free_port(), free_port()
    flags = ["--port", str(theirs), "--listen"]
    args, env = (["--cpu", "--", *flags], None) if how == "after --" else (["--cpu"], {"COMFYUI_ARGS": " ".join(flags)})
    cli = rig.cli
    argv = ["launch", "--plain", "--comfyui-dir", rig.comfy_dir, "--python", rig.python, "--log-dir", str(cli.cwd / "logs"), *args]
    launched = Launched(argv, {**cli.env, **(env or {})}, cli.cwd)
    rig.started.append(launched)
    launched.wait_for("READY")
    said = " ".join(launched.text.split())
    assert f"--port {theirs} in ComfyUI's flags is taken as comfyrig's --port" in said
    assert "ComfyUI will listen on 0.0.0.0,::: it has no authentication" in said
    assert f"READY http://127.0.0.1:{theirs} (listening on 0.0.0.0,::" in said
    stats = get(f"http://127.0.0.1:{theirs}/system_stats")
    assert stats["system"]["argv"].count("--port") == 1 and stats["system"]["argv"].count("--listen") == 1
    assert port_is_free(mine)
    launched.interrupt()
    assert launched.wait() == 0


def test_owned_flags_given_twice_are_refused_before_anything_starts(rig: Rig) -> None:
    for extra, needle in ((["--port", "1"], "--port is given twice with different values"),
                          (["--cuda-device", "0"], "--cuda-device 0 in ComfyUI's flags after --")):
        launched, _ = start(rig, "--cpu", "--", *extra)
        assert launched.wait() == 2
        said = " ".join(launched.text.split())
        assert needle in said and "Traceback" not in said and "started pid" not in said


@pytest.mark.fake_only
def test_worker_temp_survives_another_comfyui_from_the_same_checkout(rig: Rig, tmp_path: Path) -> None:
    # Before: worker temp folders sat in the checkout's temp/, which every ComfyUI empties at start
    # (a worker's preview went from 200 to 404); and --base-directory was ignored for them.
    import subprocess

    base = tmp_path / "base"
    launched, _ = start(rig, "--workers", "--", "--base-directory", str(base))
    launched.wait_for("READY", count=2)
    ports = sorted(int(m) for m in re.findall(r"READY http://127\.0\.0\.1:(\d+)", launched.text))
    for n, port in enumerate(ports):
        argv = get(f"http://127.0.0.1:{port}/system_stats")["system"]["argv"]
        assert argv[argv.index("--output-directory") + 1] == str(base / "output" / f"gpu{n}")
        folder = base / "comfyrig-temp" / f"gpu{n}" / "temp"  # ComfyUI adds the last "temp"
        wait_until(folder.is_dir, 10, f"{folder} to exist")
        (folder / "preview.png").write_bytes(b"png")
    other_port = free_port()
    other = subprocess.Popen([python(), "main.py", "--cpu", "--port", str(other_port), "--base-directory", str(base)],
                             cwd=FAKE_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: not port_is_free(other_port), 20, "the other ComfyUI to be up (its temp emptied)")
    finally:
        os.killpg(other.pid, 9)
        other.wait(timeout=10)
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/view?filename=preview.png&type=temp", timeout=5) as answer:
            assert answer.status == 200
    launched.interrupt()
    assert launched.wait() == 0


@pytest.mark.fake_only
def test_a_silent_exit_is_reported_by_its_code_not_an_earlier_warning(rig: Rig) -> None:
    launched, _ = start(rig, "--cpu", env={"FAKE_COMFYUI_EXIT_DURING_IMPORT": "3"})
    assert launched.wait() == 3
    said = " ".join(launched.text.split())
    assert "likely reason: ComfyUI ended with code 3 without an error message: a SystemExit" in said
    assert "likely reason: a Python package is missing" not in said


@pytest.mark.fake_only
def test_workers_and_a_server_started_elsewhere_behind_one_url(rig: Rig, tmp_path: Path) -> None:
    """--url puts a ComfyUI comfyrig did not start behind the same gateway as its workers."""
    from ..batch.e2e import harness

    with harness.running_fake(args=["--cpu", "--output-directory", str(tmp_path / "elsewhere")]) as other:
        base = free_port()
        launched, _ = start(rig, "--workers", "--url", other.url, port=base)
        launched.wait_for("is routable", count=3)
        gateway = f"http://127.0.0.1:{base}"
        fleet = get(f"{gateway}/comfyrig/fleet")
        assert [b["name"] for b in fleet["backends"]] == ["worker-0", "worker-1", "url-0"]
        assert fleet["backends"][2]["url"] == other.url and fleet["backends"][2]["group"] == "url-0"
        ids = [post(f"{gateway}/prompt", {"prompt": {**IMAGE_PROMPT, "1": {**IMAGE_PROMPT["1"], "inputs": {
            **IMAGE_PROMPT["1"]["inputs"], "color": n}}}})["prompt_id"] for n in range(6)]
        wait_until(lambda: all(get(f"{gateway}/history/{p}").get(p) for p in ids), 30, "all six prompts")
        assert rig.cli("stop", "--port", str(base)).returncode == 0
        assert launched.wait() == 0
        assert other.is_ready()  # a server comfyrig did not start is not stopped by it
