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


WARNED = """Traceback (most recent call last):
  File "/c/nodes.py", line 2131, in load_custom_node
    module_spec.loader.exec_module(module)
  File "/c/custom_nodes/Audio/__init__.py", line 1, in <module>
    import torchaudio
ModuleNotFoundError: No module named 'torchaudio'

Cannot import /c/custom_nodes/Audio module for custom nodes: No module named 'torchaudio'
"""


def test_diagnosis_comes_from_what_ended_it() -> None:
    # A traceback logged as a warning, then ComfyUI went on: not the reason.
    assert diagnose(WARNED.splitlines()) is None
    assert "code 3" in (diagnose([*WARNED.splitlines(), "", "Import times for custom nodes:"], 3) or "")
    # A traceback that ends the log is the reason, even after a harmless one.
    fatal = [*WARNED.splitlines(), "Traceback (most recent call last):", '  File "/c/main.py", line 9, in <module>',
             "    start()", "RuntimeError: CUDA error: no kernel image is available for execution on the device",
             "CUDA kernel errors might be asynchronously reported at some other API call.",
             "For debugging consider passing CUDA_LAUNCH_BLOCKING=1"]
    assert diagnose(fatal, 1) == (
        "CUDA error: torch could not use the GPU (no kernel image is available for execution on the device); run 'comfyrig doctor'"
    )
    # Its header cut off by the tail, chained, or an exception comfyrig has no words for.
    assert "missing in ComfyUI's environment: sqlalchemy" in (diagnose(['  File "/c/app/db.py", line 3', "    import sqlalchemy",
                                                                     "ModuleNotFoundError: No module named 'sqlalchemy'"], 1) or "")
    assert diagnose(['  File "/c/main.py", line 1', "ValueError: bad config"], 1) == "ComfyUI stopped on an error: ValueError: bad config"
    assert diagnose(["SystemExit: custom node said no"], 1) == "ComfyUI stopped on an error: SystemExit: custom node said no"
    # A signal is said elsewhere (the exit report names it); nothing is made up here.
    assert diagnose(["Starting server"], -9) is None


def test_an_import_error_counts_the_node_as_failed() -> None:
    info = StartupInfo()
    for line in ["Cannot import /c/custom_nodes/Odd module for custom nodes: boom", "Import times for custom nodes:",
                 "   0.0 seconds: /c/custom_nodes/Odd", "   0.1 seconds: /c/custom_nodes/Good"]:
        info = parse_line(info, line)
    assert [(n.path, n.failed, n.error) for n in info.imports] == [("/c/custom_nodes/Odd", True, "boom"),
                                                                   ("/c/custom_nodes/Good", False, None)]
