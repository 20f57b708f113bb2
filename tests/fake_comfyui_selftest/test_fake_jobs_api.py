"""The fake's /api/jobs routes behave as ComfyUI 0.24's (server.py, comfy_execution/jobs.py)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # starts the fake

_spec = importlib.util.spec_from_file_location("fake_harness", Path(__file__).parents[1] / "fake_comfyui" / "harness.py")
assert _spec is not None and _spec.loader is not None
harness = importlib.util.module_from_spec(_spec)
sys.modules["fake_harness"] = harness
_spec.loader.exec_module(harness)

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 7}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "jobs"}}}


def test_jobs_api_states_and_404_as_comfyui_0_24() -> None:
    env = {"FAKE_COMFYUI_JOBS_API": "1", "FAKE_COMFYUI_HANG_ON_JOB": "1"}
    with harness.running_fake(env=env) as fake:
        assert fake.request("GET", "/api/jobs/nope") == (404, b'{"error": "Job not found"}')
        fake.post_json("/prompt", {"prompt": PROMPT, "prompt_id": "hangs"})
        fake.post_json("/prompt", {"prompt": {**PROMPT, "1": {**PROMPT["1"], "inputs": {**PROMPT["1"]["inputs"], "color": 8}}},
                                   "prompt_id": "waits"})
        harness.wait_until(lambda: fake.get_json("/api/jobs/hangs")["status"] == "in_progress", 10, "the first job to run")
        assert fake.get_json("/api/jobs/waits")["status"] == "pending"
        listed = fake.get_json("/api/jobs?status=pending,in_progress&limit=10")
        assert {j["id"]: j["status"] for j in listed["jobs"]} == {"hangs": "in_progress", "waits": "pending"}
        assert listed["pagination"]["total"] == 2 and listed["pagination"]["has_more"] is False
        assert fake.request("GET", "/api/jobs?status=exploded")[0] == 400
        fake.post_json("/interrupt", {})
        done = harness.wait_until(lambda: (j := fake.get_json("/api/jobs/waits"))["status"] == "completed" and j, 10, "the second job")
        assert done["outputs"]["2"]["images"][0]["filename"].startswith("jobs")
        assert done["execution_status"]["status_str"] == "success"
        assert fake.get_json("/api/jobs/hangs")["status"] == "cancelled"  # interrupted: an error with execution_interrupted


def test_without_the_knob_the_fake_is_a_comfyui_before_0_24() -> None:
    with harness.running_fake() as fake:
        status, body = fake.request("GET", "/api/jobs/nope")
        assert status == 404 and not body.startswith(b"{")


def test_jobs_list_filters_sorts_and_pages_as_comfyui_0_24() -> None:
    with harness.running_fake(env={"FAKE_COMFYUI_JOBS_API": "1"}) as fake:
        for n, workflow in enumerate(("wf-a", "wf-b", "wf-a")):
            prompt = {**PROMPT, "1": {**PROMPT["1"], "inputs": {**PROMPT["1"]["inputs"], "color": 100 + n}}}
            fake.post_json("/prompt", {"prompt": prompt, "prompt_id": f"j{n}",
                                       "extra_data": {"extra_pnginfo": {"workflow": {"id": workflow}}}})
            # one at a time, so create_time and the finishing order are distinct
            harness.wait_until(lambda n=n: fake.get_json(f"/history/j{n}"), 10, f"job j{n}")
        listed = fake.get_json("/api/jobs")
        assert [j["id"] for j in listed["jobs"]] == ["j2", "j1", "j0"]  # created_at, newest first
        assert listed["pagination"] == {"offset": 0, "limit": None, "total": 3, "has_more": False}
        first = listed["jobs"][0]
        assert {"id", "status", "priority", "create_time", "execution_start_time", "execution_end_time",
                "outputs_count", "preview_output", "workflow_id"} == set(first)
        assert first["preview_output"]["nodeId"] == "2" and first["preview_output"]["mediaType"] == "images"
        assert [j["id"] for j in fake.get_json("/api/jobs?sort_order=asc")["jobs"]] == ["j0", "j1", "j2"]
        assert [j["id"] for j in fake.get_json("/api/jobs?workflow_id=wf-a")["jobs"]] == ["j2", "j0"]
        page = fake.get_json("/api/jobs?limit=1&offset=1")
        assert [j["id"] for j in page["jobs"]] == ["j1"] and page["pagination"]["has_more"] is True
        assert fake.get_json("/api/jobs?status=failed")["jobs"] == []
        assert len(fake.get_json("/api/jobs?sort_by=execution_duration")["jobs"]) == 3
        for query, error in (("sort_by=name", "sort_by must be 'created_at' or 'execution_duration'"),
                             ("sort_order=up", "sort_order must be 'asc' or 'desc'"),
                             ("limit=0", "limit must be a positive integer"),
                             ("limit=x", "limit must be an integer"),
                             ("offset=x", "offset must be an integer")):
            status, body = fake.request("GET", f"/api/jobs?{query}")
            assert (status, json.loads(body)) == (400, {"error": error}), query
        one = fake.get_json("/api/jobs/j0")
        assert one["workflow"]["extra_data"]["extra_pnginfo"]["workflow"]["id"] == "wf-a"
        assert one["outputs"]["2"]["images"][0]["filename"].startswith("jobs")
