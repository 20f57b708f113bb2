"""Self-test of the fake ComfyUI (tests/fake_comfyui): started as a real process on a free port.

Each behaviour checked here mirrors real ComfyUI 0.3.76; tests/fake_comfyui/README.md names the
real file it comes from. Waits poll HTTP, the websocket or the process with a deadline.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect

# One shared module fixture (an install, a server): keep the module on one xdist worker.
pytestmark = [pytest.mark.xdist_group("fake-selftest"), pytest.mark.e2e]

_HARNESS_PATH = Path(__file__).resolve().parents[1] / "fake_comfyui" / "harness.py"


def _load_harness():
    # tests/ is not a package; load the harness by path under a name of its own.
    spec = importlib.util.spec_from_file_location("fake_comfyui_harness", _HARNESS_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


harness = sys.modules.get("fake_comfyui_harness") or _load_harness()
running_fake, start_fake, wait_until = harness.running_fake, harness.start_fake, harness.wait_until

STARTUP_SEQUENCE = [
    "Checkpoint files will always be loaded safely.",
    "Total VRAM ",
    "pytorch version: 2.11.0+cu130",
    "Set vram state to: NORMAL_VRAM",
    "Device: cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync",
    "Python version: ",
    "ComfyUI version: 0.3.76",
    "ComfyUI frontend version: 1.33.13",
    "Starting server",
    "To see the GUI go to: http://127.0.0.1:",
]


def image_prompt(prefix: str, width: int = 16, height: int = 8, color: int = 0x102030, sleep: float = 0.0,
                 steps: int = 1, fail: bool = False) -> dict:
    """EmptyImage -> ImageBlur -> FakeSleep -> ImageInvert -> SaveImage."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": 1, "color": color}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 2, "sigma": 1.5}},
        "3": {"class_type": "FakeSleep", "inputs": {"seconds": sleep, "steps": steps, "any": ["2", 0], "fail": fail}},
        "4": {"class_type": "ImageInvert", "inputs": {"image": ["3", 0]}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": prefix}},
    }


def small_prompt(prefix: str) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}}


def history_entry(fake, prompt_id: str, timeout: float = 10.0) -> dict:
    return wait_until(lambda: fake.get_json(f"/history/{prompt_id}").get(prompt_id), timeout, f"history of {prompt_id}")


def ws_events(ws, until, timeout: float = 10.0) -> list:
    """(type, data) of every JSON event up to and including the first for which until(type, data)."""
    events = []
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        events.append((message["type"], message["data"]))
        if until(message["type"], message["data"]):
            return events


def job_done(prompt_id: str):
    return lambda kind, data: kind == "executing" and data["node"] is None and data.get("prompt_id") == prompt_id


def process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("output")


@pytest.fixture(scope="module")
def fake(output_dir):
    with running_fake(args=["--output-directory", str(output_dir)], env={"CUDA_VISIBLE_DEVICES": "3,1"}) as server:
        yield server


# --- start-up ---------------------------------------------------------------------------------

def test_startup_lines_come_in_comfyui_order_on_stderr(fake):
    lines = fake.stderr_lines
    positions = [next(i for i, line in enumerate(lines) if line.startswith(expected)) for expected in STARTUP_SEQUENCE]
    assert positions == sorted(positions)
    assert lines[positions[-1]] == f"To see the GUI go to: http://127.0.0.1:{fake.port}"
    assert fake.stdout_lines == []


def test_cpu_and_log_stdout_move_lines_to_stdout():
    with running_fake(args=["--cpu", "--log-stdout"], env={"FAKE_COMFYUI_DEVICE_NAME": "Ignored GPU"}) as fake:
        assert "Device: cpu" in fake.stdout_lines
        assert "Set vram state to: DISABLED" in fake.stdout_lines
        assert fake.stderr_lines == []
        device = fake.get_json("/system_stats")["devices"][0]
        assert (device["name"], device["type"], device["index"]) == ("cpu", "cpu", None)


