"""The log reader against what real ComfyUI 0.3.64, 0.3.76 and 0.24.0 printed (fixtures/).

Each fixture is one real start on the CPU, stdout and stderr merged into a pipe as comfyrig
reads them (fixtures/record_logs.py): ``startup`` (a plain start), ``broken-node`` (a fresh
user directory and a custom node importing a package that does not exist), ``bad-flag``
(``--medvram``: argparse's exit 2), ``port-busy`` (another program holds the port) and, for
0.24.0, ``second-instance`` (a second ComfyUI of the same checkout while the first runs).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from comfyrig.comfy.logs import NodeImport, Problem, StartupInfo, diagnose, parse_line, plain, split_level
from comfyrig.config.modes import GpuRequest, select_gpus
from comfyrig.config.settings import CliOverrides, resolve_settings
from comfyrig.launch.events import FleetSnapshot, WorkerView
from comfyrig.launch.plan import plan_launch
from comfyrig.launch.supervisor import TAIL_LINES
from comfyrig.ui.dashboard import dashboard

from ..conftest import inventory_of, render

FIXTURES = Path(__file__).resolve().parent / "fixtures"
VERSIONS = ("0.3.64", "0.3.76", "0.24.0")
PYTHON = "3.11.7 (main, May  9 2026, 07:35:25) [GCC 12.2.0]"
MEMORY = "Total VRAM 24106 MB, total RAM 24106 MB"
CPU_FACTS = {"python": PYTHON, "device": "cpu", "memory": MEMORY, "vram_state": "DISABLED", "attention": "sub quadratic"}
SYSTEM = {
    "0.3.64": {**CPU_FACTS, "pytorch": "2.14.1+cu130", "comfyui": "0.3.64", "frontend": "1.27.10"},
    "0.3.76": {**CPU_FACTS, "pytorch": "2.14.1+cu130", "comfyui": "0.3.76", "frontend": "1.33.13"},
    "0.24.0": {
        **CPU_FACTS, "pytorch": "2.11.0+cu130", "comfyui": "0.24.0",
        "frontend": "1.45.15",  # from "comfyui-frontend-package version:", the old line is gone
        "comfy_kitchen": "0.2.10", "kitchen_backends": "eager", "comfy_aimdo": "0.4.9",
        "templates": "0.9.98", "embedded_docs": "0.5.3", "cache": "RAM pressure",
    },
}
TORCHAUDIO = "No module named 'torchaudio'"
NO_TORCHAUDIO = (  # the 0.3.x installs here have no torchaudio (none is built for their torch 2.14)
    NodeImport(0.0, "comfy_extras/nodes_audio.py", True, TORCHAUDIO),
    NodeImport(0.0, "comfy_extras/nodes_audio_encoder.py", True, TORCHAUDIO),
)
MISSING = "No module named 'comfyrig_fixture_missing_package'"
BROKEN = NodeImport(0.0, "/srv/comfy-base/custom_nodes/ComfyUI-Broken", True, MISSING)
WEBSOCKET = NodeImport(0.0, "/opt/ComfyUI/custom_nodes/websocket_image_save.py", False)


def lines(version: str, case: str) -> list[str]:
    # as launch/process.py reads them: bytes split at newlines, decoded, line ends dropped
    data = (FIXTURES / f"{version}-{case}.log").read_bytes()
    return [raw.decode("utf-8", errors="replace").rstrip("\r\n") for raw in data.splitlines(keepends=True)]


def parsed(version: str, case: str) -> StartupInfo:
    info = StartupInfo()
    for line in lines(version, case):
        info = parse_line(info, line)
    return info


def texts(info: StartupInfo) -> list[str]:
    return [p.text for p in info.problems]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", ["startup", "broken-node", "port-busy"])
def test_system_facts_of_every_version(version: str, case: str) -> None:
    assert dict(parsed(version, case).system) == SYSTEM[version]
    assert parsed(version, case).devices == ("cpu",)  # 0.3.76 logs its device twice: kept once


def test_the_tag_and_its_colours_are_gone_from_everything_read() -> None:
    assert "\x1b[32m[INFO]\x1b[0m" in (FIXTURES / "0.24.0-startup.log").read_text()
    for path in FIXTURES.glob("*.log"):
        version, case = path.stem.split("-", 1)
        info = parsed(version, case)
        read = [*info.system.values(), *texts(info), info.last_line, *(n.path for n in info.imports)]
        assert not [text for text in read if "\x1b" in text or text.startswith("[INFO]")], path.name


@pytest.mark.parametrize(
    ("version", "imports", "builtin_failures"),
    [
        ("0.3.64", (WEBSOCKET,), NO_TORCHAUDIO),
        # a stray folder without __init__.py in this fork's custom_nodes
        ("0.3.76", (WEBSOCKET, NodeImport(0.0, "/opt/ComfyUI/custom_nodes/ComfyUI-WanVideoWrapper", True,
                    "[Errno 2] No such file or directory: '/opt/ComfyUI/custom_nodes/ComfyUI-WanVideoWrapper/__init__.py'")),
         NO_TORCHAUDIO),
        ("0.24.0", (WEBSOCKET,), ()),  # tagged timing lines: "[INFO]    0.0 seconds: ..."
    ],
)
def test_custom_node_imports_and_failures(version: str, imports: tuple[NodeImport, ...], builtin_failures: tuple[NodeImport, ...]) -> None:
    info = parsed(version, "startup")
    assert info.imports == imports and info.builtin_failures == builtin_failures
    assert info.gui_urls and info.gui_urls[0].startswith("http://127.0.0.1:")


@pytest.mark.parametrize("version", VERSIONS)
def test_a_failed_pack_counts_as_failed_with_its_reason(version: str) -> None:
    info = parsed(version, "broken-node")
    assert info.imports == (BROKEN,)
    assert f"Cannot import /srv/comfy-base/custom_nodes/ComfyUI-Broken module for custom nodes: {MISSING}" in texts(info)
    assert f"ModuleNotFoundError: {MISSING}" in texts(info)
    # a traceback is kept by its exception: no header, no frames
    assert not [t for t in texts(info) if t.startswith(("Traceback", "File ", "import ", "^"))]


def test_0_24_problems_are_its_warning_and_error_records() -> None:
    assert parsed("0.24.0", "startup").problems == ()
    broken = parsed("0.24.0", "broken-node")
    # a first start: the settings notice (WARNING) and the traceback logged as a WARNING
    # (its bare continuation lines have the record's level); the migrations' bare
    # continuation lines ("Revision ID: ...") are INFO and no problem
    assert broken.problems == (
        Problem("WARNING", "****** User settings have been changed to be stored on the server instead of browser storage. ******"),
        Problem("WARNING", "****** For multi-user setups add the --multi-user CLI argument to enable multiple user profiles. ******"),
        Problem("WARNING", f"ModuleNotFoundError: {MISSING}"),
        Problem("WARNING", f"Cannot import /srv/comfy-base/custom_nodes/ComfyUI-Broken module for custom nodes: {MISSING}"),
    )
    (locked,) = parsed("0.24.0", "second-instance").problems
    assert locked.level == "ERROR" and "Could not acquire lock on database '/opt/ComfyUI/user/comfyui.db'" in locked.text


def test_0_3_problems_are_judged_by_their_words() -> None:
    info = parsed("0.3.76", "startup")
    assert info.problems[:2] == (
        Problem("WARNING", "torchaudio missing, ACE model will be broken"),  # twice in a row: kept once
        Problem("WARNING", "torchaudio missing, MMAudio VAE model will be broken"),
    )
    assert Problem("ERROR", f"ModuleNotFoundError: {TORCHAUDIO}") in info.problems
    assert texts(info)[-3:] == [
        "WARNING: some comfy_extras/ nodes did not import correctly. This may be because they are missing some dependencies.",
        "IMPORT FAILED: nodes_audio.py",
        "IMPORT FAILED: nodes_audio_encoder.py",
    ]
    assert not [t for t in texts(info) if "Prompt Server" in t or t.startswith("setup plugin")]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("bad-flag", "ComfyUI rejected a command-line flag: --medvram"),
        ("port-busy", "the port was taken by another process"),  # 0.3.x: a traceback; 0.24: one [ERROR] line
    ],
)
def test_diagnosis_of_a_failed_start(version: str, case: str, reason: str) -> None:
    tail = lines(version, case)[-TAIL_LINES:]  # what the supervisor keeps
    assert reason in (diagnose(tail) or "")
    assert diagnose([plain(line) for line in tail]) == diagnose(tail)


def cpu_view(info: StartupInfo, tmp_path: Path) -> str:
    settings = resolve_settings(CliOverrides(cpu=True), {}, tmp_path)
    plan = plan_launch(settings, select_gpus(GpuRequest("cpu"), inventory_of(0)), [8188])
    view = WorkerView(name="comfyui", url="http://127.0.0.1:8188", port=8188, cuda_visible_devices="", phase="starting",
                      pid=1, elapsed_s=3.0, info=info, message="", exit_code=None, stats=None, multigpu=None,
                      queue_remaining=None, log_file=None, restarts=0, tail=())
    text = render(dashboard(plan, FleetSnapshot((view,), stopping=False), "test"), width=160)
    return " ".join(text.split())  # rows compared without the table's padding


def test_dashboard_system_table_of_0_24(tmp_path: Path) -> None:
    text = cpu_view(parsed("0.24.0", "startup"), tmp_path)
    for row in (
        (f"Python {' '.join(PYTHON.split())} PyTorch 2.11.0+cu130 ComfyUI 0.24.0 Frontend 1.45.15 Device cpu Memory {MEMORY} "
         "VRAM state DISABLED Attention sub quadratic Node cache RAM pressure comfy-kitchen 0.2.10 (backends: eager) "
         "comfy-aimdo 0.4.9"),
        "Custom nodes: 1 imported",
    ):
        assert row in text, row
    assert "Warnings and errors" not in text
    assert "To see the GUI go to" in text  # the status line shows the last line, plain


def test_dashboard_imports_and_problems_of_0_3_76(tmp_path: Path) -> None:
    text = cpu_view(parsed("0.3.76", "startup"), tmp_path)
    assert "Frontend 1.33.13 Device cpu" in text
    assert "Custom nodes: 1 imported, 1 failed" in text
    assert "IMPORT FAILED /opt/ComfyUI/custom_nodes/ComfyUI-WanVideoWrapper: [Errno 2] No such file or directory" in text
    assert ("Built-in nodes that did not load: comfy_extras/nodes_audio.py, comfy_extras/nodes_audio_encoder.py "
            f"({TORCHAUDIO})") in text
    assert "Warnings and errors" in text and "IMPORT FAILED: nodes_audio_encoder.py" in text


# What a CPU run does not print, written as 0.24's app/logger.py formats a record:
# "<bold from WARNING up><level colour>[LEVEL]<reset> message", only on a record's first line.
def tagged(level: str, message: str, colour: str = "") -> str:
    codes = {"DEBUG": "\x1b[36m", "INFO": "\x1b[32m", "WARNING": "\x1b[1m\x1b[33m", "ERROR": "\x1b[1m\x1b[31m",
             "CRITICAL": "\x1b[1m\x1b[35m"}
    body = f"{colour}{message}\x1b[0m" if colour else message
    return f"{codes[level]}[{level}]\x1b[0m {body}"


def read(*log: str) -> StartupInfo:
    info = StartupInfo()
    for line in log:
        info = parse_line(info, line)
    return info


def test_0_24_on_gpus_every_device_dynamic_vram_and_kitchen_backends() -> None:
    info = read(
        tagged("INFO", "Found comfy_kitchen backend cuda: {'available': True, 'disabled': False, 'unavailable_reason': None}"),
        tagged("INFO", "Found comfy_kitchen backend triton: {'available': False, 'disabled': True, 'unavailable_reason': 'x'}"),
        tagged("INFO", "Found comfy_kitchen backend eager: {'available': True, 'disabled': False, 'unavailable_reason': None}"),
        tagged("INFO", "Total VRAM 81559 MB, total RAM 257000 MB"),
        tagged("INFO", "Set vram state to: NORMAL_VRAM"),
        tagged("INFO", "Device: cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync"),
        tagged("INFO", "Device: cuda:1 NVIDIA H100 80GB HBM3 : cudaMallocAsync"),
        tagged("INFO", "Using pytorch attention"),
        tagged("INFO", "Using pytorch attention in VAE"),
        tagged("INFO", "DynamicVRAM support detected and enabled"),
        tagged("DEBUG", "a debug record"),
    )
    assert info.system["device"] == "cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync"
    assert info.devices == ("cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync", "cuda:1 NVIDIA H100 80GB HBM3 : cudaMallocAsync")
    assert info.system["dynamic_vram"] == "enabled" and info.system["attention"] == "pytorch"
    assert info.system["kitchen_backends"] == "cuda, eager" and info.problems == ()
    assert read(tagged("WARNING", "No working comfy-aimdo install detected. DynamicVRAM support disabled. Falling back")).system[
        "dynamic_vram"] == "disabled: no working comfy-aimdo"
    assert read(tagged("WARNING", "Dynamic vram disabled with argument. If you have ...")).system["dynamic_vram"] == (
        "disabled by --disable-dynamic-vram")


def test_0_24_outdated_packages_are_said_in_a_warning_block() -> None:
    # one WARNING record of many lines (app/frontend_management.py): only the first is tagged
    info = read(
        tagged("WARNING", "________________________________________________________________________"),
        "WARNING WARNING WARNING WARNING WARNING",
        "",
        "Installed comfyui-frontend-package version 1.40.1 is lower than the recommended version 1.45.15.",
        "Installed comfy-kitchen version 0.2.1 is lower than the recommended version 0.2.10.",
        "________________________________________________________________________",
        tagged("INFO", "comfyui-embedded-docs version: 0.5.3"),
        "a bare line after an INFO record",
    )
    assert info.system["frontend"] == "1.40.1 (ComfyUI asks for 1.45.15)"
    assert info.system["comfy_kitchen"] == "0.2.1 (ComfyUI asks for 0.2.10)"
    assert [p.level for p in info.problems] == ["WARNING"] * 5
    assert texts(info)[-1] == "________________________________________________________________________"
    # 0.3.x said the same of its frontend
    assert read("Installed frontend version 1.2.3 is lower than the recommended version 1.4.5.").system["frontend"] == (
        "1.2.3 (ComfyUI asks for 1.4.5)")


def test_0_24_errors_their_tracebacks_and_what_follows() -> None:
    info = read(
        tagged("ERROR", "!!! Exception during processing !!! boom"),
        tagged("ERROR", "Traceback (most recent call last):"),
        '  File "/opt/ComfyUI/execution.py", line 1, in execute',
        "RuntimeError: boom",
        tagged("CRITICAL", "the end"),
        tagged("INFO", "Prompt executed in 0.01 seconds", colour="\x1b[32m"),
        tagged("INFO", "Starting server"),
        "",
        tagged("INFO", "To see the GUI go to: http://127.0.0.1:8188"),
    )
    assert info.problems == (
        Problem("ERROR", "!!! Exception during processing !!! boom"),
        Problem("ERROR", "RuntimeError: boom"),
        Problem("CRITICAL", "the end"),
    )
    assert info.gui_urls == ("http://127.0.0.1:8188",)
    # an interpreter's own traceback (a crash) has no tag, whatever record came before
    crashed = read(tagged("INFO", "Starting server"), "Traceback (most recent call last):", '  File "main.py"', "KeyError: 'x'")
    assert crashed.problems == (Problem("ERROR", "KeyError: 'x'"),)


def test_prestartup_times_are_not_imports() -> None:
    info = read(
        tagged("INFO", ""), "Prestartup times for custom nodes:",  # logging.info("\nPrestartup times ...")
        tagged("INFO", "   0.0 seconds: /c/custom_nodes/ComfyUI-Manager"),
        tagged("INFO", ""),
        tagged("INFO", ""), "Import times for custom nodes:",
        tagged("INFO", "   0.1 seconds: /c/custom_nodes/ComfyUI-Manager"),
        tagged("INFO", "   2.5 seconds (IMPORT FAILED): /c/custom_nodes/ComfyUI-Broken"),
    )
    assert info.imports == (NodeImport(0.1, "/c/custom_nodes/ComfyUI-Manager", False),
                            NodeImport(2.5, "/c/custom_nodes/ComfyUI-Broken", True))


def test_split_level_and_plain() -> None:
    assert split_level("\x1b[32m[INFO]\x1b[0m [Prompt Server] web root: /x") == ("INFO", "[Prompt Server] web root: /x")
    assert split_level("[Prompt Server] web root: /x") == (None, "[Prompt Server] web root: /x")
    assert split_level("\x1b[1m\x1b[31m[ERROR]\x1b[0m boom") == ("ERROR", "boom")
    assert split_level("\x1b[32m[INFO]\x1b[0m ") == ("INFO", "")
    assert plain("  0%|          | 0/20\r 50%|#####     | 10/20\r") == " 50%|#####     | 10/20"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", ["startup", "broken-node"])
def test_a_silent_exit_is_not_blamed_on_an_earlier_warning(version: str, case: str) -> None:
    # Before: a custom node's SystemExit(3) (no traceback) was reported as "a Python package is
    # missing: torchaudio", a harmless warning logged earlier in the start.
    tail = lines(version, case)[-TAIL_LINES:]
    reason = diagnose(tail, 3) or ""
    assert reason.startswith("ComfyUI ended with code 3 without an error message: a SystemExit")
    assert "missing" not in reason and diagnose(tail) is None
