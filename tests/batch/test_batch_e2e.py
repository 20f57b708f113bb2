"""``comfyrig batch`` against fake ComfyUI servers (real processes), with faults.

comfyrig itself runs in this process (``run``) unless the test is about its process: killed,
or interrupted by a signal (``cli`` and Launched).

Workers are either a local fleet (COMFYRIG_FAKE_GPUS GPUs, one fake ComfyUI each, started by
comfyrig) or fakes started here and passed with --url. Waits poll output or state with deadlines.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from ..conftest import Cli, InProcessCli
from ..launching import Launched, wait_until
from .e2e import FAKE_DIR, IMAGE_WF, SLEEP_WF, attempts, check_invariants, harness, rows, write

pytestmark = pytest.mark.e2e  # starts real processes


def fleet_args(cli: Cli, tmp_path: Path, gpus: int = 2) -> list[str]:
    cli.gpus(gpus)
    port = harness.free_port()
    return ["--comfyui-dir", str(FAKE_DIR), "--python", sys.executable, "--port", str(port),
            "--comfyui-args", f"--output-directory {tmp_path / 'comfy-out'}", "--plain"]


@pytest.fixture
def fakes(tmp_path: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    with ExitStack() as stack:
        def start(n: int, env: dict[str, str] | None = None) -> object:
            out = tmp_path / f"fake-out-{n}"
            return stack.enter_context(harness.running_fake(env=env or {}, args=["--output-directory", str(out)]))
        yield start


def test_fleet_sweep_then_resume_skips_everything(run: InProcessCli, tmp_path: Path) -> None:
    wf = write(tmp_path / "wf.json", IMAGE_WF)
    args = ["batch", str(wf), "--out", str(tmp_path / "out"), "--sweep", "Canvas.color=1..6", "--sweep", "1.width=4|8",
            *fleet_args(run, tmp_path)]
    dry = run(*args, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["jobs"] == 12 and plan["first"][1]["values"] == {"1.color": 1, "1.width": 8}
    assert [w["gpu"] for w in plan["workers"]] == ["GPU 0", "GPU 1"]
    first = run(*args, "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    report = json.loads(first.stdout)
    assert (report["done"], report["failed"], report["output_files"]) == (12, 0, 12)
    assert {w["gpu"] for w in report["workers"]} == {"GPU 0", "GPU 1"}
    out = tmp_path / "out"
    assert check_invariants(out, total=12) == {"done": 12, "failed": 0, "pending": 0, "files": 12}
    # Each file is the job's own image: width and the inverted colour from its variation.
    for job in rows(out):
        values = json.loads(job["vars"])
        output = json.loads(job["outputs"])[0]
        # Both workers save into one folder: the job id in the name keeps them from colliding.
        assert output["source"].startswith(f"batch_{job['id']}_")
        width, height, rgb, _ = harness.decode_png((out / output["path"]).read_bytes())
        assert (width, height) == (values["1.width"], 8)
        assert rgb[:3] == bytes(255 - b for b in values["1.color"].to_bytes(3, "big"))
    before = {p.name: p.stat().st_mtime_ns for p in (out / "outputs").iterdir()}
    again = run(*args, "--json")
    assert again.returncode == 0
    report = json.loads(again.stdout)
    assert (report["done_before"], report["done_this_run"]) == (12, 0)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "outputs").iterdir()} == before
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 12


def test_crash_hang_and_execution_errors(run: InProcessCli, tmp_path: Path, fakes: callable) -> None:  # type: ignore[valid-type]
    crashing = fakes(0, {"FAKE_COMFYUI_CRASH_ON_JOB": "2"})
    hanging = fakes(1, {"FAKE_COMFYUI_HANG_ON_JOB": "2"})
    healthy = fakes(2)
    wf = write(tmp_path / "wf.json", SLEEP_WF)
    out = tmp_path / "out"
    result = run("batch", str(wf), "--out", str(out), "--sweep", "1.color=1..6", "--sweep", "4.fail=false|true",
                 "--url", crashing.url, "--url", hanging.url, "--url", healthy.url, "--job-timeout", "1", "--plain", "--json")
    assert result.returncode == 1, result.stdout + result.stderr  # the fail=true jobs failed
    report = json.loads(result.stdout)
    assert (report["done"], report["failed"], report["unfinished"]) == (6, 6, 0)
    assert check_invariants(out, total=12) == {"done": 6, "failed": 6, "pending": 0, "files": 6}
    for failure in report["failures"]:
        assert failure["values"]["4.fail"] is True
        assert (failure["kind"], failure["node"], failure["class_type"], failure["exception_type"]) == (
            "application", "4", "FakeSleep", "RuntimeError")
        assert failure["message"] == "FakeSleep was asked to fail"
    tries = attempts(out)
    retried = [a for a in tries if a["outcome"] == "requeued"]
    kinds = {json.loads(a["reason"])["kind"] for a in retried}
    # (a download cut short by the crash adds a "system" retry; both faults must be there)
    assert {"worker-lost", "hang"} <= kinds, retried
    assert crashing.proc.poll() is not None  # it really died
    assert "interrupting" in result.stderr + result.stdout or any("hung" in (a["reason"] or "") for a in retried)


def test_fleet_restarts_a_worker_killed_mid_job(run: InProcessCli, tmp_path: Path) -> None:
    wf = write(tmp_path / "wf.json", SLEEP_WF)
    out = tmp_path / "out"
    args = ["batch", str(wf), "--out", str(out), "--sweep", "1.color=1..6", "--retries", "4", *fleet_args(run, tmp_path)]
    result = run(*args, env={"FAKE_COMFYUI_CRASH_ON_JOB": "3"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert check_invariants(out, total=6) == {"done": 6, "failed": 0, "pending": 0, "files": 6}
    text = result.stdout
    assert "exited with code 1" in text and text.count(": up at ") >= 3, text  # died, restarted, served again
    assert any(a["outcome"] == "requeued" for a in attempts(out))


def test_rejected_prompts_fail_without_retry(run: InProcessCli, tmp_path: Path, fakes: callable) -> None:  # type: ignore[valid-type]
    server = fakes(0)
    wf = write(tmp_path / "wf.json", {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux.safetensors", "weight_dtype": "default"}},
        "4": {"class_type": "FakeSleep", "inputs": {"seconds": 0, "steps": 1, "any": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "x"}},
    })
    out = tmp_path / "out"
    result = run("batch", str(wf), "--out", str(out), "--sweep", "1.weight_dtype=default|fp8_e4m3fn", "--url", server.url, "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert (report["done"], report["failed"]) == (0, 2)
    failure = report["failures"][0]
    assert (failure["node"], failure["class_type"], failure["exception_type"]) == ("1", "UNETLoader", "value_not_in_list")
    assert "unet_name: 'flux.safetensors' not in []" in failure["message"]
    assert [a["attempt"] for a in attempts(out)] == [1, 1]
    check_invariants(out, total=2)
    # Resuming leaves failed jobs alone; --retry-failed runs them again.
    assert run("batch", str(wf), "--out", str(out), "--sweep", "1.weight_dtype=default|fp8_e4m3fn", "--url", server.url).returncode == 1
    assert len(attempts(out)) == 2
    again = run("batch", str(wf), "--out", str(out), "--sweep", "1.weight_dtype=default|fp8_e4m3fn", "--url", server.url, "--retry-failed")
    assert again.returncode == 1
    assert sorted(a["attempt"] for a in attempts(out)) == [1, 1, 2, 2]
    check_invariants(out, total=2)


def test_unknown_node_or_field_stops_before_any_job(run: InProcessCli, tmp_path: Path, fakes: callable) -> None:  # type: ignore[valid-type]
    server = fakes(0)
    wf = write(tmp_path / "wf.json", IMAGE_WF)
    for bad, needle in (("--set=Canvas.colour=3", "has no field 'colour'. Its fields: width, height, batch_size, color"),
                        ("--sweep=9.seed=1..3", "no node '9'"),
                        ("--sweep=1.width=8|99999", "is not a whole number from 1 to 16384")):
        result = run("batch", str(wf), "--out", str(tmp_path / "out"), bad, "--url", server.url)
        assert result.returncode == 2 and needle in " ".join(result.stderr.split()), result.stderr
    assert server.get_json("/history") == {}  # nothing was sent


@pytest.mark.parametrize("jobs_api", [False, True], ids=["history-and-queue", "jobs-api-0.24"])
def test_dispatcher_killed_then_resumed_recovers_from_history(cli: Cli, tmp_path: Path, fakes: callable, jobs_api: bool) -> None:  # type: ignore[valid-type]
    # Recovery asks each server where its prompts stand: /history and /queue before ComfyUI
    # 0.24, /api/jobs/{id} on 0.24; the same outcome either way.
    slow = {"FAKE_COMFYUI_JOB_SECONDS": "0.3", **({"FAKE_COMFYUI_JOBS_API": "1"} if jobs_api else {})}
    a, b = fakes(0, slow), fakes(1, slow)
    wf = write(tmp_path / "wf.json", SLEEP_WF)
    out = tmp_path / "out"
    args = ["batch", str(wf), "--out", str(out), "--sweep", "1.color=1..10", "--url", a.url, "--url", b.url, "--plain"]
    run = Launched(args, cli.env, cli.cwd)
    try:
        run.wait_for("done ", timeout=30, count=3)
        os.kill(run.proc.pid, signal.SIGKILL)
        run.wait()
    finally:
        run.kill()
    assert "submitted" in {r["state"] for r in rows(out)}  # killed with jobs in flight
    again = cli(*args[:-1], "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert check_invariants(out, total=10)["done"] == 10
    # Nothing ran twice: the jobs in flight were found in /history/{prompt_id}, so the servers saved
    # exactly one image per job. Only a job killed between its journal entry and its POST (a
    # window of microseconds) may go again, as attempt 2, after the server said it never got it.
    for row in rows(out):
        if row["attempt"] > 1:
            first = next(a for a in attempts(out) if a["job_id"] == row["id"] and a["attempt"] == 1)
            assert first["outcome"] == "released" and "no longer knows it" in first["reason"]
    assert sum(r["attempt"] == 1 for r in rows(out)) >= 9
    saved = [p for n in (0, 1) for p in (tmp_path / f"fake-out-{n}").glob("*.png")]
    assert len(saved) == 10


def test_ctrl_c_lets_running_jobs_finish_then_resume(cli: Cli, tmp_path: Path, fakes: callable) -> None:  # type: ignore[valid-type]
    server = fakes(0, {"FAKE_COMFYUI_JOB_SECONDS": "0.4"})
    wf = write(tmp_path / "wf.json", SLEEP_WF)
    out = tmp_path / "out"
    args = ["batch", str(wf), "--out", str(out), "--sweep", "1.color=1..6", "--url", server.url, "--plain"]
    run = Launched(args, cli.env, cli.cwd)
    try:
        run.wait_for("done ", timeout=30)
        run.interrupt()
        assert run.wait(timeout=30) == 130
    finally:
        run.kill()
    assert "interrupted: no new jobs" in run.text
    state = check_invariants(out, total=6, finished=False)
    assert state["done"] >= 2 and state["pending"] >= 1  # the running job finished; the rest waits
    assert json.loads((out / "report.json").read_text())["interrupted"] is True
    again = cli(*args)
    assert again.returncode == 0
    assert check_invariants(out, total=6)["done"] == 6


UI_WF = {
    "nodes": [
        {"id": 1, "type": "EmptyImage", "mode": 0, "inputs": [], "widgets_values": [6, 4, 1, 0x102030], "title": "Canvas"},
        {"id": 2, "type": "ImageBlur", "mode": 0, "inputs": [{"name": "image", "type": "IMAGE", "link": 1}], "widgets_values": [1, 1.0]},
        {"id": 3, "type": "SaveImage", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 2}], "widgets_values": ["ui"]},
        {"id": 4, "type": "Note", "mode": 0, "inputs": [], "widgets_values": ["from the UI"]},
    ],
    "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]],
}


def test_ui_format_workflow_is_converted(run: InProcessCli, tmp_path: Path, fakes: callable) -> None:  # type: ignore[valid-type]
    server = fakes(0)
    wf = write(tmp_path / "ui.json", UI_WF)
    out = tmp_path / "out"
    dry = run("batch", str(wf), "--out", str(out), "--sweep", "Canvas.color=1|2", "--url", server.url, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["jobs"] == 2 and not out.exists()
    result = run("batch", str(wf), "--out", str(out), "--sweep", "Canvas.color=1|2", "--url", server.url, "--json")
    assert result.returncode == 0, result.stderr
    files = sorted((out / "outputs").iterdir())
    assert [harness.decode_png(p.read_bytes())[:2] for p in files] == [(6, 4), (6, 4)]
    no_server = run("batch", str(wf), "--out", str(out), "--dry-run", "--comfyui-dir", str(FAKE_DIR), "--python", sys.executable)
    assert no_server.returncode == 2 and "UI format" in no_server.stderr


def test_second_ctrl_c_interrupts_running_jobs(cli: Cli, tmp_path: Path, fakes: callable) -> None:  # type: ignore[valid-type]
    server = fakes(0, {"FAKE_COMFYUI_JOB_SECONDS": "30"})
    wf = write(tmp_path / "wf.json", SLEEP_WF)
    out = tmp_path / "out"
    run = Launched(["batch", str(wf), "--out", str(out), "--sweep", "1.color=1..4", "--url", server.url, "--plain"], cli.env, cli.cwd)
    try:
        wait_until(lambda: server.get_json("/queue")["queue_running"], 30, "a job to run")
        run.interrupt()
        run.wait_for("running jobs finish")
        run.interrupt()
        assert run.wait(timeout=30) == 130
    finally:
        run.kill()
    assert "interrupting the running jobs" in run.text
    assert check_invariants(out, total=4, finished=False) == {"done": 0, "failed": 0, "pending": 4, "files": 0}
    assert server.get_json("/queue") == {"queue_running": [], "queue_pending": []}
    assert {json.loads(a["reason"])["kind"] for a in attempts(out)} <= {"interrupted", "cancelled"}


def test_a_dry_run_checks_values_against_a_running_servers_schema(run: InProcessCli, tmp_path: Path, fakes: callable) -> None:  # type: ignore[valid-type]
    """Issue 16 item 17: 1.width=1.5 passed a dry run (the workflow's 8 may be a FLOAT saved whole)."""
    server = fakes(0)
    wf = write(tmp_path / "wf.json", IMAGE_WF)
    bad = run("batch", str(wf), "--out", str(tmp_path / "o"), "--sweep", "1.width=1.5|2", "--url", server.url, "--dry-run", "--json")
    assert bad.returncode == 2 and "'1.5' is not a whole number" in " ".join(bad.stderr.split()), bad.stderr
    down = run("batch", str(wf), "--out", str(tmp_path / "o"), "--sweep", "1.width=1.5|2", "--url", "http://127.0.0.1:9",
               "--dry-run", "--json")
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["warnings"][0].startswith("values were checked against the workflow only")


def test_a_second_batch_on_the_same_out_is_refused_at_start(cli: Cli, tmp_path: Path, fakes: callable) -> None:  # type: ignore[valid-type]
    """Issue 16 item 19: the second batch used to fail on the journal in the middle of its run."""
    server = fakes(0, {"FAKE_COMFYUI_JOB_SECONDS": "30"})
    wf = write(tmp_path / "wf.json", SLEEP_WF)
    out = tmp_path / "out"
    args = ["batch", str(wf), "--out", str(out), "--sweep", "1.color=1..2", "--url", server.url, "--plain"]
    first = Launched(args, cli.env, cli.cwd)
    try:
        wait_until(lambda: server.get_json("/queue")["queue_running"], 30, "a job to run")
        second = cli(*args)
        assert second.returncode == 2, second.stderr
        assert f"Another batch is running on {out} (pid {first.proc.pid})" in " ".join(second.stderr.split())
        first.interrupt()
        first.wait_for("running jobs finish")
        first.interrupt()
        assert first.wait(timeout=30) == 130
    finally:
        first.kill()
    assert check_invariants(out, total=2, finished=False)["pending"] == 2  # the refused run changed nothing


def test_cached_prompts_still_deliver_their_files(run: InProcessCli, tmp_path: Path) -> None:
    # The same prompts again on the same server: ComfyUI answers from its cache without saving a
    # new file, and its history still lists the earlier outputs, which are downloaded.
    with harness.running_fake(args=["--output-directory", str(tmp_path / "fake-out"), "--cache-lru", "50"]) as server:
        wf = write(tmp_path / "wf.json", IMAGE_WF)
        args = ["--sweep", "1.color=1..4", "--url", server.url, "--json"]
        assert run("batch", str(wf), "--out", str(tmp_path / "first"), *args).returncode == 0
        saved = sorted(p.name for p in (tmp_path / "fake-out").iterdir())
        again = run("batch", str(wf), "--out", str(tmp_path / "second"), *args)
        assert again.returncode == 0, again.stderr
        assert sorted(p.name for p in (tmp_path / "fake-out").iterdir()) == saved  # nothing ran again
    assert check_invariants(tmp_path / "second", total=4)["files"] == 4
    first = {j["id"]: json.loads(j["outputs"])[0]["sha256"] for j in rows(tmp_path / "first")}
    second = {j["id"]: json.loads(j["outputs"])[0]["sha256"] for j in rows(tmp_path / "second")}
    assert first == second