def test_system_stats_has_the_real_shape_plus_what_the_child_saw():
    env = {"CUDA_VISIBLE_DEVICES": "2,0", "FAKE_COMFYUI_DEVICE_NAME": "NVIDIA H200", "FAKE_COMFYUI_VRAM_MB": "143771"}
    with running_fake(env=env, args=["--disable-cuda-malloc"]) as fake:
        stats = fake.get_json("/api/system_stats")
        assert set(stats) == {"system", "devices"}
        assert {"os", "ram_total", "ram_free", "comfyui_version", "required_frontend_version", "python_version",
                "pytorch_version", "embedded_python", "argv"} <= set(stats["system"])
        assert stats["system"]["comfyui_version"] == "0.3.76"
        assert stats["system"]["argv"][:5] == ["main.py", "--listen", "127.0.0.1", "--port", str(fake.port)]
        assert stats["system"]["fake_cuda_visible_devices"] == "2,0"
        assert stats["system"]["fake_visible_gpu_count"] == 2
        [device] = stats["devices"]
        assert set(device) == {"name", "type", "index", "vram_total", "vram_free", "torch_vram_total", "torch_vram_free"}
        assert (device["name"], device["type"], device["index"]) == ("cuda:0 NVIDIA H200 : native", "cuda", 0)
        assert device["vram_total"] == 143771 * 1024 * 1024
        assert any(line.startswith("Total VRAM 143771 MB, total RAM ") for line in fake.stderr_lines)


def test_cuda_device_flag_rewrites_cuda_visible_devices():
    with running_fake(args=["--cuda-device", "1"], env={"CUDA_VISIBLE_DEVICES": "0,1"}) as fake:
        system = fake.get_json("/system_stats")["system"]
        assert (system["fake_cuda_visible_devices"], system["fake_effective_cuda_visible_devices"]) == ("0,1", "1")
        assert fake.stderr_lines.index("Set cuda device to: 1") < fake.stderr_lines.index(
            "Checkpoint files will always be loaded safely.")


def test_unknown_flag_exits_2_like_argparse():
    fake = start_fake(args=["--medvram"])
    assert fake.wait_exit() == 2
    assert "main.py: error: unrecognized arguments: --medvram" in fake.stderr_lines


def test_no_visible_gpu_crashes_at_start_like_torch():
    fake = start_fake(env={"CUDA_VISIBLE_DEVICES": ""})
    assert fake.wait_exit() == 1
    assert fake.stderr_lines[-1] == "RuntimeError: No CUDA GPUs are available"


# --- prompts ----------------------------------------------------------------------------------

def test_prompt_runs_and_view_serves_a_real_png(fake, output_dir):
    answer = fake.post_json("/prompt", {"prompt": image_prompt("happy/img"), "prompt_id": "happy-1"})
    assert answer["prompt_id"] == "happy-1" and answer["node_errors"] == {} and isinstance(answer["number"], int)

    entry = history_entry(fake, "happy-1")
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert entry["prompt"][1] == "happy-1" and entry["prompt"][4] == ["5"]
    [image] = entry["outputs"]["5"]["images"]
    assert image == {"filename": "img_00001_.png", "subfolder": "happy", "type": "output"}

    status, body = fake.request("GET", "/view?filename=img_00001_.png&subfolder=happy&type=output")
    assert status == 200
    width, height, rgb, text = harness.decode_png(body)
    assert (width, height) == (16, 8)
    assert rgb == bytes((0xEF, 0xDF, 0xCF)) * (16 * 8)  # inverted 0x102030; a uniform blur changes nothing
    assert json.loads(text["prompt"])["5"]["class_type"] == "SaveImage"
    assert (output_dir / "happy" / "img_00001_.png").read_bytes() == body


