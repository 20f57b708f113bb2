"""What ComfyUI says about itself while starting, read from its log lines.

Every version is read the same way. Up to 0.3.x ComfyUI logs bare messages
(``pytorch version: 2.9.1``). From 0.24 on, ``app/logger.py``'s ColoredFormatter
puts a coloured level tag before every record, into a pipe too
(``\\x1b[32m[INFO]\\x1b[0m pytorch version: 2.11.0``; bold from WARNING up), and
colours some messages themselves (``Prompt executed in`` is green). Only the first
line of a record carries the tag: the lines after it in the same message (a
traceback logged as a warning, ``Import times for custom nodes:`` after the
``\\n`` that opens its record, alembic's ``Revision ID:``) come bare. So a line is
split into its level and its plain text, and a bare line after a tagged one
continues that record and has its level. A bare line in a log that has no tags (0.3.x,
or the interpreter's own traceback when ComfyUI crashes) is judged by its words.

The patterns are ComfyUI's own lines (main.py, comfy/model_management.py,
comfy/ldm/modules/attention.py, execution.py, nodes.py, server.py,
app/frontend_management.py). The log is informative only: readiness is decided by
HTTP, never by "To see the GUI go to".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

__all__ = ["Level", "NodeImport", "Problem", "StartupInfo", "diagnose", "ending", "parse_line", "plain", "split_level"]

Level = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
PROBLEM_LEVELS: frozenset[Level] = frozenset({"WARNING", "ERROR", "CRITICAL"})

# CSI sequences (colours, bold, reset): all ComfyUI and its libraries write.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
# The tag as 0.24's ColoredFormatter writes it (``[LEVEL]`` and one space), once its colours are gone.
_TAG = re.compile(r"^\[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] ?")
_LEVELS: dict[str, Level] = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARNING", "ERROR": "ERROR", "CRITICAL": "CRITICAL"}

_FIELDS = {
    "python": re.compile(r"^Python version: (.+)$"),
    "pytorch": re.compile(r"^pytorch version: (.+)$"),
    "comfyui": re.compile(r"^ComfyUI version: (.+)$"),
    "frontend": re.compile(r"^ComfyUI frontend version: (.+)$"),  # up to 0.3.x; 0.24 names the package
    "memory": re.compile(r"^(Total VRAM .+)$"),
    "vram_state": re.compile(r"^Set vram state to: (.+)$"),
    "attention": re.compile(r"^Using (.+?) (?:optimization for )?attention(?:,|$)"),  # not "... attention in VAE"
}
# 0.24: "comfyui-frontend-package version: 1.45.15", "comfy-kitchen version: 0.2.10", ...
_PACKAGE = re.compile(r"^(comfy[\w-]*) version: (\S+)$")
# A package older than ComfyUI's requirements.txt asks for: logged instead of its version line.
_OUTDATED = re.compile(r"^Installed (frontend|comfy[\w-]*) version (\S+) is lower than the recommended version (\S+?)\.?$")
_PACKAGE_KEYS = {
    "frontend": "frontend",
    "comfyui-frontend-package": "frontend",
    "comfy-kitchen": "comfy_kitchen",
    "comfy-aimdo": "comfy_aimdo",
    "comfyui-workflow-templates": "templates",
    "comfyui-embedded-docs": "embedded_docs",
}
_KITCHEN_BACKEND = re.compile(r"^Found comfy_kitchen backend (\w+): \{'available': True")
_DEVICE = re.compile(r"^Device: (.+)$")  # 0.24 logs one line per torch device, the default first
_STATES = (  # (key, pattern, value): facts said in a sentence
    ("dynamic_vram", re.compile(r"^DynamicVRAM support detected and enabled"), "enabled"),
    ("dynamic_vram", re.compile(r"^No working comfy-aimdo install detected"), "disabled: no working comfy-aimdo"),
    ("dynamic_vram", re.compile(r"^Unsupported Pytorch detected\. DynamicVRAM"), "disabled: needs PyTorch 2.8 or later"),
    ("dynamic_vram", re.compile(r"^Dynamic vram disabled with argument"), "disabled by --disable-dynamic-vram"),
    ("cache", re.compile(r"^Using RAM pressure cache"), "RAM pressure"),
    ("cache", re.compile(r"^Using LRU cache"), "LRU"),
    ("cache", re.compile(r"^Disabling intermediate node cache"), "none"),
)
_IMPORT = re.compile(r"^\s+([\d.]+) seconds( \((?:IMPORT|PRESTARTUP) FAILED\))?: (.+)$")
_TIMES = (
    (re.compile(r"^Import times for custom nodes:"), "imports"),
    (re.compile(r"^Prestartup times for custom nodes:"), "prestartup"),
)
# Opens the list of built-in node files that failed ("IMPORT FAILED: nodes_audio.py").
_BUILTIN_HEADER = re.compile(r"^WARNING: some (comfy_extras|comfy_api_nodes)/ nodes did not import correctly")
_BUILTIN_FAILED = re.compile(r"^IMPORT FAILED: (.+)$")
_IMPORT_ERROR = re.compile(
    r"^(?:Cannot import (.+) module for custom nodes: (.*)"
    r"|Error while calling comfy_entrypoint in (.+): (.*)"
    r"|Skip (.+) module for custom nodes due to (.*))$"
)
_GUI = re.compile(r"^To see the GUI go to: (\S+)")
# Bare lines (no level) that read as trouble; tracebacks are kept by their last line.
_PROBLEM_WORDS = re.compile(r"Error|error:|WARNING|Warning|CUDA out of memory|IMPORT FAILED|Cannot import| missing, ")
_ERROR_WORDS = re.compile(r"Error|error:|out of memory")
_TRACEBACK = "Traceback (most recent call last):"
MAX_PROBLEMS = 20


@dataclass(frozen=True)
class NodeImport:
    seconds: float
    path: str  # as ComfyUI logged it; for a built-in node that failed: "comfy_extras/nodes_audio.py"
    failed: bool
    error: str | None = None  # why it failed, from ComfyUI's "Cannot import ..." line


@dataclass(frozen=True)
class Problem:
    """A warning or an error ComfyUI logged. ``level`` is ComfyUI's own (0.24 on); for a log
    without level tags it is ERROR or WARNING as the words of the line suggest."""

    level: Level
    text: str


def _frozen(mapping: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class StartupInfo:
    """Immutable: each line gives a new value, so the dashboard renders snapshots.

    ``system`` holds the facts the System table shows: python, pytorch, comfyui, frontend,
    device (the default one), memory, vram_state, attention, dynamic_vram, cache,
    comfy_kitchen, kitchen_backends, comfy_aimdo, templates, embedded_docs (each only once
    ComfyUI said it). ``devices`` lists every ``Device:`` line, the default first.
    """

    system: Mapping[str, str] = field(default_factory=_frozen)
    devices: tuple[str, ...] = ()
    imports: tuple[NodeImport, ...] = ()
    builtin_failures: tuple[NodeImport, ...] = ()  # comfy_extras / comfy_api_nodes that did not load
    problems: tuple[Problem, ...] = ()  # the last MAX_PROBLEMS
    gui_urls: tuple[str, ...] = ()
    last_line: str = ""
    # Reading state: the level of the record being read (bare lines continue it), the part
    # of the log (custom-node import times, prestartup times, a built-in failure list), and
    # why a node failed, said before its IMPORT FAILED line.
    record_level: Level | None = None
    section: str = ""
    import_errors: Mapping[str, str] = field(default_factory=_frozen)


def plain(line: str) -> str:
    """The line as a terminal would leave it: no ANSI codes, only what follows the last
    carriage return (a progress bar redraws itself with \\r), no trailing whitespace."""
    text = _ANSI.sub("", line).rstrip()
    if "\r" in text:
        text = next((part for part in reversed(text.split("\r")) if part.strip()), "")
    return text


def split_level(line: str) -> tuple[Level | None, str]:
    """(the level tag of a 0.24+ record, or None for a bare line; the plain message)."""
    text = plain(line)
    match = _TAG.match(text)
    if match is None:
        return None, text
    return _LEVELS[match.group(1)], text[match.end():]


def _with(info: StartupInfo, key: str, value: str) -> StartupInfo:
    return replace(info, system=_frozen({**info.system, key: value}))


def _problem(info: StartupInfo, level: Level, text: str) -> StartupInfo:
    if info.problems and info.problems[-1].text == text:
        return info
    return replace(info, problems=(*info.problems[-(MAX_PROBLEMS - 1):], Problem(level, text)))


def parse_line(info: StartupInfo, line: str) -> StartupInfo:
    """The StartupInfo after one more line of ComfyUI's output (raw, as read from its pipe)."""
    level, text = split_level(line)
    if level is not None:
        info = replace(info, record_level=level)
    if not text.strip():
        return info
    info = replace(info, last_line=text.strip())
    facts = _facts(info, text.strip())
    if facts is not None:
        return facts
    match = _OUTDATED.match(text.strip())
    if match:  # a fact, and a warning
        name, installed, required = match.groups()
        info = _with(info, _PACKAGE_KEYS.get(name, name), f"{installed} (ComfyUI asks for {required})")
        return _problems(info, level, text)
    nodes = _nodes(info, level, text)
    if nodes is not None:
        return nodes
    match = _GUI.match(text.strip())
    if match:
        return replace(info, gui_urls=(*info.gui_urls, match.group(1)))
    return _problems(info, level, text)


