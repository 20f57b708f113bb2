"""ComfyUI 0.23+'s native multi-GPU module as comfyrig reads it from a checkout, for tests.

The real ``comfy_extras/nodes_multigpu.py`` declares each node in ``define_schema`` as
``io.Schema(node_id="MultiGPU_WorkUnits", ...)``, and ``nodes.py`` lists the file among its
built-in extras; these helpers write the same shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from comfyrig.comfy.multigpu import NATIVE_NODES

NATIVE_NAMES: tuple[str, ...] = tuple(n.name for n in NATIVE_NODES)


def write_native_module(root: Path, nodes: Sequence[str] = NATIVE_NAMES) -> None:
    """Write ``comfy_extras/nodes_multigpu.py`` declaring ``nodes`` (nodes.py is the caller's)."""
    (root / "comfy_extras").mkdir(parents=True, exist_ok=True)
    body = "\n".join(f'        return io.Schema(node_id="{n}", display_name="x")' for n in nodes) or "        pass"
    (root / "comfy_extras" / "nodes_multigpu.py").write_text(f"class X:\n    def define_schema(cls):\n{body}\n")