def test_identical_prompt_is_cached_and_saves_nothing_new(fake, output_dir):
    prompt = small_prompt("cache/img")
    fake.post_json("/prompt", {"prompt": prompt, "prompt_id": "cache-1"})
    history_entry(fake, "cache-1")
    with connect(f"ws://127.0.0.1:{fake.port}/ws?clientId=cache-client") as ws:
        fake.post_json("/prompt", {"prompt": prompt, "prompt_id": "cache-2", "client_id": "cache-client"})
        events = ws_events(ws, job_done("cache-2"))
    cached = next(data for kind, data in events if kind == "execution_cached")
    assert cached["nodes"] == ["1", "2"]
    assert not [data for kind, data in events if kind == "executing" and data["node"] is not None]
    executed = next(data for kind, data in events if kind == "executed")
    assert executed["output"]["images"][0]["filename"] == "img_00001_.png"
    assert sorted(os.listdir(output_dir / "cache")) == ["img_00001_.png"]


def test_websocket_sequence_for_one_job(fake):
    with connect(f"ws://127.0.0.1:{fake.port}/ws?clientId=seq-client") as ws:
        kind, data = ws_events(ws, lambda kind, data: True)[0]
        assert kind == "status" and data == {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "seq-client"}
        # Inputs no other test uses: the shared server caches the last outputs as ComfyUI does, so
        # nodes another test just ran with the same inputs would come back "cached".
        prompt = image_prompt("seq/img", color=0x5E0001, sleep=0.03, steps=3)
        fake.post_json("/prompt", {"prompt": prompt, "prompt_id": "seq-1",
                                   "client_id": "seq-client"})
        events = ws_events(ws, job_done("seq-1"))

    def describe(kind, data):
        if kind in ("executing", "executed"):
            return f"{kind} {data['node']}"
        if kind == "progress":
            return f"progress {data['value']}/{data['max']} node {data['node']}"
        if kind == "status":
            return f"status {data['status']['exec_info']['queue_remaining']}"
        return kind

    sequence = [describe(kind, data) for kind, data in events if kind != "progress_state"]
    assert sequence == [
        "status 1", "status 1", "execution_start", "execution_cached",
        "executing 1", "executing 2", "executing 3",
        "progress 1/3 node 3", "progress 2/3 node 3", "progress 3/3 node 3",
        "executing 4", "executing 5", "executed 5", "execution_success", "status 0", "executing None",
    ]
    for kind, data in events:
        if kind not in ("status",):
            assert data["prompt_id"] == "seq-1"
    start = next(data for kind, data in events if kind == "execution_start")
    assert isinstance(start["timestamp"], int)
    assert any(kind == "progress_state" and data["nodes"].get("3", {}).get("state") == "running" for kind, data in events)


def test_history_item_and_queue_item_shapes(fake):
    """execution.py PromptQueue.task_done / PromptExecutor.add_message and server.py /queue of 0.3.76 (same in 0.24)."""
    with connect(f"ws://127.0.0.1:{fake.port}/ws?clientId=shape-client") as ws:
        fake.post_json("/prompt", {"prompt": small_prompt("shape/a"), "prompt_id": "shape-1", "client_id": "shape-client",
                                   "extra_data": {"extra_pnginfo": {"workflow": {"id": "w"}}}})
        ws_events(ws, job_done("shape-1"))
        # Without a client_id no "executing" ends the job (main.py prompt_worker); other sockets only
        # get the broadcasts (status, and progress_state as ComfyUI sends it to everyone then).
        fake.post_json("/prompt", {"prompt": small_prompt("shape/b"), "prompt_id": "shape-2"})
        history_entry(fake, "shape-2")
        with pytest.raises(TimeoutError):
            ws_events(ws, lambda kind, data: kind not in ("status", "progress_state"), timeout=0.3)
    entry = history_entry(fake, "shape-1")
    assert set(entry) == {"prompt", "outputs", "status", "meta"}
    number, prompt_id, prompt, extra_data, outputs = entry["prompt"]
    assert isinstance(number, int)
    assert (prompt_id, outputs, prompt["2"]["class_type"]) == ("shape-1", ["2"], "SaveImage")
    assert extra_data["client_id"] == "shape-client" and isinstance(extra_data["create_time"], int)
    assert entry["meta"] == {"2": {"node_id": "2", "display_node": "2", "parent_node": None, "real_node_id": "2"}}
    status = entry["status"]
    assert (status["status_str"], status["completed"]) == ("success", True)
    assert [kind for kind, _ in status["messages"]] == ["execution_start", "execution_cached", "execution_success"]
    assert all(isinstance(data["timestamp"], int) and data["prompt_id"] == "shape-1" for _, data in status["messages"])
    assert "client_id" not in history_entry(fake, "shape-2")["prompt"][3]


