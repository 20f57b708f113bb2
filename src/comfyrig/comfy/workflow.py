"""The one workflow model: load (API or UI format), find nodes and fields, type values, patch, validate.

A workflow in ComfyUI's API format is ``{node_id: {class_type, inputs, _meta?}}``;
an input is a literal value or a link ``[source_node_id, output_slot]``. The UI
format (what "Save" writes: ``nodes`` and ``links``) is recognised by the one
loader; ``convert.convert_ui`` turns it into the API format with a server's
/object_info (batch), and ``require_api_format`` refuses it where no server is
at hand (``comfyrig plan``). Everything but ``load_workflow`` is pure; errors
are WorkflowError naming the file, the node and the field.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from ..errors import WorkflowError
from ..files import read_json

__all__ = [
    "EXPORT_API_HINT",
    "FieldRef",
    "FieldType",
    "Prompt",
    "Workflow",
    "canonical_json",
    "coerce",
    "field_type",
    "load_workflow",
    "parse_field_ref",
    "patch",
    "require_api_format",
    "resolve_field",
    "resolve_node",
    "schema_problems",
    "seed_fields",
    "tag_outputs",
    "workflow_from_json",
]

Prompt = dict[str, dict[str, Any]]
# NUMBER: an integer value in a workflow read without the server's schema; it may be
# a FLOAT input saved as 8, so it takes both (the schema check later is strict).
Kind = Literal["INT", "FLOAT", "NUMBER", "STRING", "BOOLEAN", "COMBO", "ANY"]
SEED_NAMES = ("seed", "noise_seed")


def canonical_json(value: Any) -> str:
    """The one text form that is hashed: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Workflow:
    """A workflow in API format and where it came from.

    ``prompt`` is never mutated; ``patch`` copies what it changes.
    """

    prompt: Prompt
    source: str
    ui: Mapping[str, Any] | None = None  # the UI-format original, when it was one

    @property
    def needs_conversion(self) -> bool:
        return self.ui is not None and not self.prompt

    @property
    def digest(self) -> str:
        """sha256 of the API prompt's canonical JSON (hex)."""
        return hashlib.sha256(canonical_json(self.prompt).encode()).hexdigest()

    def title(self, node_id: str) -> str | None:
        meta = self.prompt[node_id].get("_meta")
        return meta.get("title") if isinstance(meta, dict) else None

    def describe(self, node_id: str) -> str:
        node = self.prompt[node_id]
        title = self.title(node_id)
        extra = f", {title!r}" if title and title != node["class_type"] else ""
        return f"node {node_id} ({node['class_type']}{extra})"


# How to get the API format out of ComfyUI, for every message that asks for it.
EXPORT_API_HINT = (
    "In ComfyUI, open the workflow and choose Workflow > Export (API) (older versions: turn on the dev mode "
    "options in the settings, then Save (API Format)), and pass that file."
)


def load_workflow(path: Path) -> Workflow:
    """Read a workflow file: the API format, ``{"prompt": ...}`` as POST /prompt takes it, or
    the UI format (what Save writes), which comes back with an empty prompt and ``ui`` set.

    Raises WorkflowError naming the file (and the line and column of bad JSON, or the node and
    field): missing, a folder, unreadable, not UTF-8, not JSON, not a workflow.
    """
    # A FIFO, a device, a folder, UTF-16, NaN: each a WorkflowError from the one reader.
    data = read_json(path, "the workflow", error=WorkflowError)
    return workflow_from_json(data, str(path))


