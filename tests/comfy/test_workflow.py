"""The one workflow model: loading, node/field resolution, typing and patching (comfy/workflow.py)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from comfyrig.comfy.workflow import (
    EXPORT_API_HINT,
    FieldType,
    coerce,
    load_workflow,
    patch,
    require_api_format,
    resolve_field,
    resolve_node,
    schema_problems,
    seed_fields,
    tag_outputs,
    workflow_from_json,
)
from comfyrig.errors import WorkflowError

SD = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 7, "steps": 20, "cfg": 8, "sampler_name": "euler",
                                               "model": ["4", 0], "positive": ["6", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a dog", "clip": ["4", 1]}, "_meta": {"title": "Positive"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}, "_meta": {"title": "Negative"}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x", "hq": True}},
}
INFO = {
    "KSampler": {"input": {"required": {
        "seed": ["INT", {"min": 0, "max": 2**64 - 1, "control_after_generate": True}],
        "steps": ["INT", {"min": 1, "max": 10000}], "cfg": ["FLOAT", {"min": 0.0, "max": 100.0}],
        "sampler_name": [["euler", "dpmpp_2m"]], "model": ["MODEL"], "positive": ["CONDITIONING"]}}},
    "CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [["a.safetensors"]]}}},
    "CLIPTextEncode": {"input": {"required": {"text": ["STRING", {"multiline": True}], "clip": ["CLIP"]}}},
    "SaveImage": {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {}]}}},
}


def wf():  # type: ignore[no-untyped-def]
    return workflow_from_json(json.loads(json.dumps(SD)), "sd.json")


def test_api_and_ui_format_are_told_apart(tmp_path: Path) -> None:
    api = tmp_path / "api.json"
    api.write_text(json.dumps(SD))
    loaded = load_workflow(api)
    assert not loaded.needs_conversion and loaded.prompt == SD and loaded.source == str(api)
    assert require_api_format(loaded, "never said") is loaded
    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps({"nodes": [], "links": []}))
    assert load_workflow(ui).needs_conversion
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"prompt": SD, "client_id": "x", "extra_data": {}}))
    assert load_workflow(wrapped).prompt == SD
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(SD).encode())  # as Windows editors save it
    assert load_workflow(bom).prompt == SD


def test_the_ui_format_is_refused_where_no_server_converts_it(tmp_path: Path) -> None:
    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps({"nodes": [], "links": []}))
    with pytest.raises(WorkflowError) as caught:
        require_api_format(load_workflow(ui), "this needs the API format")
    assert caught.value.message == f"The workflow {ui} is in ComfyUI's UI format (what Save writes); this needs the API format."
    assert caught.value.hint == EXPORT_API_HINT and "Export (API)" in EXPORT_API_HINT
    with pytest.raises(WorkflowError) as caught:
        require_api_format(load_workflow(ui), "no server", alternative="Pass --url.")
    assert caught.value.hint is not None and caught.value.hint.startswith("Pass --url. Or: in ComfyUI, open the workflow")


# Every kind of bad input, and the one message the loader gives for it ({path} is the file).
BAD_FILES: list[tuple[str, bytes | None, str]] = [
    ("missing", None, "The workflow {path} does not exist."),
    ("folder", None, "The workflow {path} is a folder, not a file"),
    ("fifo", None, "The workflow {path} is a FIFO (named pipe), not a file"),
    ("device", None, "The workflow {path} is a character device, not a file"),
    ("latin-1", '{"1": "caf\xe9"}'.encode("latin-1"),
     "The workflow {path} is not UTF-8 text (byte 10 is 0xe9); save it as UTF-8."),
    ("utf-16", '{"1": {}}'.encode("utf-16"), "The workflow {path} is UTF-16 text; save it as UTF-8."),
    ("nan", b'{"1": {"class_type": "A", "inputs": {"x": NaN}}}', "The workflow {path} is not valid JSON: NaN is not a JSON value."),
    ("ui inputs not array", b'{"nodes": [{"id": 1, "type": "KSampler", "inputs": 5}], "links": []}',
     "The workflow {path}: the inputs of node 1 is a JSON number, not an array; the UI-format file is damaged."),
    ("ui node not object", b'{"nodes": [3], "links": []}', "The workflow {path}: nodes[0] is a JSON number, not an object"),
    ("ui bad link", b'{"nodes": [], "links": [[1, 2]]}', "The workflow {path}: links[0] is not [id, from node"),
    ("bad json", b'{"1": {"class_type": "A",\n  "inputs": {]}}',
     "The workflow {path} is not valid JSON: Expecting property name enclosed in double quotes at line 2, column 14."),
    ("empty file", b"", "The workflow {path} is not valid JSON: Expecting value at line 1, column 1."),
    ("array", b"[1, 2]", (
        "The workflow {path} is a JSON array, not a ComfyUI workflow: expected the API format (an object of nodes, "
        "each with class_type and inputs) or the UI format (an object with nodes and links).")),
    ("string", b'"KSampler"', "The workflow {path} is a JSON string, not a ComfyUI workflow"),
    ("empty object", b"{}", "The workflow {path} has no nodes: it is an empty JSON object."),
    ("empty prompt", b'{"prompt": {}}', "The workflow {path} has no nodes: it is an empty JSON object."),
    ("node not object", b'{"1": 5}', (
        "The workflow {path}: node 1 is a JSON number, not an object with class_type and inputs, "
        "so this is not an API-format workflow.")),
    ("no class_type", b'{"1": {"inputs": {}}}',
     "The workflow {path}: node 1 has no class_type, so this is not an API-format workflow."),
    ("inputs not object", b'{"1": {"class_type": "KSampler", "inputs": [1]}}',
     "The workflow {path}: the inputs of node 1 (KSampler) are not an object."),
    ("dangling link", b'{"1": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0]}}}',
     "The workflow {path}: node 1 (VAEDecode) takes samples from node 9, which is not in the workflow."),
]


def write_bad(path: Path, name: str, content: bytes | None) -> Path:
    """The bad input ``name`` at ``path`` (a folder for "folder", nothing for "missing")."""
    if name == "folder":
        path.mkdir()
    elif name == "fifo":
        os.mkfifo(path)  # opening it for reading would wait for a writer forever
    elif name == "device":
        path.symlink_to("/dev/zero")  # reading it would fill memory
    elif content is not None:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("name, content, expected", BAD_FILES, ids=[n for n, _, _ in BAD_FILES])
def test_every_bad_input_names_the_file_and_why(tmp_path: Path, name: str, content: bytes | None, expected: str) -> None:
    path = write_bad(tmp_path / "w.json", name, content)
    with pytest.raises(WorkflowError) as caught:
        load_workflow(path)
    assert caught.value.message.startswith(expected.format(path=path))


def test_nodes_by_id_title_or_unique_class() -> None:
    w = wf()
    assert resolve_node(w, "3") == "3"
    assert resolve_node(w, "Positive") == "6"
    assert resolve_node(w, "KSampler") == "3"
    with pytest.raises(WorkflowError, match="matches the class of 2 nodes"):
        resolve_node(w, "CLIPTextEncode")
    with pytest.raises(WorkflowError, match=r"no node 'Sampler'.*3 \(KSampler\)"):
        resolve_node(w, "Sampler")


def test_fields_are_checked_against_the_workflow() -> None:
    w = wf()
    ref, ftype = resolve_field(w, "Positive.text", "--set")
    assert (ref.key, ftype.kind) == ("6.text", "STRING")
    with pytest.raises(WorkflowError, match=re.escape("has no field 'sed'. Its fields: seed, steps, cfg, sampler_name")):
        resolve_field(w, "3.sed", "--set")
    with pytest.raises(WorkflowError, match="model is connected to node 4"):
        resolve_field(w, "3.model", "--set")
    with pytest.raises(WorkflowError, match=re.escape("write NODE.FIELD")):
        resolve_field(w, "seed", "--set")


def test_types_from_values_and_from_the_schema() -> None:
    w = wf()
    assert resolve_field(w, "3.cfg", "--set")[1].kind == "NUMBER"  # 8 in the file, FLOAT on the server
    assert resolve_field(w, "3.cfg", "--set", INFO)[1].kind == "FLOAT"
    assert resolve_field(w, "9.hq", "--set")[1].kind == "BOOLEAN"
    sampler = resolve_field(w, "3.sampler_name", "--set", INFO)[1]
    assert sampler.kind == "COMBO" and sampler.options == ("euler", "dpmpp_2m")


@pytest.mark.parametrize("value, ftype, expected", [
    ("42", FieldType("INT"), 42),
    (3.0, FieldType("INT"), 3),
    ("0x10", FieldType("INT"), 16),
    ("7.5", FieldType("NUMBER"), 7.5),
    ("8", FieldType("NUMBER"), 8),
    ("0xff0000", FieldType("NUMBER"), 0xFF0000),
    ("1e-3", FieldType("FLOAT"), 0.001),
    ("Yes", FieldType("BOOLEAN"), True),
    ("off", FieldType("BOOLEAN"), False),
    (12, FieldType("STRING"), "12"),
    ('{"a": 1}', FieldType("ANY"), {"a": 1}),
    ("dpmpp_2m", FieldType("COMBO", ("euler", "dpmpp_2m")), "dpmpp_2m"),
    ("other.safetensors", FieldType("COMBO", ("a.safetensors",)), "other.safetensors"),  # model lists differ by worker
])
def test_coerce(value: object, ftype: FieldType, expected: object) -> None:
    assert coerce(value, ftype, "x") == expected


@pytest.mark.parametrize("value, ftype", [
    ("4.5", FieldType("INT")), ("abc", FieldType("FLOAT")), ("maybe", FieldType("BOOLEAN")),
    (True, FieldType("INT")), ("0", FieldType("INT", minimum=1)), ("200", FieldType("FLOAT", maximum=100.0)),
])
def test_coerce_rejects(value: object, ftype: FieldType) -> None:
    with pytest.raises(WorkflowError, match="is not"):
        coerce(value, ftype, "--set 3.steps")


def test_patch_copies_only_what_it_changes() -> None:
    w = wf()
    prompt = patch(w, {"3.seed": 1, "6.text": "a cat", "#repeat": 2})
    assert prompt["3"]["inputs"]["seed"] == 1 and prompt["6"]["inputs"]["text"] == "a cat"
    assert w.prompt["3"]["inputs"]["seed"] == 7 and w.prompt["6"]["inputs"]["text"] == "a dog"
    assert prompt["4"] is w.prompt["4"]
    assert "#repeat" not in json.dumps(prompt)


def test_saved_file_names_carry_the_job_id() -> None:
    prompt = tag_outputs(patch(wf(), {"9.filename_prefix": "run/cat"}), "0123abcd")
    assert prompt["9"]["inputs"]["filename_prefix"] == "run/cat_0123abcd"
    assert prompt["3"] is wf().prompt["3"] or prompt["3"] == wf().prompt["3"]


def test_seed_fields_and_digest() -> None:
    w = wf()
    assert [r.key for r in seed_fields(w)] == ["3.seed"]
    assert w.digest == wf().digest and len(w.digest) == 64


def test_schema_problems_name_node_and_field() -> None:
    w = workflow_from_json({**json.loads(json.dumps(SD)), "10": {"class_type": "Upscaler9000", "inputs": {}}}, "x")
    w.prompt["3"]["inputs"]["steps"] = 0
    problems = schema_problems(w, INFO)
    assert any("node 10 (Upscaler9000)" in p and "no node class" in p for p in problems)
    assert any("node 3 (KSampler) field steps" in p for p in problems)