def test_node_failure_sends_execution_error(fake):
    with connect(f"ws://127.0.0.1:{fake.port}/ws?clientId=err-client") as ws:
        fake.post_json("/prompt", {"prompt": image_prompt("err/img", color=0x010203, fail=True), "prompt_id": "err-1",
                                   "client_id": "err-client"})
        events = ws_events(ws, job_done("err-1"))
    error = next(data for kind, data in events if kind == "execution_error")
    assert {"prompt_id", "node_id", "node_type", "executed", "exception_message", "exception_type", "traceback",
            "current_inputs", "current_outputs", "timestamp"} == set(error)
    assert (error["node_id"], error["node_type"], error["exception_type"]) == ("3", "FakeSleep", "RuntimeError")
    assert error["exception_message"] == "FakeSleep was asked to fail\n"
    assert sorted(error["executed"]) == ["1", "2"]
    assert "execution_success" not in [kind for kind, _ in events]
    status = history_entry(fake, "err-1")["status"]
    assert (status["status_str"], status["completed"]) == ("error", False)


def test_interrupt_stops_the_running_job(fake):
    with connect(f"ws://127.0.0.1:{fake.port}/ws?clientId=int-client") as ws:
        fake.post_json("/prompt", {"prompt": image_prompt("int/img", sleep=30, steps=3000), "prompt_id": "int-1",
                                   "client_id": "int-client"})
        ws_events(ws, lambda kind, data: kind == "progress")
        assert fake.get_json("/prompt") == {"exec_info": {"queue_remaining": 1}}
        fake.post_json("/interrupt", {"prompt_id": "int-1"})
        events = ws_events(ws, job_done("int-1"))
    interrupted = next(data for kind, data in events if kind == "execution_interrupted")
    assert (interrupted["node_id"], interrupted["node_type"]) == ("3", "FakeSleep")
    assert history_entry(fake, "int-1")["status"]["status_str"] == "error"


def test_queue_is_fifo_and_can_be_edited(fake):
    with connect(f"ws://127.0.0.1:{fake.port}/ws?clientId=fifo-client") as ws:
        fake.post_json("/prompt", {"prompt": image_prompt("fifo/block", sleep=30, steps=3000),
                                   "prompt_id": "fifo-block", "client_id": "fifo-client"})
        ws_events(ws, lambda kind, data: kind == "progress")  # running, so an interrupt now reaches it
    numbers = [fake.post_json("/prompt", {"prompt": small_prompt(f"fifo/{n}"), "prompt_id": f"fifo-{n}"})["number"]
               for n in range(3)]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3
    queue = fake.get_json("/queue")
    assert [item[1] for item in queue["queue_running"]] == ["fifo-block"]
    assert [item[1] for item in queue["queue_pending"]] == ["fifo-0", "fifo-1", "fifo-2"]
    assert all(len(item) == 5 for item in queue["queue_pending"])

    fake.post_json("/queue", {"delete": ["fifo-1"]})
    assert [item[1] for item in fake.get_json("/queue")["queue_pending"]] == ["fifo-0", "fifo-2"]
    fake.post_json("/interrupt", {})
    history_entry(fake, "fifo-2")
    order = [key for key in fake.get_json("/history") if key.startswith("fifo-")]
    assert order == ["fifo-block", "fifo-0", "fifo-2"]
    assert fake.get_json("/history/fifo-1") == {}


@pytest.mark.parametrize("body, kind", [
    ({"prompt": {"1": {"class_type": "KSamplerDoesNotExist", "inputs": {}}}}, "invalid_prompt"),
    ({"prompt": {}}, "prompt_no_outputs"),
    ({"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1,
                                                              "color": 0}}}}, "prompt_no_outputs"),
    ({"client_id": "x"}, "no_prompt"),
])
def test_invalid_prompts_get_400_with_the_real_error_type(fake, body, kind):
    status, raw = fake.request("POST", "/prompt", body)
    assert status == 400
    answer = json.loads(raw)
    assert answer["error"]["type"] == kind and answer["node_errors"] == {}
    assert set(answer["error"]) == {"type", "message", "details", "extra_info"}


