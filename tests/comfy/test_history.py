"""Reading history entries and a rejected prompt's 400 body (comfy/history.py)."""

from __future__ import annotations

from comfyrig.comfy.history import classify_history, output_refs, summarize_400


def test_history_classification() -> None:
    ok = {"status": {"status_str": "success", "completed": True, "messages": [["execution_start", {}]]}}
    assert classify_history(ok) == ("success", {})
    err = {"status": {"status_str": "error", "messages": [["execution_error", {
        "node_id": "4", "node_type": "FakeSleep", "exception_type": "RuntimeError", "exception_message": "boom\n"}]]}}
    assert classify_history(err) == ("error", {"node": "4", "class_type": "FakeSleep", "exception_type": "RuntimeError", "message": "boom"})
    stop = {"status": {"status_str": "error", "messages": [["execution_interrupted", {"node_id": "2", "node_type": "X"}]]}}
    assert classify_history(stop)[0] == "interrupted"
    assert classify_history({"status": {"status_str": "error", "messages": []}})[0] == "unknown"


def test_output_refs_only_saved_files() -> None:
    entry = {"outputs": {
        "10": {"images": [{"filename": "b.png", "subfolder": "", "type": "output"}]},
        "9": {"images": [{"filename": "a.png", "subfolder": "s", "type": "output"},
                         {"filename": "prev.png", "subfolder": "", "type": "temp"}],
              "text": ["not a file"]},
    }}
    assert [(node, ref["filename"]) for node, ref in output_refs(entry)] == [("9", "a.png"), ("10", "b.png")]


def test_summarize_400() -> None:
    no_prompt = {"error": {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided",
                           "extra_info": {}}, "node_errors": {}}
    assert summarize_400(no_prompt) == {"error_type": "no_prompt", "message": "No prompt provided: No prompt provided"}
    assert summarize_400(None) == {"message": "ComfyUI rejected the prompt (HTTP 400)"}
    # The first node by id, numerically: "4" before "10".
    two = {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"},
           "node_errors": {"10": {"class_type": "B", "errors": [{"type": "t", "message": "m10"}]},
                           "4": {"class_type": "A", "errors": [{"type": "t", "message": "m4", "details": "d"}]}}}
    assert summarize_400(two)["node"] == "4" and summarize_400(two)["message"] == "m4: d"
