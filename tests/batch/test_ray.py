"""Ray backend: a local cluster (ray.init(num_cpus=2, num_gpus=2)), one actor per GPU running the fake ComfyUI."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

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
        assert report["done"] == 10 and {w["gpu"].rsplit(" ", 1)[-1] for w in report["workers"]} == {"0", "1"}
        assert check_invariants(out, total=10)["files"] == 10
        # Down: seen as the actor's ComfyUI closing, or as the actor call failing (Ray then restarts it).
        assert "ray-0: down: " in log, log
        assert any(a["worker"] == "ray-0" and a["outcome"] in ("requeued", "released") for a in attempts(out)), log
    finally:
        ray.shutdown()