def test_missing_required_input_reports_node_errors(fake):
    prompt = small_prompt("bad/img")
    del prompt["1"]["inputs"]["width"]
    status, raw = fake.request("POST", "/api/prompt", {"prompt": prompt})
    assert status == 400
    answer = json.loads(raw)
    assert answer["error"]["type"] == "prompt_outputs_failed_validation"
    assert answer["node_errors"] == {"1": {
        "errors": [{"type": "required_input_missing", "message": "Required input is missing", "details": "width",
                    "extra_info": {"input_name": "width"}}],
        "dependent_outputs": ["2"],
        "class_type": "EmptyImage",
    }}


@pytest.mark.parametrize("query, status", [
    ("filename=nothing_here.png&type=output", 404),
    ("filename=..%2Fsecret.png", 400),
    ("filename=x.png&type=elsewhere", 400),
    ("filename=x.png&subfolder=..%2F..", 403),
    ("", 404),
])
def test_view_refuses_like_comfyui(fake, query, status):
    assert fake.request("GET", f"/view?{query}")[0] == status


def test_object_info_has_the_real_node_shape(fake):
    info = fake.get_json("/object_info")
    assert {"EmptyImage", "ImageBlur", "ImageInvert", "SaveImage", "FakeSleep", "CheckpointLoaderSimple"} <= set(info)
    assert not [name for name in info if name.endswith("MultiGPU")]
    save = fake.get_json("/api/object_info/SaveImage")["SaveImage"]
    assert save["input_order"] == {"required": ["images", "filename_prefix"], "hidden": ["prompt", "extra_pnginfo"]}
    assert (save["output"], save["output_node"], save["display_name"], save["category"]) == ([], True, "Save Image", "image")
    assert {"input", "input_order", "output", "output_is_list", "output_name", "name", "display_name", "description",
            "python_module", "category", "output_node"} <= set(save)
    assert fake.get_json("/object_info/NoSuchNode") == {}


def test_free_and_history_routes_answer(fake):
    assert fake.post_json("/free", {"unload_models": True, "free_memory": True}) is None
    fake.post_json("/prompt", {"prompt": small_prompt("hist/img"), "prompt_id": "hist-1"})
    history_entry(fake, "hist-1")
    fake.post_json("/history", {"delete": ["hist-1"]})
    assert fake.get_json("/history/hist-1") == {}


def test_sigint_stops_with_exit_0(tmp_path):
    with running_fake(args=["--output-directory", str(tmp_path)]) as fake:
        os.kill(fake.proc.pid, signal.SIGINT)
        assert fake.wait_exit() == 0
        assert fake.stderr_lines[-1] == "Stopped server"


# --- fault knobs ------------------------------------------------------------------------------

def test_start_delay_postpones_binding():
    started = time.monotonic()
    with running_fake(env={"FAKE_COMFYUI_START_DELAY": "0.6"}) as fake:
        assert time.monotonic() - started >= 0.6
        assert fake.is_ready()


def test_crash_at_start_exits_1_before_binding():
    fake = start_fake(env={"FAKE_COMFYUI_CRASH_AT_START": "1"})
    assert fake.wait_exit() == 1
    assert "Traceback (most recent call last):" in fake.stderr_lines
    assert fake.stderr_lines[-1].startswith("RuntimeError: CUDA error")
    assert not [line for line in fake.log_lines if line.startswith("Starting server")]


def test_crash_on_job_kills_the_process_during_that_job(tmp_path):
    env = {"FAKE_COMFYUI_CRASH_ON_JOB": "2"}
    with running_fake(env=env, args=["--output-directory", str(tmp_path)]) as fake:
        fake.post_json("/prompt", {"prompt": small_prompt("a"), "prompt_id": "job-1"})
        history_entry(fake, "job-1")
        assert fake.post_json("/prompt", {"prompt": small_prompt("b"), "prompt_id": "job-2"})["prompt_id"] == "job-2"
        assert fake.wait_exit() == 1
    assert os.listdir(tmp_path) == ["a_00001_.png"]


