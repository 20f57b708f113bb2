"""UI-format -> API-format conversion with /object_info (comfy/convert.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from comfyrig.comfy.convert import convert_ui
from comfyrig.comfy.workflow import workflow_from_json
from comfyrig.errors import WorkflowError


def schema(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    inputs = {"required": required, **({"optional": optional} if optional else {})}
    return {"input": inputs, "input_order": {k: list(v) for k, v in inputs.items()}, "display_name": None}


OBJECT_INFO = {
    "EmptyImage": schema({"width": ["INT", {"min": 1}], "height": ["INT", {"min": 1}], "batch_size": ["INT", {}], "color": ["INT", {}]}),
    "ImageBlur": schema({"image": ["IMAGE", {}], "blur_radius": ["INT", {}], "sigma": ["FLOAT", {}]}),
    "ImageInvert": schema({"image": ["IMAGE"]}),
    "SaveImage": schema({"images": ["IMAGE", {}], "filename_prefix": ["STRING", {}]}),
    "KSampler": schema({"model": ["MODEL"], "seed": ["INT", {"control_after_generate": True}], "steps": ["INT", {}],
                        "sampler_name": [["euler", "ddim"]], "denoise": ["FLOAT", {}]}),
    "LoadImage": schema({"image": [["a.png", "b.png"], {"image_upload": True}]}),
    "UNETLoader": schema({"unet_name": [["u.safetensors"]]}),
}


def node(id_: int, type_: str, widgets: list[Any] | None = None, inputs: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": id_, "type": type_, "widgets_values": widgets or [], "inputs": inputs or [], "mode": 0, **extra}


def link_in(name: str, link: int | None, kind: str = "IMAGE", widget: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "type": kind, "link": link}
    if widget:
        out["widget"] = {"name": name}
    return out


BASE = {
    "nodes": [
        node(1, "EmptyImage", [64, 32, 1, 0xFF0000], [link_in("width", 7, "INT", widget=True)], title="Canvas"),
        node(2, "ImageBlur", [3, 1.5], [link_in("image", 1)]),
        node(11, "ImageInvert", [], [link_in("image", 2)], mode=4),  # bypassed: passes the blur through
        node(8, "Reroute", [], [link_in("", 3, "*")]),
        node(3, "SaveImage", ["pics/run"], [link_in("images", 4)]),
        node(12, "SaveImage", ["muted"], [link_in("images", 5)], mode=2),
        node(9, "Note", ["remember the milk"]),
        node(10, "PrimitiveNode", [100, "fixed"]),
    ],
    "links": [
        [1, 1, 0, 2, 0, "IMAGE"],
        [2, 2, 0, 11, 0, "IMAGE"],
        [3, 11, 0, 8, 0, "IMAGE"],
        [4, 8, 0, 3, 0, "IMAGE"],
        [5, 1, 0, 12, 0, "IMAGE"],
        [7, 10, 0, 1, 0, "INT"],
    ],
}


def convert(ui: dict[str, Any]) -> dict[str, Any]:
    return convert_ui(workflow_from_json(ui, "ui.json"), OBJECT_INFO).prompt


def test_widgets_links_reroutes_primitives_bypass_and_mute() -> None:
    prompt = convert(copy.deepcopy(BASE))
    assert set(prompt) == {"1", "2", "3"}  # bypassed, muted, reroute, primitive and note are gone
    assert prompt["1"] == {"class_type": "EmptyImage", "_meta": {"title": "Canvas"},
                           "inputs": {"width": 100, "height": 32, "batch_size": 1, "color": 0xFF0000}}
    assert prompt["2"]["inputs"] == {"blur_radius": 3, "sigma": 1.5, "image": ["1", 0]}
    assert prompt["3"]["inputs"] == {"filename_prefix": "pics/run", "images": ["2", 0]}  # through reroute and bypass
    assert prompt["3"]["_meta"] == {"title": "SaveImage"}


@pytest.mark.parametrize("control", ["randomize", "fixed", "increment"])
def test_seed_control_value_is_skipped(control: str) -> None:
    ui = {"nodes": [node(1, "UNETLoader", ["u.safetensors"]),
                    node(5, "KSampler", [123, control, 20, "ddim", 0.75], [link_in("model", 1, "MODEL")])],
          "links": [[1, 1, 0, 5, 0, "MODEL"]]}
    inputs = convert(ui)["5"]["inputs"]
    assert inputs == {"seed": 123, "steps": 20, "sampler_name": "ddim", "denoise": 0.75, "model": ["1", 0]}


def test_seed_without_control_value_old_frontend() -> None:
    ui = {"nodes": [node(1, "UNETLoader", ["u.safetensors"]),
                    node(5, "KSampler", [123, 20, "ddim", 0.75], [link_in("model", 1, "MODEL")])],
          "links": [[1, 1, 0, 5, 0, "MODEL"]]}
    assert convert(ui)["5"]["inputs"]["steps"] == 20


def test_upload_button_value_is_skipped() -> None:
    ui = {"nodes": [node(1, "LoadImage", ["b.png", "image"]), node(2, "SaveImage", ["x"], [link_in("images", 1)])],
          "links": [[1, 1, 0, 2, 0, "IMAGE"]]}
    assert convert(ui)["1"]["inputs"] == {"image": "b.png"}


def test_dict_widget_values() -> None:
    ui = copy.deepcopy(BASE)
    ui["nodes"][1]["widgets_values"] = {"blur_radius": 5, "sigma": 2.0}
    assert convert(ui)["2"]["inputs"]["blur_radius"] == 5


@pytest.mark.parametrize("change, needle", [
    (lambda ui: ui["nodes"].append(node(20, "SetNode", ["x"])), "node 20 \\(SetNode\\): the server has no node class"),
    (lambda ui: ui["nodes"][1].update(widgets_values=["three", 1.5]), "node 2 \\(ImageBlur\\): widget value 1 \\('three'\\)"),
    (lambda ui: ui["nodes"][4].update(inputs=[link_in("images", None)]), "node 3 \\(SaveImage\\): required input\\(s\\) images"),
    (lambda ui: ui["nodes"][2].update(inputs=[link_in("image", None)]), "node 3 \\(SaveImage\\): its required input 'images' comes from a muted or bypassed"),
    (lambda ui: ui.update(definitions={"subgraphs": [{"id": "SaveImage"}]}), "is a subgraph"),
])
def test_impossible_conversions_name_the_node(change: Any, needle: str) -> None:
    ui = copy.deepcopy(BASE)
    change(ui)
    with pytest.raises(WorkflowError, match=needle):
        convert(ui)


def test_new_style_link_objects() -> None:
    ui = copy.deepcopy(BASE)
    ui["links"] = [{"id": l[0], "origin_id": l[1], "origin_slot": l[2], "target_id": l[3], "target_slot": l[4], "type": l[5]}
                   for l in ui["links"]]
    assert convert(ui) == convert(copy.deepcopy(BASE))