def _facts(info: StartupInfo, text: str) -> StartupInfo | None:
    for key, pattern in _FIELDS.items():
        match = pattern.match(text)
        if match:
            return _with(info, key, match.group(1).strip())
    match = _DEVICE.match(text)
    if match:
        device = match.group(1).strip()
        if device in info.devices:  # some versions log the device twice
            return info
        info = replace(info, devices=(*info.devices, device))
        return _with(info, "device", info.devices[0])
    match = _PACKAGE.match(text)
    if match:
        return _with(info, _PACKAGE_KEYS.get(match.group(1), match.group(1)), match.group(2))
    match = _KITCHEN_BACKEND.match(text)
    if match:
        backends = [b for b in info.system.get("kitchen_backends", "").split(", ") if b]
        return _with(info, "kitchen_backends", ", ".join(dict.fromkeys((*backends, match.group(1)))))
    for key, pattern, value in _STATES:
        if pattern.match(text):
            return _with(info, key, value)
    return None


def _nodes(info: StartupInfo, level: Level | None, text: str) -> StartupInfo | None:
    """Custom-node import times and failures; built-in nodes that failed; why they failed."""
    match = _IMPORT.match(text)
    if match:
        if info.section == "prestartup":
            return info
        path = match.group(3).strip()
        # ComfyUI marks a failed import "(IMPORT FAILED)"; an import error it logged for the path counts too.
        error = info.import_errors.get(path)
        failed = bool(match.group(2)) or error is not None
        node = NodeImport(float(match.group(1)), path, failed, error if failed else None)
        return replace(info, imports=(*info.imports, node))
    stripped = text.strip()
    for pattern, section in _TIMES:
        if pattern.match(stripped):
            return replace(info, section=section)
    match = _BUILTIN_HEADER.match(stripped)
    if match:
        return _problems(replace(info, section=match.group(1)), level, stripped)
    match = _BUILTIN_FAILED.match(stripped)
    if match:
        where = f"{info.section}/" if info.section in ("comfy_extras", "comfy_api_nodes") else ""
        path = f"{where}{match.group(1).strip()}"
        error = next((why for p, why in info.import_errors.items() if p.endswith(f"/{path}")), None)
        info = replace(info, builtin_failures=(*info.builtin_failures, NodeImport(0.0, path, True, error)))
        return _problems(info, level, stripped)
    match = _IMPORT_ERROR.match(stripped)
    if match:
        groups = match.groups()
        path, why = next((groups[i], groups[i + 1]) for i in (0, 2, 4) if groups[i] is not None)
        info = replace(info, import_errors=_frozen({**info.import_errors, path.strip(): why.strip()}))
        return _problems(info, level, stripped)
    return None


