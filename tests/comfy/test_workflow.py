"""Workflow loading, node/field resolution, typing and patching (batch/workflow.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfyrig.comfy.workflow import (
    FieldType,
    coerce,
    load_workflow,
    patch,
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
    assert not load_workflow(api).needs_conversion
    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps({"nodes": [], "links": []}))
    assert load_workflow(ui).needs_conversion
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"prompt": SD}))
    assert set(load_workflow(wrapped).prompt) == set(SD)


@pytest.mark.parametrize("text, needle", [
    ("[1,2", "not JSON"),
    ('{"1": {"inputs": {}}}', "node 1 has no class_type"),
    ("[]", "not a ComfyUI workflow"),
])
def test_bad_files_say_why(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "w.json"
    path.write_text(text)
    with pytest.raises(WorkflowError, match=needle):
        load_workflow(path)
    with pytest.raises(WorkflowError, match="Cannot read"):
        load_workflow(tmp_path / "missing.json")


def test_nodes_by_id_title_or_unique_class() -> None:
    w = wf()
    assert resolve_node(w, "3") == "3"
    assert resolve_node(w, "Positive") == "6"
    assert resolve_node(w, "KSampler") == "3"
    with pytest.raises(WorkflowError, match="matches the class of 2 nodes"):
        resolve_node(w, "CLIPTextEncode")
    with pytest.raises(WorkflowError, match="no node 'Sampler'.*3 \\(KSampler\\)"):
        resolve_node(w, "Sampler")


def test_fields_are_checked_against_the_workflow() -> None:
    w = wf()
    ref, ftype = resolve_field(w, "Positive.text", "--set")
    assert (ref.key, ftype.kind) == ("6.text", "STRING")
    with pytest.raises(WorkflowError, match="has no field 'sed'. Its fields: seed, steps, cfg, sampler_name"):
        resolve_field(w, "3.sed", "--set")
    with pytest.raises(WorkflowError, match="model is connected to node 4"):
        resolve_field(w, "3.model", "--set")
    with pytest.raises(WorkflowError, match="write NODE.FIELD"):
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
