"""The supervision loop through scripted histories: fake children, a fake clock, no real signals."""

from __future__ import annotations

import signal
from pathlib import Path

from comfyrig.comfy.multigpu import MultiGpuFinding
from comfyrig.launch.events import Exited, Hung, Inspected, LogLine, Ready, Started, StartFailed, Stopping

from .supervision import Rig


def test_ready_when_http_answers_not_when_the_process_exists(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    (started,) = rig.of(Started)
    assert started.pid == rig.spawner.last.pid and started.attempt == 1
    rig.tick(times=20)
    assert rig.phase() == "starting" and rig.answers.asked.count("ready") >= 2
    rig.answers.up = True
    rig.until(lambda: rig.phase() == "ready")
    (ready,) = rig.of(Ready)
    assert ready.stats["system"]["comfyui_version"] == "0.3.76" and ready.url == "http://127.0.0.1:8188"


def test_child_environment_log_file_and_session(tmp_path: Path) -> None:
    session = tmp_path / "session"
    rig = Rig(tmp_path, sessions={"comfyui": session})
    (call,) = rig.spawner.calls
    assert call["env"]["CUDA_VISIBLE_DEVICES"] == "0" and call["env"]["PATH"] == "/bin"
    assert call["env"]["__COMFY_CLI_SESSION__"] == str(session)
    assert call["log"] == tmp_path / "comfyrig-8188.log"


def test_output_lines_are_parsed_and_reported_in_order(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.spawner.last.say("pytorch version: 2.11.0+cu130")
    rig.spawner.last.say("Device: cuda:0 NVIDIA H200 : cudaMallocAsync")
    rig.tick()
    view = rig.supervisor.snapshot().workers[0]
    assert view.info.system["pytorch"] == "2.11.0+cu130" and view.tail[-1].startswith("Device:")
    assert [e.text for e in rig.of(LogLine)] == ["pytorch version: 2.11.0+cu130", "Device: cuda:0 NVIDIA H200 : cudaMallocAsync"]


def test_last_lines_after_an_exit_are_read_before_judging_it(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    child = rig.spawner.last
    child.output_open = True  # the pipe still holds lines when the exit is seen
    child.exit(1)
    rig.tick()
    assert not rig.of(Exited)  # waiting for the output
    child.say("ModuleNotFoundError: No module named 'av'")
    child.output_open = False
    rig.tick()
    (exited,) = rig.of(Exited)
    assert exited.kind == "crash" and rig.supervisor.snapshot().workers[0].tail[-1].startswith("ModuleNotFoundError")


def test_output_that_never_ends_does_not_stall_the_loop(tmp_path: Path) -> None:
    rig = Rig(tmp_path, drain_s=2.0)
    rig.spawner.last.output_open = True  # a grandchild that left the group holds the pipe
    rig.spawner.last.exit(1)
    rig.tick(0.5, times=4)  # seen at the first tick, then 1.5 s of waiting
    assert not rig.of(Exited)
    rig.tick(0.6)  # 2.1 s: the lines it might still say are not worth more
    assert rig.of(Exited)


def test_crash_after_ready_restarts_with_backoff_on_failure(tmp_path: Path) -> None:
    rig = Rig(tmp_path, restart="on-failure", restart_delay_s=1.0)
    rig.answers.up = True
    rig.until(lambda: rig.phase() == "ready")
    rig.spawner.last.exit(-9)
    rig.tick()
    (exited,) = rig.of(Exited)
    assert exited.kind == "killed" and exited.restart_in == 1.0 and rig.phase() == "backoff"
    rig.tick(0.5)
    assert len(rig.spawner.children) == 1
    rig.tick(0.6)
    assert len(rig.spawner.children) == 2 and rig.of(Started)[-1].attempt == 2
    rig.until(lambda: rig.phase() == "ready")


def test_policy_no_ends_with_the_code_of_the_crash(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.spawner.last.exit(3)
    rig.tick()
    assert rig.phase() == "failed" and rig.supervisor.finished and rig.supervisor.exit_code() == 3
    assert rig.of(Exited)[0].final


def test_a_rejected_command_line_is_never_restarted(tmp_path: Path) -> None:
    rig = Rig(tmp_path, restart="always")
    rig.spawner.last.say("main.py: error: unrecognized arguments: --medvram")
    rig.spawner.last.exit(2)
    rig.tick()
    (exited,) = rig.of(Exited)
    assert exited.kind == "bad-flag" and exited.final and len(rig.spawner.children) == 1
    assert rig.supervisor.exit_code() == 2


def test_crash_loop_gives_up_at_the_start_limit(tmp_path: Path) -> None:
    rig = Rig(tmp_path, restart="always", restart_delay_s=0.1)
    for _ in range(5):
        rig.spawner.last.exit(1)
        rig.until(lambda: (rig.phase() in ("starting", "failed") and rig.spawner.last.code is None) or rig.phase() == "failed")
    assert rig.phase() == "failed" and len(rig.spawner.children) == 5
    assert "gave up: 5 failed starts" in rig.of(Exited)[-1].reason and rig.supervisor.exit_code() == 1


def test_a_hung_comfyui_is_killed_and_restarted(tmp_path: Path) -> None:
    rig = Rig(tmp_path, restart="on-failure", liveness_interval_s=5.0, hang_timeout_s=20.0, hang_probes=3)
    rig.answers.up = True
    rig.until(lambda: rig.phase() == "ready")
    first = rig.spawner.last
    rig.tick(5.0, times=2)
    assert rig.supervisor.snapshot().workers[0].queue_remaining == 0 and not first.signals
    rig.answers.alive = None  # the process lives, HTTP stops answering
    rig.tick(5.0, times=3)
    assert not first.signals  # 15 s of silence: not yet
    rig.tick(5.0, times=2)
    assert signal.SIGKILL in first.signals
    (hung,) = rig.of(Hung)
    assert hung.silent_s >= 20.0 and hung.failed_probes >= 3
    rig.tick()
    exited = rig.of(Exited)[0]
    assert exited.kind == "hung" and exited.restart_in is not None
    rig.answers.alive = 0
    rig.until(lambda: len(rig.spawner.children) == 2 and rig.phase() == "ready")


def test_hang_detection_can_be_turned_off(tmp_path: Path) -> None:
    rig = Rig(tmp_path, hang_timeout_s=0)
    rig.answers.up = True
    rig.until(lambda: rig.phase() == "ready")
    rig.answers.alive = None
    rig.tick(5.0, times=100)
    assert rig.phase() == "ready" and not rig.spawner.last.signals


def test_a_busy_probe_is_not_asked_again(tmp_path: Path) -> None:
    rig = Rig(tmp_path, deferred=True)  # answers arrive only when the test releases them
    rig.tick(1.0, times=10)
    assert len(rig.pending) == 1


def test_an_answer_about_an_earlier_process_is_dropped(tmp_path: Path) -> None:
    rig = Rig(tmp_path, deferred=True, restart="always", restart_delay_s=0.1)
    rig.answers.up = True
    rig.tick()
    stale = rig.pending.pop()  # asked of the first process
    rig.spawner.last.exit(1)
    rig.until(lambda: len(rig.spawner.children) == 2)
    stale()  # "ready" about process 1 arrives while process 2 starts
    rig.tick()
    assert rig.phase() == "starting" and not rig.of(Ready)


def test_stop_is_sigint_then_sigkill_after_the_grace_period(tmp_path: Path) -> None:
    rig = Rig(tmp_path, stop_timeout_s=10.0, ignores_sigint=True)
    child = rig.spawner.last
    rig.supervisor.request_stop()
    rig.tick()
    assert child.signals == [signal.SIGINT] and rig.phase() == "stopping"
    rig.tick(5.0)
    assert child.signals == [signal.SIGINT]
    rig.tick(5.1)
    assert child.signals[-1] == signal.SIGKILL
    rig.tick()
    assert rig.supervisor.finished and rig.supervisor.exit_code() == 0
    assert any("did not stop within 10 s: SIGKILL" in e.reason for e in rig.of(Stopping))


def test_a_second_interrupt_kills_at_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path, ignores_sigint=True)
    rig.supervisor.signal(signal.SIGINT)
    rig.tick()
    rig.supervisor.signal(signal.SIGINT)
    rig.tick()
    assert rig.spawner.last.signals[:2] == [signal.SIGINT, signal.SIGKILL]
    rig.tick()
    assert rig.supervisor.finished and rig.supervisor.exit_code() == 0


def test_stop_during_backoff_starts_nothing(tmp_path: Path) -> None:
    rig = Rig(tmp_path, restart="always", restart_delay_s=30.0)
    rig.spawner.last.exit(1)
    rig.tick()
    assert rig.phase() == "backoff"
    rig.supervisor.request_stop()
    rig.tick(40.0)
    assert rig.phase() == "exited" and len(rig.spawner.children) == 1 and rig.supervisor.exit_code() == 0


def test_not_ready_in_time_is_a_failure_even_when_it_exits_0(tmp_path: Path) -> None:
    rig = Rig(tmp_path, ready_timeout_s=5.0)
    rig.tick(1.0, times=6)
    assert rig.spawner.last.signals == [signal.SIGINT]
    rig.tick()
    (exited,) = rig.of(Exited)
    assert exited.code == 0 and exited.kind == "not-ready"
    assert rig.phase() == "failed" and rig.supervisor.exit_code() == 1


def test_manager_restart_button_restarts_at_once_whatever_the_policy(tmp_path: Path) -> None:
    session = tmp_path / "sessions" / "x"
    session.parent.mkdir()
    rig = Rig(tmp_path, sessions={"comfyui": session})
    rig.answers.up = True
    rig.until(lambda: rig.phase() == "ready")
    Path(f"{session}.reboot").write_text("")  # what ComfyUI-Manager writes before exiting 0
    rig.spawner.last.exit(0)
    rig.until(lambda: len(rig.spawner.children) == 2)
    assert rig.of(Exited)[0].kind == "reboot" and not Path(f"{session}.reboot").exists()
    rig.until(lambda: rig.phase() == "ready")


def test_kill_from_another_thread_then_the_policy_decides(tmp_path: Path) -> None:
    rig = Rig(tmp_path, restart="on-failure", restart_delay_s=0.1)
    rig.answers.up = True
    rig.until(lambda: rig.phase() == "ready")
    rig.supervisor.kill("comfyui", "its job hung")
    rig.tick()
    assert rig.spawner.children[0].signals[0] == signal.SIGKILL
    assert any(e.reason == "its job hung" for e in rig.of(Stopping))
    rig.until(lambda: len(rig.spawner.children) == 2)


def test_an_interpreter_that_cannot_run_fails_with_127(tmp_path: Path) -> None:
    rig = Rig(tmp_path, spawn_fails=True)
    (failed,) = rig.of(StartFailed)
    assert "No such file" in failed.reason and rig.phase() == "failed" and rig.supervisor.exit_code() == 127


def test_multi_gpu_inspection_runs_after_ready(tmp_path: Path) -> None:
    rig = Rig(tmp_path, inspect=True)
    found = MultiGpuFinding(native=("SelectModelDevice",), pack=("CheckpointLoaderSimpleMultiGPU",))
    rig.answers.finding = found
    rig.answers.up = True
    rig.until(lambda: bool(rig.of(Inspected)))
    assert rig.of(Inspected)[0].finding == found
    assert rig.supervisor.snapshot().workers[0].multigpu == found


def test_a_fleet_is_supervised_per_instance(tmp_path: Path) -> None:
    rig = Rig(tmp_path, count=2, restart="no")
    assert [c["env"]["CUDA_VISIBLE_DEVICES"] for c in rig.spawner.calls] == ["0", "1"]
    rig.answers.up = True
    rig.until(lambda: rig.phase(0) == rig.phase(1) == "ready")
    rig.spawner.children[1].exit(1)
    rig.tick()
    assert rig.phase(0) == "ready" and rig.phase(1) == "failed" and not rig.supervisor.finished
    rig.supervisor.request_stop()
    rig.until(lambda: rig.supervisor.finished)
    assert rig.supervisor.exit_code() == 0  # the stop was asked for


def test_a_probe_that_raises_is_no_answer_and_says_why_at_the_timeout(tmp_path: Path) -> None:
    rig = Rig(tmp_path, ready_timeout_s=3.0)

    def broken(url: str) -> None:
        raise ValueError("ALL_PROXY=socks5://... needs socksio")

    rig.supervisor._probes = rig.supervisor._probes.__class__(ready=broken, alive=broken)  # type: ignore[arg-type]
    rig.tick(1.0, times=5)
    assert rig.answers.asked == [] and rig.phase() in ("stopping", "failed")
    stop = rig.of(Stopping)[0]
    assert "not ready after 3 s (the probe could not ask: ValueError: ALL_PROXY" in stop.reason


def test_a_process_asked_to_stop_from_outside_is_not_restarted_whatever_the_policy(tmp_path: Path) -> None:
    # 'comfyrig stop' leaves a marker for the pid, then signals the group (SIGKILL after the grace).
    rig = Rig(tmp_path, restart="always")
    rig.answers.up = True
    rig.until(lambda: rig.phase() == "ready")
    marked = {rig.spawner.last.pid}
    rig.supervisor._stop_requested = lambda name, pid: pid in marked  # type: ignore[method-assign]
    rig.spawner.last.exit(-9)
    rig.tick()
    (exited,) = rig.of(Exited)
    assert exited.kind == "requested" and exited.final and len(rig.spawner.children) == 1
    assert rig.phase() == "exited" and rig.supervisor.exit_code() == 0  # never a failure


def test_a_worker_killed_again_and_again_after_healthy_runs_is_never_given_up(tmp_path: Path) -> None:
    rig = Rig(tmp_path, restart="on-failure", restart_delay_s=1.0, healthy_after_s=30.0)
    rig.answers.up = True
    for n in range(8):  # more than the start limit of 5
        rig.until(lambda: rig.phase() == "ready")
        rig.tick(10.0, times=4)  # 40 s of healthy work
        rig.spawner.last.exit(-9)  # the OOM killer
        rig.until(lambda n=n: len(rig.spawner.children) == n + 2)
    assert all(e.restart_in == 1.0 for e in rig.of(Exited))  # the backoff never grew


def test_a_comfyui_that_dies_before_ready_every_time_is_given_up(tmp_path: Path) -> None:
    rig = Rig(tmp_path, restart="always", restart_delay_s=0.1)
    for _ in range(5):
        rig.tick(30.0)  # 30 s of import, then a crash: never ready
        rig.spawner.last.exit(1)
        rig.until(lambda: rig.phase() in ("starting", "failed") and (rig.spawner.last.code is None or rig.phase() == "failed"))
    assert rig.phase() == "failed" and len(rig.spawner.children) == 5


def test_the_first_snapshot_counts_from_now_not_the_clocks_origin(tmp_path: Path) -> None:
    """Issue 16 item 9: the dashboard's first frame showed 'STARTING 4005.1 s'."""
    from comfyrig.launch.supervisor import Supervisor, SupervisorOptions

    from .supervision import Answers, Clock, Spawner, specs

    clock = Clock()
    clock.now = 4005.1  # a monotonic clock is seconds since boot
    supervisor = Supervisor(specs(tmp_path, 1), {"PATH": "/bin"}, SupervisorOptions(), probes=Answers().probes(False),
                            spawner=Spawner(), clock=clock, beside=lambda fn: fn())
    assert [w.elapsed_s for w in supervisor.snapshot().workers] == [0.0]