def _problems(info: StartupInfo, level: Level | None, text: str) -> StartupInfo:
    """A warning or an error is kept by its message; a traceback by its last line (the
    exception): its header and its indented frames tell a person nothing in a short list."""
    stripped = text.strip()
    if not stripped or stripped == _TRACEBACK or text[:1].isspace():
        return info
    record = level if level is not None else info.record_level  # a bare line continues its record
    if record is not None and record in PROBLEM_LEVELS:
        return _problem(info, record, stripped)
    if level is None and _PROBLEM_WORDS.search(stripped):  # a bare line: its words decide
        return _problem(info, "ERROR" if _ERROR_WORDS.search(stripped) else "WARNING", stripped)
    return info


_REASONS = (
    (re.compile(r"unrecognized arguments: (.+)"), "ComfyUI rejected a command-line flag: {0} (check COMFYUI_ARGS and the arguments after --)"),
    (re.compile(r"(?:ModuleNotFoundError|ImportError): (?:No module named )?'?([\w.]+)'?"), "a Python package is missing in ComfyUI's environment: {0} (install ComfyUI's requirements.txt into that interpreter)"),
    (re.compile(r"Torch not compiled with CUDA enabled"), "this PyTorch is a CPU-only build: install a CUDA build into ComfyUI's environment, or run with --cpu; see 'comfyrig doctor'"),
    (re.compile(r"Found no NVIDIA driver|CUDA driver version is insufficient|no CUDA-capable device|CUDA error: (.+)"), "CUDA error: torch could not use the GPU ({0}); run 'comfyrig doctor'"),
    (re.compile(r"CUDA out of memory|OutOfMemoryError"), "CUDA out of memory: it did not fit in the GPU's free memory (a smaller batch or resolution, or another GPU; which VRAM flags help depends on the ComfyUI version: 'comfyrig doctor' names them)"),
    (re.compile(r"address already in use|Errno 98|Port \d+ is already in use"), "the port was taken by another process while ComfyUI started"),
)