def workflow_from_json(data: Any, source: str) -> Workflow:
    """A Workflow from parsed JSON (see ``load_workflow``); ``source`` names it in messages.
    Raises WorkflowError."""
    what = f"The workflow {source}"
    if isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data:
        _check_ui_shape(data, what)
        return Workflow(prompt={}, source=source, ui=data)
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "class_type" not in data["prompt"]:
        data = data["prompt"]  # {"prompt": {...}} as POST /prompt takes it
    if not isinstance(data, dict):
        raise WorkflowError(
            f"{what} is a JSON {_json_kind(data)}, not a ComfyUI workflow: expected the API format (an object of "
            "nodes, each with class_type and inputs) or the UI format (an object with nodes and links)."
        )
    if not data:
        raise WorkflowError(f"{what} has no nodes: it is an empty JSON object.")
    prompt: Prompt = {}
    for node_id, node in data.items():
        if not isinstance(node, dict):
            raise WorkflowError(
                f"{what}: node {node_id} is a JSON {_json_kind(node)}, not an object with class_type and inputs, "
                "so this is not an API-format workflow."
            )
        if not isinstance(node.get("class_type"), str):
            raise WorkflowError(f"{what}: node {node_id} has no class_type, so this is not an API-format workflow.")
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            raise WorkflowError(f"{what}: the inputs of node {node_id} ({node['class_type']}) are not an object.")
        prompt[str(node_id)] = {**node, "inputs": inputs}
    for node_id, node in prompt.items():
        for field, value in node["inputs"].items():
            if is_link(value) and str(value[0]) not in prompt:
                raise WorkflowError(
                    f"{what}: node {node_id} ({node['class_type']}) takes {field} from node {value[0]}, "
                    "which is not in the workflow."
                )
    return Workflow(prompt=prompt, source=source)


def _check_ui_shape(ui: dict[str, Any], what: str) -> None:
    """The JSON shapes the converter reads, checked once at load: a UI workflow edited by hand
    (``"inputs": 5``) is a WorkflowError naming the node, not a traceback in the middle of a run."""

    def bad(where: str, expected: str, value: Any) -> WorkflowError:
        return WorkflowError(f"{what}: {where} is a JSON {_json_kind(value)}, not {expected}; the UI-format file is damaged.")

    for n, node in enumerate(ui["nodes"]):
        if not isinstance(node, dict):
            raise bad(f"nodes[{n}]", "an object", node)
        if not isinstance(node.get("id"), int | str) or isinstance(node.get("id"), bool):
            raise bad(f"the id of nodes[{n}]", "a number", node.get("id"))
        name = f"node {node['id']}"
        if not isinstance(node.get("type"), str):
            raise bad(f"the type of {name}", "a string", node.get("type"))
        for key, kinds, expected in (("inputs", list, "an array"), ("outputs", list, "an array"),
                                     ("widgets_values", list | dict, "an array or object"),
                                     ("mode", int, "a number"), ("title", str, "a string")):
            if node.get(key) is not None and not isinstance(node[key], kinds):
                raise bad(f"the {key} of {name}", expected, node[key])
        for i, inp in enumerate(node.get("inputs") or []):
            if not isinstance(inp, dict):
                raise bad(f"inputs[{i}] of {name}", "an object", inp)
            link = inp.get("link")
            if link is not None and (not isinstance(link, int) or isinstance(link, bool)):
                raise bad(f"the link of inputs[{i}] of {name}", "a number or null", link)
            if inp.get("widget") is not None and not isinstance(inp["widget"], dict):
                raise bad(f"the widget of inputs[{i}] of {name}", "an object", inp["widget"])
    links = ui.get("links") or []
    if not isinstance(links, list):
        raise bad("links", "an array", links)
    for n, link in enumerate(links):
        if isinstance(link, list):
            if len(link) < 6 or not all(isinstance(x, int) and not isinstance(x, bool) for x in link[:5]):
                raise WorkflowError(f"{what}: links[{n}] is not [id, from node, from slot, to node, to slot, type]; "
                                    "the UI-format file is damaged.")
        elif isinstance(link, dict):
            if not all(isinstance(link.get(k), int | str) for k in ("id", "origin_id", "origin_slot")):
                raise WorkflowError(f"{what}: links[{n}] lacks id, origin_id or origin_slot; the UI-format file is damaged.")
        else:
            raise bad(f"links[{n}]", "an array or object", link)


