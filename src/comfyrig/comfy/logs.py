"""What ComfyUI says about itself while starting, read from its log lines.

The patterns are ComfyUI's own lines (main.py, comfy/model_management.py,
server.py, nodes.py); the log is informative only: readiness is decided by
HTTP, never by "To see the GUI go to".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

__all__ = ["NodeImport", "StartupInfo", "diagnose", "parse_line"]

_FIELDS = {
    "python": re.compile(r"^Python version: (.+)$"),
    "pytorch": re.compile(r"^pytorch version: (.+)$"),
    "comfyui": re.compile(r"^ComfyUI version: (.+)$"),
    "frontend": re.compile(r"^ComfyUI frontend version: (.+)$"),
    "device": re.compile(r"^Device: (.+)$"),
    "memory": re.compile(r"^(Total VRAM .+)$"),
    "vram_state": re.compile(r"^Set vram state to: (.+)$"),
}
_IMPORT = re.compile(r"^\s+([\d.]+) seconds( \(IMPORT FAILED\))?: (.+)$")
_GUI = re.compile(r"^To see the GUI go to: (\S+)")
_PROBLEM = re.compile(r"(Traceback|Error|error:|WARNING|Warning|CUDA out of memory|IMPORT FAILED)")


@dataclass(frozen=True)
class NodeImport:
    seconds: float
    path: str
    failed: bool


@dataclass(frozen=True)
class StartupInfo:
    """Immutable: each line gives a new value, so the dashboard renders snapshots."""

    system: dict[str, str] = field(default_factory=dict)
    imports: tuple[NodeImport, ...] = ()
    problems: tuple[str, ...] = ()
    gui_urls: tuple[str, ...] = ()
    last_line: str = ""


def parse_line(info: StartupInfo, line: str) -> StartupInfo:
    text = line.rstrip()
    if not text.strip():
        return info
    info = replace(info, last_line=text.strip())
    for name, pattern in _FIELDS.items():
        match = pattern.match(text.strip())
        if match:
            return replace(info, system={**info.system, name: match.group(1).strip()})
    match = _IMPORT.match(text)
    if match:
        node = NodeImport(float(match.group(1)), match.group(3).strip(), bool(match.group(2)))
        return replace(info, imports=(*info.imports, node))
    match = _GUI.match(text.strip())
    if match:
        return replace(info, gui_urls=(*info.gui_urls, match.group(1)))
    if _PROBLEM.search(text):
        return replace(info, problems=(*info.problems[-19:], text.strip()))
    return info


_REASONS = (
    (re.compile(r"unrecognized arguments: (.+)"), "ComfyUI rejected a command-line flag: {0} (check COMFYUI_ARGS and the arguments after --)"),
    (re.compile(r"(?:ModuleNotFoundError|ImportError): (?:No module named )?'?([\w.]+)'?"), "a Python package is missing in ComfyUI's environment: {0} (install ComfyUI's requirements.txt into that interpreter)"),
    (re.compile(r"Found no NVIDIA driver|CUDA driver version is insufficient|no CUDA-capable device|CUDA error: (.+)"), "CUDA error: torch could not use the GPU ({0}); run 'comfyrig doctor'"),
    (re.compile(r"CUDA out of memory|OutOfMemoryError"), "CUDA out of memory: try --lowvram, --reserve-vram GB, or another GPU"),
    (re.compile(r"address already in use|Errno 98"), "the port was taken by another process while ComfyUI started"),
)


def diagnose(lines: list[str] | tuple[str, ...]) -> str | None:
    """The most likely reason a ComfyUI start failed, from its last log lines."""
    for line in reversed(lines):
        for pattern, template in _REASONS:
            match = pattern.search(line)
            if match:
                detail = next((g for g in match.groups() if g), line.strip()[:120]) if match.groups() else line.strip()[:120]
                return template.format(detail.strip())
    return None