# The exception line that ends a traceback: "OSError: ...", "torch.OutOfMemoryError: ...", "SystemExit: 3".
_EXCEPTION = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Failure)(?::|$)")
_FRAME = re.compile(r'^\s+File "')
# A line that says ComfyUI went on after a logged traceback (it was a warning, not the end).
_WENT_ON = re.compile(r"^(?:Cannot import |Skip |Error while calling |Import times |Prestartup times |Starting server|To see the GUI)")
_EXCEPTION_LINES = 4  # an exception's message may run over a few lines (CUDA errors add two hints)


def ending(lines: Sequence[str]) -> list[str]:
    """The lines that ended ComfyUI: the exception of a traceback that closes the log (its message
    lines too), else the last line. A traceback earlier in the log, or one logged as a warning that
    ComfyUI went on after (a custom node that failed to import), is not the end."""
    texts = [split_level(line)[1] for line in lines]
    while texts and not texts[-1].strip():
        texts.pop()
    if not texts:
        return []
    frames = [n for n, text in enumerate(texts) if _FRAME.match(text)]
    if frames:
        after = texts[frames[-1] + 1:]
        while after and after[0][:1].isspace():  # the frame's source line and its ^^^^ markers
            after = after[1:]
        rest = [text.strip() for text in after if text.strip()]
        if (rest and _EXCEPTION.match(rest[0]) and len(rest) <= _EXCEPTION_LINES
                and not any(_WENT_ON.match(text) for text in rest)):
            return rest
    return [texts[-1].strip()]


def diagnose(lines: Sequence[str], exit_code: int | None = None) -> str | None:
    """The most likely reason a ComfyUI start failed, from its last log lines (raw or plain) and
    its exit code: taken from what ended it (``ending``), never from an earlier harmless warning."""
    last = ending(lines)
    for text in last:
        for pattern, template in _REASONS:
            match = pattern.search(text)
            if match:
                detail = next((g for g in match.groups() if g), text[:120])
                return template.format(detail.strip())
    if last and _EXCEPTION.match(last[0]):
        return f"ComfyUI stopped on an error: {last[0][:200]}"
    if exit_code is not None and exit_code > 0:
        before = f"; its last line was: {last[0][:160]}" if last else ""
        return (
            f"ComfyUI ended with code {exit_code} without an error message: a SystemExit (raised by a custom node, "
            f"say) ends Python without a traceback{before}"
        )
    return None