def _json_kind(value: Any) -> str:
    kinds = ((bool, "boolean"), (int, "number"), (float, "number"), (str, "string"), (list, "array"), (dict, "object"))
    return next((name for cls, name in kinds if isinstance(value, cls)), "null")


def require_api_format(wf: Workflow, why: str, *, alternative: str | None = None) -> Workflow:
    """``wf`` when it is in the API format; for the UI format, WorkflowError saying ``why`` that
    will not do and how to export the API format (``alternative``: another way, said first)."""
    if not wf.needs_conversion:
        return wf
    hint = f"{alternative} Or: {EXPORT_API_HINT[0].lower()}{EXPORT_API_HINT[1:]}" if alternative else EXPORT_API_HINT
    raise WorkflowError(f"The workflow {wf.source} is in ComfyUI's UI format (what Save writes); {why}.", hint=hint)


# -- finding nodes and fields ---------------------------------------------------------------


@dataclass(frozen=True)
class FieldRef:
    """One input of one node, by its real node id: the key of a variation value."""

    node_id: str
    field: str

    @property
    def key(self) -> str:
        return f"{self.node_id}.{self.field}"


def parse_field_ref(text: str, option: str) -> tuple[str, str]:
    """``NODE.FIELD`` -> (node reference, field); the field is after the last dot."""
    node, dot, field = text.strip().rpartition(".")
    if not dot or not node or not field:
        raise WorkflowError(
            f"{option} {text!r}: write NODE.FIELD, e.g. 3.seed or \"Positive Prompt.text\" "
            "(NODE is a node id, a unique title or a unique class)."
        )
    return node, field


def resolve_node(wf: Workflow, ref: str, option: str = "") -> str:
    """A node id from an id, a unique ``_meta.title`` or a unique class_type."""
    if ref in wf.prompt:
        return ref
    for what, match in (
        ("title", [i for i in wf.prompt if wf.title(i) == ref]),
        ("class", [i for i, n in wf.prompt.items() if n["class_type"] == ref]),
    ):
        if len(match) == 1:
            return match[0]
        if len(match) > 1:
            raise WorkflowError(
                f"{option}{' ' if option else ''}{ref!r} matches the {what} of {len(match)} nodes "
                f"({', '.join(match)}); use the node id instead."
            )
    known = ", ".join(f"{i} ({n['class_type']}{', ' + repr(wf.title(i)) if wf.title(i) else ''})" for i, n in wf.prompt.items())
    raise WorkflowError(f"{option}{' ' if option else ''}no node {ref!r} in {wf.source}. Its nodes: {known}.")


@dataclass(frozen=True)
class FieldType:
    """What a field accepts: from the server's schema when known, else from its current value."""

    kind: Kind
    options: tuple[Any, ...] | None = None  # COMBO choices, when known
    minimum: float | None = None
    maximum: float | None = None
    from_schema: bool = False

    def describe(self) -> str:
        if self.kind == "COMBO" and self.options is not None:
            shown = ", ".join(map(str, self.options[:8])) + (", ..." if len(self.options) > 8 else "")
            return f"one of {shown}"
        bounds = ""
        if self.minimum is not None or self.maximum is not None:
            bounds = f" from {self.minimum if self.minimum is not None else '-inf'} to {self.maximum if self.maximum is not None else 'inf'}"
        return {"INT": "a whole number", "FLOAT": "a number", "NUMBER": "a number", "STRING": "text", "BOOLEAN": "true or false"}.get(
            self.kind, "a JSON value"
        ) + bounds


def _schema_input(object_info: Mapping[str, Any] | None, class_type: str, field: str) -> list[Any] | None:
    if not object_info or class_type not in object_info:
        return None
    inputs = object_info[class_type].get("input", {})
    for category in ("required", "optional"):
        spec = (inputs.get(category) or {}).get(field)
        if spec is not None:
            return spec if isinstance(spec, list) else [spec]
    return None