def test_hang_on_job_sends_no_progress_until_interrupted(tmp_path):
    with running_fake(env={"FAKE_COMFYUI_HANG_ON_JOB": "1"}, args=["--output-directory", str(tmp_path)]) as fake:
        with connect(f"ws://127.0.0.1:{fake.port}/ws?clientId=hang") as ws:
            fake.post_json("/prompt", {"prompt": image_prompt("h", steps=5), "prompt_id": "hang-1",
                                       "client_id": "hang"})
            ws_events(ws, lambda kind, data: kind == "executing" and data["node"] == "1")
            with pytest.raises(TimeoutError):
                ws_events(ws, lambda kind, data: kind != "progress_state", timeout=0.3)
            fake.post_json("/interrupt", {})
            events = ws_events(ws, job_done("hang-1"))
        assert [kind for kind, _ in events if kind not in ("progress_state", "status")] == [
            "execution_interrupted", "executing"]
        assert "progress" not in [kind for kind, _ in events]


def test_job_seconds_lengthens_every_job(tmp_path):
    with running_fake(env={"FAKE_COMFYUI_JOB_SECONDS": "0.4"}, args=["--output-directory", str(tmp_path)]) as fake:
        fake.post_json("/prompt", {"prompt": small_prompt("slow"), "prompt_id": "slow-1"})
        messages = dict(history_entry(fake, "slow-1")["status"]["messages"])
        assert messages["execution_success"]["timestamp"] - messages["execution_start"]["timestamp"] >= 400


def test_multigpu_node_pack_lists_its_loaders_with_visible_devices():
    env = {"FAKE_COMFYUI_NODE_PACKS": "multigpu", "CUDA_VISIBLE_DEVICES": "0,1"}
    with running_fake(env=env) as fake:
        info = fake.get_json("/object_info")
        for name in ("UNETLoaderMultiGPU", "CheckpointLoaderSimpleMultiGPU", "CheckpointLoaderSimpleDisTorch2MultiGPU",
                     "UNETLoaderDisTorch2MultiGPU", "CLIPLoaderMultiGPU"):
            assert info[name]["python_module"] == "custom_nodes.ComfyUI-MultiGPU"
        distorch = info["CheckpointLoaderSimpleDisTorch2MultiGPU"]
        assert distorch["input_order"]["optional"] == ["compute_device", "virtual_vram_gb", "donor_device",
                                                       "expert_mode_allocations", "eject_models"]
        assert distorch["input"]["optional"]["compute_device"] == [["cpu", "cuda:0", "cuda:1"], {"default": "cuda:0"}]
        assert info["CLIPLoaderMultiGPU"]["input"]["optional"]["device"][0] == ["cpu", "cuda:0", "cuda:1"]
        assert any(line.endswith("seconds: " + os.path.join(harness.FAKE_DIR, "custom_nodes", "ComfyUI-MultiGPU"))
                   for line in fake.stderr_lines)


