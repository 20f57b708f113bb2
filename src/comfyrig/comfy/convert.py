"""UI-format workflows ("Save" in ComfyUI) to the API format ("Export (API)"), with /object_info.

What the frontend does when it queues a graph, done here with the server's
node schemas:

- widget values are positional (``widgets_values``), in the order of the
  schema's widget inputs (``input_order``; INT, FLOAT, STRING, BOOLEAN and
  combos, unless ``forceInput``). A seed-like widget is followed by its
  "control_after_generate" value (fixed/increment/decrement/randomize), and an
  upload combo (``image_upload``...) by the upload button's value: both are
  frontend-only and skipped;
- links become ``[source node id, output slot]``; Reroute nodes are followed,
  a PrimitiveNode's value is put in place of the link;
- muted nodes (mode 2) are left out; bypassed ones (mode 4) pass their input of
  the same type through;
- Note / MarkdownNote are dropped.

Anything else that cannot be converted raises WorkflowError naming the node and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import WorkflowError
from .workflow import Prompt, Workflow

__all__ = ["convert_ui"]

CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})
UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload")
WIDGET_KINDS = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
DROPPED = frozenset({"Note", "MarkdownNote"})
MUTED, BYPASSED = 2, 4


def _is_widget(spec: Any) -> bool:
    if not isinstance(spec, list) or not spec:
        return False
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if opts.get("forceInput") or opts.get("rawLink"):
        return False
    return isinstance(spec[0], list) or spec[0] in WIDGET_KINDS


def _widget_names(schema: Mapping[str, Any]) -> list[tuple[str, list[Any]]]:
    inputs = schema.get("input", {})
    order = schema.get("input_order") or {k: list((inputs.get(k) or {}).keys()) for k in ("required", "optional")}
    names: list[tuple[str, list[Any]]] = []
    for category in ("required", "optional"):
        specs = inputs.get(category) or {}
        for name in order.get(category, list(specs)):
            spec = specs.get(name)
            if isinstance(spec, list) and _is_widget(spec):
                names.append((str(name), spec))
    return names


def _has_control(name: str, spec: list[Any]) -> bool:
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return bool(opts.get("control_after_generate")) or name in ("seed", "noise_seed")


def _has_upload(spec: list[Any]) -> bool:
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return any(opts.get(flag) for flag in UPLOAD_FLAGS)


def _fits(value: Any, spec: list[Any]) -> bool:
    kind = spec[0]
    if isinstance(kind, list) or kind == "COMBO":
        return isinstance(value, (str, int, float)) and not isinstance(value, bool)
    if kind == "INT":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()
    if kind == "FLOAT":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "STRING":
        return isinstance(value, str)
    if kind == "BOOLEAN":
        return isinstance(value, bool)
    return True


class _Graph:
    def __init__(self, ui: Mapping[str, Any], object_info: Mapping[str, Any]) -> None:
        self.object_info = object_info
        self.nodes: dict[str, dict[str, Any]] = {}
        for node in ui.get("nodes", []):
            if not isinstance(node, dict) or "id" not in node or "type" not in node:
                raise WorkflowError("The UI-format workflow has a node without id or type.")
            self.nodes[str(node["id"])] = node
        self.links: dict[int, tuple[str, int, str]] = {}
        for link in ui.get("links", []) or []:
            if isinstance(link, list) and len(link) >= 6:
                self.links[int(link[0])] = (str(link[1]), int(link[2]), str(link[5]))
            elif isinstance(link, dict):
                self.links[int(link["id"])] = (str(link["origin_id"]), int(link["origin_slot"]), str(link.get("type", "*")))
        subgraphs = (ui.get("definitions") or {}).get("subgraphs") or []
        self.subgraph_ids = {str(s.get("id")) for s in subgraphs if isinstance(s, dict)}

    def describe(self, node_id: str) -> str:
        node = self.nodes[node_id]
        title = node.get("title")
        return f"node {node_id} ({node['type']}{', ' + repr(title) if title and title != node['type'] else ''})"

    def source(self, link_id: int, seen: frozenset[str] = frozenset()) -> tuple[str, Any] | None:
        """("link", [id, slot]) or ("value", v) for what feeds ``link_id``; None when nothing does."""
        if link_id not in self.links:
            return None
        origin, slot, kind = self.links[link_id]
        node = self.nodes.get(origin)
        if node is None or origin in seen:
            return None
        seen = seen | {origin}
        if node["type"] == "Reroute":
            upstream = next((i.get("link") for i in node.get("inputs", []) if i.get("link") is not None), None)
            return None if upstream is None else self.source(int(upstream), seen)
        if node["type"] == "PrimitiveNode":
            values = node.get("widgets_values") or []
            if not values:
                raise WorkflowError(f"{self.describe(origin)} holds no value to pass on.")
            return ("value", values[0])
        mode = node.get("mode", 0)
        if mode == MUTED:
            return None
        if mode == BYPASSED:
            for inp in node.get("inputs", []):
                if inp.get("link") is not None and (inp.get("type") == kind or kind == "*" or inp.get("type") == "*"):
                    return self.source(int(inp["link"]), seen)
            return None
        return ("link", [origin, slot])

    def convert_node(self, node_id: str) -> dict[str, Any]:
        node = self.nodes[node_id]
        class_type = node["type"]
        if class_type in self.subgraph_ids:
            raise WorkflowError(
                f"{self.describe(node_id)} is a subgraph; comfyrig does not expand subgraphs.",
                hint="Open the workflow in ComfyUI and use Export (API), then pass that file.",
            )
        schema = self.object_info.get(class_type)
        if schema is None:
            raise WorkflowError(
                f"{self.describe(node_id)}: the server has no node class {class_type!r}, so its widget values cannot be "
                "mapped (a custom node pack that is not installed, or a frontend-only node such as Set/Get).",
                hint="Install the node pack on the workers, or export the workflow with Export (API).",
            )
        inputs: dict[str, Any] = {}
        widgets = _widget_names(schema)
        values = node.get("widgets_values")
        if isinstance(values, dict):
            for name, _spec in widgets:
                if name in values:
                    inputs[name] = values[name]
        elif isinstance(values, list):
            pos = 0
            for name, spec in widgets:
                if pos >= len(values):
                    break
                value = values[pos]
                pos += 1
                if not _fits(value, spec):
                    raise WorkflowError(
                        f"{self.describe(node_id)}: widget value {pos} ({value!r}) does not fit its input {name!r} "
                        f"({spec[0] if not isinstance(spec[0], list) else 'a choice'}); the workflow was saved with "
                        "another version of this node than the server has.",
                        hint="Open and save it in the workers' ComfyUI, or export it with Export (API).",
                    )
                inputs[name] = value
                if pos < len(values) and _has_control(name, spec) and values[pos] in CONTROL_VALUES:
                    pos += 1  # the frontend's "control after generate" widget
                elif pos < len(values) and _has_upload(spec) and isinstance(values[pos], str) and values[pos] in ("image", "video", "audio"):
                    pos += 1  # the upload button
        required = set((schema.get("input", {}).get("required") or {}).keys())
        for inp in node.get("inputs", []) or []:
            name = (inp.get("widget") or {}).get("name") or inp.get("name")
            link = inp.get("link")
            if link is None:
                continue
            fed = self.source(int(link))
            if fed is None:
                if name in required and name not in inputs:
                    raise WorkflowError(
                        f"{self.describe(node_id)}: its required input {name!r} comes from a muted or bypassed node "
                        "with nothing to pass on."
                    )
                continue
            inputs[name] = fed[1]
        missing = [name for name in required if name not in inputs]
        if missing:
            raise WorkflowError(
                f"{self.describe(node_id)}: required input(s) {', '.join(sorted(missing))} are neither connected nor set.",
            )
        out: dict[str, Any] = {"inputs": inputs, "class_type": class_type}
        title = node.get("title") or schema.get("display_name") or class_type
        out["_meta"] = {"title": title}
        return out


def convert_ui(wf: Workflow, object_info: Mapping[str, Any]) -> Workflow:
    """The API-format twin of a UI-format workflow. Raises WorkflowError (which node, why)."""
    if wf.ui is None:
        return wf
    graph = _Graph(wf.ui, object_info)
    prompt: Prompt = {}
    for node_id, node in graph.nodes.items():
        if node["type"] in DROPPED or node["type"] in ("Reroute", "PrimitiveNode"):
            continue
        if node.get("mode", 0) in (MUTED, BYPASSED):
            continue
        prompt[node_id] = graph.convert_node(node_id)
    if not prompt:
        raise WorkflowError(f"{wf.source}: the UI-format workflow has no node that would run.")
    return Workflow(prompt=prompt, source=wf.source, ui=wf.ui)