def type_from_spec(spec: list[Any]) -> FieldType:
    """A FieldType from an /object_info input spec ``[type, options?]`` (V1 or V3 combos)."""
    kind_raw = spec[0] if spec else "*"
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(kind_raw, list):
        return FieldType("COMBO", tuple(kind_raw), from_schema=True)
    if kind_raw == "COMBO":
        choices = opts.get("options")
        return FieldType("COMBO", tuple(choices) if isinstance(choices, list) else None, from_schema=True)
    if kind_raw in ("INT", "FLOAT", "STRING", "BOOLEAN"):
        lo, hi = opts.get("min"), opts.get("max")
        kind = cast(Kind, kind_raw)
        return FieldType(kind, None, lo if isinstance(lo, (int, float)) else None,
                         hi if isinstance(hi, (int, float)) else None, from_schema=True)
    return FieldType("ANY", from_schema=True)


def _type_from_value(value: Any) -> FieldType:
    if isinstance(value, bool):
        return FieldType("BOOLEAN")
    if isinstance(value, int):
        return FieldType("NUMBER")
    if isinstance(value, float):
        return FieldType("FLOAT")
    if isinstance(value, str):
        return FieldType("STRING")
    return FieldType("ANY")


def is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)) and isinstance(value[1], int)


def field_type(wf: Workflow, node_id: str, field: str, object_info: Mapping[str, Any] | None = None) -> FieldType:
    """The type of ``node_id.field``; raises WorkflowError for an unknown or linked field."""
    node = wf.prompt[node_id]
    inputs = node["inputs"]
    spec = _schema_input(object_info, node["class_type"], field)
    if field in inputs and is_link(inputs[field]):
        source = str(inputs[field][0])
        raise WorkflowError(
            f"{wf.describe(node_id)}: {field} is connected to node {source}'s output, so it has no value to set. "
            f"Set a field of node {source} instead."
        )
    if spec is not None:
        ftype = type_from_spec(spec)
        if ftype.kind == "ANY" and field in inputs:
            return _type_from_value(inputs[field])
        return ftype
    if field in inputs:
        return _type_from_value(inputs[field])
    fields = [name for name, value in inputs.items() if not is_link(value)]
    raise WorkflowError(
        f"{wf.describe(node_id)} has no field {field!r}. Its fields: {', '.join(fields) or '(none with a value)'}."
    )


def resolve_field(wf: Workflow, text: str, option: str, object_info: Mapping[str, Any] | None = None) -> tuple[FieldRef, FieldType]:
    node_ref, field = parse_field_ref(text, option)
    node_id = resolve_node(wf, node_ref, f"{option} {text!r}:")
    return FieldRef(node_id, field), field_type(wf, node_id, field, object_info)


def _int(text: str) -> int:
    """A whole number; 0x.. hexadecimal too (colours: 0xff0000)."""
    text = text.strip()
    return int(text, 16) if text.lower().lstrip("-+").startswith("0x") else int(text)


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def coerce(value: Any, ftype: FieldType, where: str) -> Any:
    """``value`` (text from the command line, or a number from a range) as ``ftype`` wants it.

    Raises WorkflowError saying what was expected.
    """
    def bad(extra: str = "") -> WorkflowError:
        return WorkflowError(f"{where}: {value!r} is not {ftype.describe()}{extra}.")

    kind = ftype.kind
    out: Any
    if kind == "INT":
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, int):
            out = value
        elif isinstance(value, float):
            if not value.is_integer():
                raise bad()
            out = int(value)
        else:
            try:
                out = _int(str(value))
            except ValueError:
                raise bad() from None
    elif kind == "NUMBER":
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, (int, float)):
            out = value
        else:
            text = str(value).strip()
            try:
                out = _int(text)
            except ValueError:
                try:
                    out = float(text)
                except ValueError:
                    raise bad() from None
    elif kind == "FLOAT":
        if isinstance(value, bool):
            raise bad()
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise bad() from None
    elif kind == "BOOLEAN":
        if isinstance(value, bool):
            out = value
        elif str(value).strip().lower() in _TRUE | _FALSE:
            out = str(value).strip().lower() in _TRUE
        else:
            raise bad()
    elif kind == "STRING":
        out = value if isinstance(value, str) else str(value)
    elif kind == "COMBO":
        # Choices are not enforced: they are often model files, and workers may hold
        # different ones; a worker without it rejects the job (an application error).
        out = value if isinstance(value, str) else str(value)
        if ftype.options is not None and out not in ftype.options:
            match = [o for o in ftype.options if str(o) == out]  # a number-valued combo
            out = match[0] if match else out
    else:
        if isinstance(value, str):
            try:
                out = json.loads(value)
            except ValueError:
                out = value
        else:
            out = value
    if kind in ("INT", "FLOAT", "NUMBER"):
        if isinstance(out, float) and not math.isfinite(out):
            # float() takes nan and inf (and 1e400 becomes inf); no ComfyUI input means them, and
            # JSON cannot carry them: the dry run printed NaN, the real run sent it.
            raise WorkflowError(f"{where}: {value!r} is not a finite number; give {ftype.describe()}.")
        if ftype.minimum is not None and out < ftype.minimum:
            raise bad()
        if ftype.maximum is not None and out > ftype.maximum:
            raise bad()
    return out


