"""Ray backend: a local cluster (ray.init(num_cpus=2, num_gpus=2)), one actor per GPU running the fake ComfyUI."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from comfyrig.batch.dispatcher import BatchOptions
from comfyrig.batch.events import BatchEvent, BatchFinished, describe
from comfyrig.batch.run import BatchRequest, run_batch
from comfyrig.config.settings import CliOverrides, resolve_settings
from comfyrig.errors import ConfigError

from .e2e import FAKE_DIR, SLEEP_WF, attempts, check_invariants, harness, write

try:
    import ray
except ImportError:
    ray = None


def test_missing_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from comfyrig.batch import ray_backend

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError) as info:
        ray_backend.require_ray()
    assert "pip install 'comfyrig[ray]'" in str(info.value)


@pytest.mark.ray
@pytest.mark.skipif(ray is None, reason="ray is not installed: pip install 'comfyrig[ray]'")
@pytest.mark.e2e
def test_ray_actors_run_the_batch_and_survive_an_actor_death(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from comfyrig.batch.ray_backend import RayBackend

    monkeypatch.setenv("FAKE_COMFYUI_JOB_SECONDS", "0.3")  # inherited by the actors' ComfyUI
    # The actors see a 2-GPU node whose GPUs are local to this machine's CPUs, so each
    # places its ComfyUI on its share (the path 'launch --workers' takes on real GPUs).
    cpus = sorted(os.sched_getaffinity(0))
    monkeypatch.setenv("COMFYRIG_FAKE_GPUS", json.dumps([{"name": "sim", "memory_total_mib": 1024, "cpu_affinity": cpus}] * 2))
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=80 * 2**20, configure_logging=False)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYUI_", "COMFYRIG_", "CUDA_"))}
        settings = resolve_settings(
            CliOverrides(comfyui_dir=FAKE_DIR, python=sys.executable, comfyui_args=f"--output-directory {tmp_path / 'comfy-out'}"),
            env, tmp_path,
        )
        backend = RayBackend(None, settings)
        out = tmp_path / "out"
        request = BatchRequest(workflow=write(tmp_path / "wf.json", SLEEP_WF), out_dir=out, sweeps=("1.color=1..10",),
                               options=BatchOptions(out_dir=out, job_timeout_s=30, retries=3))

        def kill_one_actor() -> None:
            # Once three jobs are done, kill the first actor (Ray restarts it): its jobs must go elsewhere.
            harness.wait_until(lambda: backend.actors and len(list((out / "outputs").glob("*.png"))) >= 3, 60, "three outputs")
            ray.kill(backend.actors[0], no_restart=False)

        killer = threading.Thread(target=kill_one_actor, daemon=True)
        killer.start()
        events: list[BatchEvent] = []
        code = run_batch(request, backend, events.append)
        killer.join(5)
        log = "\n".join(line for line in map(describe, events) if line is not None)
        [report] = [e.report for e in events if isinstance(e, BatchFinished)]
        assert code == 0, log
        assert report["done"] == 10 and {w["url"].split("/")[4] for w in report["workers"]} == {"gpu0", "gpu1"}
        assert len({w["node_id"] for w in report["workers"]}) == 1 and all(w["host"] for w in report["workers"])
        assert check_invariants(out, total=10)["files"] == 10
        # Down: seen as the actor's ComfyUI closing, or as the actor call failing (Ray then restarts it).
        assert "ray-0: down: " in log, log
        assert any(a["worker"] == "ray-0" and a["outcome"] in ("requeued", "released") for a in attempts(out)), log
    finally:
        ray.shutdown()


# -- the driver's side against a scripted Ray (no cluster) --------------------------------------------
class ActorDiedError(Exception):
    pass


class FakeRef:
    def __init__(self, call: Any) -> None:
        self.call = call


class FakeMethod:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def remote(self, *args: Any) -> FakeRef:
        return FakeRef(lambda: self.fn(*args))


class EagerMethod(FakeMethod):
    def remote(self, *args: Any) -> FakeRef:
        result = self.fn(*args)
        return FakeRef(lambda: result)


class FakeActor:
    def __init__(self, name: str, log: list[str], node: str = "a" * 56) -> None:
        self.name, self.log, self.alive = name, log, True
        self.place = {"name": name, "label": f"vm GPU 0 (node {node[:8]})", "node_id": node, "host": "10.0.0.1",
                      "hostname": "vm", "gpu": "0", "url": "http://127.0.0.1:1000", "pid": 1}
        self.pending: list[Any] = []
        self.spooled: dict[str, bytes] = {}  # outputs held on its node, by key
        self.reads = 0
        self.die_after_reads: int | None = None
        self.poll = FakeMethod(self._poll)
        self.describe = FakeMethod(self._describe)
        self.shutdown = FakeMethod(lambda: log.append(f"shutdown {name}"))
        self.read = FakeMethod(self._read)
        # Fire and forget, as Ray runs a call nobody waits for.
        self.release = EagerMethod(lambda keys: [self.spooled.pop(k, None) for k in keys])

    def _read(self, key: str, offset: int, size: int) -> bytes:
        self._check()
        self.reads += 1
        if self.die_after_reads is not None and self.reads > self.die_after_reads:
            self.alive = False
            raise ActorDiedError("node lost mid-transfer")
        return self.spooled[key][offset:offset + size]

    def _check(self) -> None:
        if not self.alive:
            raise ActorDiedError("node lost")

    def _poll(self, timeout_s: float) -> list[Any]:
        self._check()
        out, self.pending = self.pending, []
        return out

    def _describe(self) -> dict[str, Any]:
        self._check()
        return dict(self.place)


class FakeRay:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def get(self, ref: Any, timeout: float | None = None) -> Any:
        return [r.call() for r in ref] if isinstance(ref, list) else ref.call()

    def wait(self, refs: list[Any], num_returns: int, timeout: float) -> tuple[list[Any], list[Any]]:
        ready = []
        for ref in refs:
            with contextlib.suppress(ActorDiedError):
                ref.call()
                ready.append(ref)
        return ready, [r for r in refs if r not in ready]

    def kill(self, actor: FakeActor, no_restart: bool) -> None:
        self.log.append(f"kill {actor.name} no_restart={no_restart}")


def test_an_actor_back_after_gone_is_used_again_with_its_new_place() -> None:
    from comfyrig.batch.protocol import WorkerDown, WorkerUp
    from comfyrig.batch.ray_backend import RayEndpoint

    log: list[str] = []
    actor = FakeActor("ray-0", log)
    events: list[Any] = []
    endpoint = RayEndpoint(FakeRay(log), actor, actor.place, events.append, lambda *a: None, gone_after_s=0.05)  # type: ignore[arg-type, return-value]
    assert endpoint.url == "ray://10.0.0.1/aaaaaaaaaaaa/gpu0/http://127.0.0.1:1000" and endpoint.node_id == "a" * 56
    actor.alive = False  # its node is lost
    endpoint.start()
    try:
        harness.wait_until(lambda: any(isinstance(e, WorkerDown) and e.gone for e in events), 10, "gone")
        # A node rejoins: Ray restarts the actor there, with another port.
        actor.place.update(node_id="b" * 56, host="10.0.0.2", url="http://127.0.0.1:2000")
        actor.pending = [WorkerUp("ray-0")]
        actor.alive = True
        harness.wait_until(lambda: any(isinstance(e, WorkerUp) for e in events), 10, "up again")
        assert endpoint.url == "ray://10.0.0.2/bbbbbbbbbbbb/gpu0/http://127.0.0.1:2000"
        assert (endpoint.node_id, endpoint.host) == ("b" * 56, "10.0.0.2")
    finally:
        endpoint.stop()
        endpoint.join(5)


def test_stop_kills_a_lost_actor_before_any_gpu_is_freed(monkeypatch: pytest.MonkeyPatch) -> None:
    from comfyrig.batch import ray_backend
    from comfyrig.batch.ray_backend import RayBackend, RayEndpoint

    log: list[str] = []
    monkeypatch.setattr(ray_backend, "require_ray", lambda: FakeRay(log))
    settings = resolve_settings(CliOverrides(comfyui_dir=FAKE_DIR, python=sys.executable), {}, FAKE_DIR)
    backend = RayBackend("10.0.0.1:6379", settings, stop_wait_s=0.1)
    lost, live = FakeActor("ray-0", log), FakeActor("ray-1", log)
    lost.alive = False
    backend.actors = [lost, live]
    backend._endpoints = [RayEndpoint(backend.ray, a, a.place, lambda e: None, lambda *x: None) for a in (lost, live)]  # type: ignore[arg-type, return-value]
    backend._endpoints[0].failing = True
    backend.stop()
    # The lost actor (waiting to restart on a GPU) is killed first; only then do the others stop
    # and free theirs; it is never asked to shut down (that call would wait for its restart).
    assert log == ["kill ray-0 no_restart=True", "shutdown ray-1", "kill ray-0 no_restart=True", "kill ray-1 no_restart=True"]


def test_ray_help_shows_the_install_command(run: Any) -> None:
    result = run("batch", "--help")
    assert "pip install 'comfyrig[ray]'" in " ".join(result.stdout.split())


def test_gone_after_is_for_ray_workers(run: Any, tmp_path: Path) -> None:
    wf = tmp_path / "wf.json"
    wf.write_text('{"1": {"class_type": "EmptyImage", "inputs": {}}}')
    result = run("batch", str(wf), "--out", str(tmp_path / "o"), "--gone-after", "5", "--dry-run")
    assert result.returncode == 2 and "--gone-after" in result.stderr and "--ray" in result.stderr
    for bad in ("0", "-1", "nan", "1e400"):
        result = run("batch", str(wf), "--out", str(tmp_path / "o"), "--ray", "auto", "--gone-after", bad, "--dry-run")
        assert result.returncode == 2 and "--gone-after" in result.stderr and "Traceback" not in result.stderr


def test_outputs_are_pulled_in_chunks_checked_and_released(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The actor spools each output on its node; the driver pulls it in chunks (never whole in
    either process), checks it against the actor's sha256 and releases the actor's copy. A pull
    that fails (the node lost mid-transfer) or arrives different is a SystemFailed: the job runs
    again, and no file of it stays."""
    import hashlib

    from comfyrig.batch import ray_backend
    from comfyrig.batch.journal import OutputFile
    from comfyrig.batch.protocol import OutputsCollected, SystemFailed
    from comfyrig.batch.ray_backend import RayEndpoint
    from comfyrig.batch.worker import LocalSink

    monkeypatch.setattr(ray_backend, "CHUNK_BYTES", 1000)
    log: list[str] = []
    actor = FakeActor("ray-0", log)
    sink = LocalSink(tmp_path)
    endpoint = RayEndpoint(FakeRay(log), actor, actor.place, lambda e: None, sink)  # type: ignore[arg-type]
    video = bytes(range(256)) * 40  # 10,240 bytes: 11 chunks

    def collected(prompt: str, data: bytes, sha: str | None = None) -> OutputsCollected:
        key = f"{prompt}|9|0"
        actor.spooled[key] = data
        placeholder = OutputFile(path=key, sha256=sha or hashlib.sha256(data).hexdigest(), bytes=len(data), node="9",
                                 source="clip.mp4")
        return OutputsCollected("ray-0", prompt, (placeholder,))

    stored = endpoint._store(collected("job1", video))
    assert isinstance(stored, OutputsCollected) and actor.reads == 11
    assert (tmp_path / stored.files[0].path).read_bytes() == video and actor.spooled == {}  # released
    # Different bytes than the actor computed: not collected, nothing kept.
    failed = endpoint._store(collected("job2", video, sha="0" * 64))
    assert isinstance(failed, SystemFailed) and failed.charged and "sha256" in failed.reason
    # The node lost mid-transfer.
    actor.reads, actor.die_after_reads = 0, 3
    failed = endpoint._store(collected("job3", video))
    assert isinstance(failed, SystemFailed) and "ActorDiedError" in failed.reason
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["job1-9-0.mp4"]  # no partial, no job2/job3


def test_spools_of_actors_that_are_gone_are_swept(tmp_path: Path) -> None:
    """Actors killed as lost, restarted by Ray or ended with their driver never run shutdown:
    the next actor on the node removes their spooled outputs."""
    import subprocess

    from comfyrig.batch.ray_backend import spool_folder

    base = tmp_path / f"comfyrig-ray-outputs-{os.getuid()}"
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                              check=True).stdout)
    (base / str(dead)).mkdir(parents=True)
    (base / str(dead) / "video").write_bytes(b"x" * 100)
    (base / "1").mkdir()  # init: alive, not ours to sweep
    mine = spool_folder(tmp_path)
    assert mine == base / str(os.getpid()) and mine.is_dir()
    assert sorted(p.name for p in base.iterdir()) == sorted(["1", str(os.getpid())])
    # A folder someone else could write is not used.
    shared = tmp_path / "shared"
    (shared / f"comfyrig-ray-outputs-{os.getuid()}").mkdir(parents=True, mode=0o777)
    os.chmod(shared / f"comfyrig-ray-outputs-{os.getuid()}", 0o777)
    other = spool_folder(shared)
    assert other.parent == shared and other.name != f"comfyrig-ray-outputs-{os.getuid()}"
