"""Facts read from a ComfyUI checkout on disk, without importing it."""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .args import FlagSpec, FlagTable, Nargs

__all__ = ["comfyui_version", "flag_table", "flag_table_from_source", "supported_flags"]

_VERSION = re.compile(r"""__version__\s*=\s*["']([^"']+)["']""")
_NARGS: dict[str, Nargs] = {"?": "?", "+": "+", "*": "*"}
_NO_VALUE_ACTIONS = frozenset({"store_true", "store_false", "store_const", "append_const", "count", "help", "version"})


def flag_table(comfyui_dir: Path) -> FlagTable | None:
    """The flags ComfyUI's ``comfy/cli_args.py`` defines, or None if it is unreadable.

    Read as text: importing it would import torch-adjacent modules, and the
    launcher never does that.
    """
    path = comfyui_dir / "comfy" / "cli_args.py"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return flag_table_from_source(text, str(path))


def supported_flags(comfyui_dir: Path) -> frozenset[str] | None:
    """Only the option strings of ``flag_table`` (what the install's .env template asks)."""
    table = flag_table(comfyui_dir)
    return table.option_strings if table is not None else None


def flag_table_from_source(text: str, source: str = "comfy/cli_args.py") -> FlagTable | None:
    """The flag table of a ``comfy/cli_args.py``, read from its text with ``ast`` (nothing is run).

    Every ``<parser or group>.add_argument("--x", ...)`` call counts; its
    ``action``, ``nargs``, ``const``, ``type`` and ``choices`` say how many
    values it takes and which. None when the text does not parse or defines
    no flag.
    """
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    groups: set[str] = set()
    parser_kwargs: dict[str, object] = {}
    calls: list[ast.Call] = []
    # Enums of this file used as type= (--preview-method, --fast): their values are the choices.
    enums: dict[str, tuple[str, ...]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(_dotted(b).endswith("Enum") for b in node.bases):
            enums[node.name] = tuple(
                item.value.value for item in node.body
                if isinstance(item, ast.Assign) and isinstance(item.value, ast.Constant) and isinstance(item.value.value, str)
            )
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Attribute) and func.attr == "add_mutually_exclusive_group":
                groups.update(t.id for t in node.targets if isinstance(t, ast.Name))
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "add_argument":
                calls.append(node)
            elif _dotted(func).endswith("ArgumentParser"):
                parser_kwargs.update({kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg})
    calls.sort(key=lambda c: (c.lineno, c.col_offset))
    flags = [spec for call in calls if (spec := _spec_of(call, groups, enums)) is not None]
    if not flags:
        return None
    return FlagTable(
        flags=tuple(flags),
        allow_abbrev=parser_kwargs.get("allow_abbrev", True) is not False,
        add_help=parser_kwargs.get("add_help", True) is not False,
        source=source,
    )


def _literal(node: ast.expr) -> object:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _Unknown(ast.unparse(node))


@dataclass(frozen=True)
class _Unknown:
    """An argument that is not a literal (a name, a call): kept as its source text."""

    text: str


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _spec_of(call: ast.Call, groups: set[str], enums: Mapping[str, tuple[str, ...]]) -> FlagSpec | None:
    names = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if not names or not all(n.startswith("-") and len(n) > 1 for n in names):
        return None  # a positional argument: ComfyUI has none, and it takes no flag
    kwargs = {kw.arg: kw.value for kw in call.keywords if kw.arg}
    action = kwargs.get("action")
    action_name = action.value if isinstance(action, ast.Constant) and isinstance(action.value, str) else (
        _dotted(action) if action is not None else "store"
    )
    nargs: Nargs = 1
    if action_name in _NO_VALUE_ACTIONS:
        nargs = 0
    elif action_name.endswith("BooleanOptionalAction"):
        nargs = 0
        names += [f"--no-{n[2:]}" for n in names if n.startswith("--")]
    elif "nargs" in kwargs:
        raw = _literal(kwargs["nargs"])
        # "*", and argparse.REMAINDER and the like: "everything that follows" is closest to "*".
        nargs = raw if isinstance(raw, int) and not isinstance(raw, bool) else _NARGS.get(str(raw), "*")
    const = _literal(kwargs["const"]) if "const" in kwargs else None
    choices = _literal(kwargs["choices"]) if "choices" in kwargs else None
    type_node = kwargs.get("type")
    type_name = (_dotted(type_node) or ast.unparse(type_node)) if type_node is not None else None
    owner = call.func.value if isinstance(call.func, ast.Attribute) else None
    return FlagSpec(
        names=tuple(names),
        nargs=nargs,
        const=None if const is None or isinstance(const, _Unknown) else str(const),
        type=type_name,
        choices=tuple(str(c) for c in choices) if isinstance(choices, (list, tuple, set, frozenset)) else (
            enums.get(type_name) if type_name else None
        ),
        group=owner.id if isinstance(owner, ast.Name) and owner.id in groups else None,
    )


def comfyui_version(comfyui_dir: Path) -> str | None:
    """``__version__`` from comfyui_version.py (ComfyUI >= 0.3.x), or None."""
    try:
        text = (comfyui_dir / "comfyui_version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    match = _VERSION.search(text)
    return match.group(1) if match else None