def seed_fields(wf: Workflow) -> list[FieldRef]:
    """Sampler seeds: every literal integer input named seed or noise_seed."""
    found = []
    for node_id, node in wf.prompt.items():
        for name in SEED_NAMES:
            value = node["inputs"].get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                found.append(FieldRef(node_id, name))
    return found


def patch(wf: Workflow, values: Mapping[str, Any]) -> Prompt:
    """The prompt with ``values`` (``"node.field" -> value``) applied; keys starting with # are
    bookkeeping (e.g. ``#repeat``) and skipped. Only the touched nodes are copied."""
    prompt = dict(wf.prompt)
    copied: set[str] = set()
    for key, value in values.items():
        if key.startswith("#"):
            continue
        node_id, _, field = key.rpartition(".")
        if node_id not in copied:
            node = prompt[node_id]
            prompt[node_id] = {**node, "inputs": dict(node["inputs"])}
            copied.add(node_id)
        prompt[node_id]["inputs"][field] = value
    return prompt


def tag_outputs(prompt: Prompt, job: str) -> Prompt:
    """Append ``_<job>`` to every literal ``filename_prefix`` (SaveImage and most savers).

    ComfyUI picks a saved file's number by listing the output folder, so two servers sharing
    that folder (every worker of one checkout does) can choose the same name at the same moment
    and overwrite each other's image; a name that carries the job id cannot collide.
    """
    out = dict(prompt)
    for node_id, node in prompt.items():
        value = node["inputs"].get("filename_prefix")
        if isinstance(value, str):
            out[node_id] = {**node, "inputs": {**node["inputs"], "filename_prefix": f"{value}_{job}"}}
    return out


def schema_problems(wf: Workflow, object_info: Mapping[str, Any]) -> list[str]:
    """What the server would reject at once: unknown node classes, and literal values that do not
    fit their schema (type, min/max). Model lists (COMBO choices) are not checked here, because
    workers may hold different model files; the server reports those as a job failure."""
    problems = []
    for node_id, node in wf.prompt.items():
        if node["class_type"] not in object_info:
            problems.append(
                f"{wf.describe(node_id)}: this ComfyUI has no node class {node['class_type']!r} "
                "(a custom node pack that is not installed?)."
            )
            continue
        for field, value in node["inputs"].items():
            if is_link(value):
                continue
            spec = _schema_input(object_info, node["class_type"], field)
            if spec is None:
                continue
            ftype = type_from_spec(spec)
            if ftype.kind == "COMBO":
                continue
            try:
                coerce(value, ftype, f"{wf.describe(node_id)} field {field}")
            except WorkflowError as exc:
                problems.append(exc.message)
    return problems