def test_native_multigpu_nodes_and_every_device_in_system_stats():
    # FAKE_COMFYUI_NATIVE_MULTIGPU=1 imitates ComfyUI 0.23+ (comfy_extras/nodes_multigpu.py, server.py).
    with running_fake(env={"FAKE_COMFYUI_NATIVE_MULTIGPU": "1", "CUDA_VISIBLE_DEVICES": "0,1"}) as fake:
        devices = fake.get_json("/system_stats")["devices"]
        assert [(d["type"], d["index"]) for d in devices] == [("cuda", 0), ("cuda", 1)]
        assert devices[1]["name"] == "cuda:1 NVIDIA H100 80GB HBM3 : cudaMallocAsync"
        info = fake.get_json("/object_info")
        assert info["MultiGPU_WorkUnits"]["display_name"] == "MultiGPU CFG Split"
        assert info["MultiGPU_WorkUnits"]["input"]["required"]["max_gpus"] == ["INT", {"default": 2, "min": 1, "step": 1}]
        assert info["SelectModelDevice"]["input"]["required"]["device"] == [
            "COMBO", {"multiselect": False, "options": ["default", "cpu", "gpu:0", "gpu:1"]}]
        assert info["SelectVAEDevice"]["input"]["required"]["device"][1]["options"] == ["default", "gpu:0", "gpu:1"]
        assert {info[n]["python_module"] for n in ("SelectCLIPDevice", "SelectModelDevice")} == {"comfy_extras.nodes_multigpu"}
        assert "MultiGPU_Options" not in info
    # Without the knob: 0.3.76, one device and no native nodes; on the CPU, 0.24 lists the cpu device only.
    with running_fake(env={"CUDA_VISIBLE_DEVICES": "0,1"}) as fake:
        assert len(fake.get_json("/system_stats")["devices"]) == 1
        assert "SelectModelDevice" not in fake.get_json("/object_info")
    with running_fake(env={"FAKE_COMFYUI_NATIVE_MULTIGPU": "1"}, args=["--cpu"]) as fake:
        assert [d["type"] for d in fake.get_json("/system_stats")["devices"]] == ["cpu"]
        options = fake.get_json("/object_info/SelectModelDevice")["SelectModelDevice"]["input"]["required"]["device"]
        assert options[1]["options"] == ["default", "cpu"]


def test_custom_nodes_are_listed_with_import_failures(tmp_path):
    (tmp_path / "custom_nodes" / "GoodPack").mkdir(parents=True)
    (tmp_path / "custom_nodes" / "GoodPack" / "__init__.py").write_text("")
    (tmp_path / "custom_nodes" / "BrokenPack").mkdir()
    with running_fake(args=["--base-directory", str(tmp_path)]) as fake:
        lines = fake.stderr_lines
        header = lines.index("Import times for custom nodes:")
        assert lines[header + 1:header + 3] == [
            f"   0.0 seconds (IMPORT FAILED): {tmp_path / 'custom_nodes' / 'BrokenPack'}",
            f"   0.0 seconds: {tmp_path / 'custom_nodes' / 'GoodPack'}",
        ]


def test_spawned_grandchild_shares_the_group_and_dies_with_it(tmp_path):
    pidfile = tmp_path / "child.pid"
    env = {"FAKE_COMFYUI_SPAWN_CHILD": "1", "FAKE_COMFYUI_CHILD_PIDFILE": str(pidfile)}
    with running_fake(env=env) as fake:
        child = int(pidfile.read_text())
        assert os.getpgid(child) == fake.proc.pid != child
    wait_until(lambda: process_gone(child), 5, "the grandchild to die with the group")


def test_ignore_sigint_needs_sigkill():
    with running_fake(env={"FAKE_COMFYUI_IGNORE_SIGINT": "1"}) as fake:
        os.kill(fake.proc.pid, signal.SIGINT)
        assert fake.is_ready() and fake.proc.poll() is None
        assert fake.stop(grace=0.3) == -signal.SIGKILL


def test_manager_reboot_with_comfy_cli_session_writes_marker_and_exits_0(tmp_path):
    session = tmp_path / "session-1234"
    with running_fake(env={"__COMFY_CLI_SESSION__": str(session)}) as fake:
        with pytest.raises(OSError):  # the Manager exits without answering
            fake.request("GET", "/manager/reboot")
        assert fake.wait_exit() == 0
        assert (tmp_path / "session-1234.reboot").exists()
        assert "Restarting..." in fake.stdout_lines


def test_manager_reboot_without_session_reexecs_in_place():
    with running_fake() as fake:
        pid = fake.get_json("/system_stats")["system"]["fake_pid"]
        with pytest.raises(OSError):
            fake.request("POST", "/api/manager/reboot")
        fake.wait_for_log("Restarting... [Legacy Mode]")
        wait_until(fake.is_ready, 10, "the re-executed fake")
        assert fake.get_json("/system_stats")["system"]["fake_pid"] == pid == fake.proc.pid
