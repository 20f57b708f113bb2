from comfyrig.comfy.logs import StartupInfo, diagnose, parse_line

STARTUP = """Checkpoint files will always be loaded safely.
Total VRAM 81559 MB, total RAM 257000 MB
pytorch version: 2.11.0+cu130
Set vram state to: NORMAL_VRAM
Device: cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync
Python version: 3.12.3 (main) [GCC 13.2.0]
ComfyUI version: 0.3.76
ComfyUI frontend version: 1.33.13

Import times for custom nodes:
   0.0 seconds: /c/custom_nodes/websocket_image_save.py
   2.5 seconds (IMPORT FAILED): /c/custom_nodes/ComfyUI-Broken

Starting server

To see the GUI go to: http://127.0.0.1:8188"""


def test_startup_lines() -> None:
    info = StartupInfo()
    for line in STARTUP.splitlines():
        info = parse_line(info, line)
    assert info.system["comfyui"] == "0.3.76" and info.system["frontend"] == "1.33.13"
    assert info.system["device"] == "cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync"
    assert info.system["memory"].startswith("Total VRAM 81559 MB")
    assert info.system["vram_state"] == "NORMAL_VRAM" and info.system["pytorch"] == "2.11.0+cu130"
    assert [(n.path, n.failed) for n in info.imports] == [
        ("/c/custom_nodes/websocket_image_save.py", False),
        ("/c/custom_nodes/ComfyUI-Broken", True),
    ]
    assert info.gui_urls == ("http://127.0.0.1:8188",)


def test_diagnose() -> None:
    assert "flag: --medvram" in (diagnose(["main.py: error: unrecognized arguments: --medvram"]) or "")
    assert "missing" in (diagnose(["ModuleNotFoundError: No module named 'sqlalchemy'"]) or "") and "sqlalchemy" in (diagnose(["ModuleNotFoundError: No module named 'sqlalchemy'"]) or "")
    assert "CUDA error" in (diagnose(["RuntimeError: Found no NVIDIA driver on your system."]) or "")
    assert "port" in (diagnose(["OSError: [Errno 98] address already in use"]) or "")
    assert diagnose(["all fine"]) is None
