"""A real two-node Ray cluster on this machine: ``ray start --head`` and ``ray start --address``,
each with its own temp dir, 2 simulated GPUs and token authentication on; ``comfyrig batch --ray
HOST:PORT`` runs across both nodes with the fake ComfyUI, and the second node's raylet is killed
mid-run. Skips where Ray cannot start; always tears the cluster down, by its processes (never a
machine-wide ``ray stop``, which would stop other people's clusters too)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .e2e import FAKE_DIR, SLEEP_WF, attempts, check_invariants, harness, write

try:
    import ray
except ImportError:
    ray = None

RAY_CLI = Path(sys.executable).with_name("ray")
# Small nodes: this machine has 2 cores, shared; every port but the head's GCS port is Ray's pick.
COMMON = ["--num-cpus", "2", "--disable-usage-stats", "--object-store-memory", "80000000",
          "--dashboard-agent-listen-port", "0"]

pytestmark = [
    pytest.mark.ray,
    pytest.mark.e2e,
    pytest.mark.xdist_group("ray-cluster"),  # one cluster (module fixture) for the module's tests
    pytest.mark.skipif(ray is None or not RAY_CLI.exists(), reason="ray is not installed: pip install 'comfyrig[ray]'"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _cluster_pids(marks: list[str]) -> set[int]:
    """Every process whose command line names one of our temp dirs, and all their descendants
    (Ray's workers rename themselves 'ray::...', so they are found by parentage)."""
    parent: dict[int, int] = {}
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        pid = int(entry.name)
        parent[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        if any(m in cmd for m in marks):
            found.add(pid)
    grew = True
    while grew:
        more = {p for p, pp in parent.items() if pp in found and p not in found}
        found |= more
        grew = bool(more)
    return found


def _kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):  # ended meanwhile
            os.kill(pid, signal.SIGKILL)


@dataclass
class Cluster:
    address: str
    head_dir: str
    worker_dir: str
    env: dict[str, str]
    token: Path
    dirs: list[str]  # every node's temp dir: teardown kills their processes
    gpus: int = 2  # per node (simulated)

    def raylet_of_worker_node(self) -> int:
        return self.raylet_of(self.worker_dir)

    def raylet_of(self, folder: str) -> int:
        """The raylet of the node started with temp dir ``folder``."""
        [pid] = [p for p in _cluster_pids([folder]) if b"raylet/raylet" in Path(f"/proc/{p}/cmdline").read_bytes()]
        return pid

    def join_node(self) -> None:
        """Another node joins (a lost one coming back: Ray gives it a new node id), with a disk
        of its own."""
        folder = tempfile.mkdtemp(prefix="crC", dir="/tmp")
        self.dirs.append(folder)
        done = subprocess.run([str(RAY_CLI), "start", "--address", self.address, "--temp-dir", folder, *COMMON,
                               "--num-gpus", str(self.gpus)],
                              env={**self.env, **own_disk(Path(folder))}, capture_output=True, text=True, timeout=90,
                              check=False)
        assert done.returncode == 0, done.stderr[-2000:]


def own_disk(folder: Path, *models: str) -> dict[str, str]:
    """A node without a shared disk: its ComfyUI (the same checkout path, here the fake's) keeps
    its input, output, user folders and models under a base folder of the node's own, given in
    the node's environment (COMFYUI_ARGS of its raylet, which its workers read when the command
    gives no ComfyUI flags)."""
    base = folder / "base"
    (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
    for model in models:
        path = base / "models" / "checkpoints" / model
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return {"COMFYUI_ARGS": f"--base-directory {base}"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with two_nodes() as started:
        yield started


@contextlib.contextmanager
def two_nodes(gpus: int = 2, extra_env: dict[str, str] | None = None) -> Iterator[Cluster]:
    """A head and a worker node on this machine, ``gpus`` simulated GPUs each; skips where Ray
    cannot start."""
    head_dir = tempfile.mkdtemp(prefix="crA", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    worker_dir = tempfile.mkdtemp(prefix="crB", dir="/tmp")
    token = Path(head_dir) / "auth_token"
    token.write_text("comfyrig-test-token-0123456789abcdef\n")
    cpus = sorted(os.sched_getaffinity(0))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYUI_", "COMFYRIG_", "CUDA_", "RAY_"))}
    env.update({
        "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
        # Inherited by the raylets, so by the actors and their (fake) ComfyUI.
        "COMFYRIG_FAKE_GPUS": json.dumps([{"name": "sim", "memory_total_mib": 1024, "cpu_affinity": cpus}] * gpus),
        "FAKE_COMFYUI_JOB_SECONDS": "0.3",
        **(extra_env or {}),
    })
    port, client_port = _free_port(), _free_port()
    head = [str(RAY_CLI), "start", "--head", "--port", str(port), "--temp-dir", head_dir, "--include-dashboard=false",
            "--dashboard-port", str(_free_port()), "--ray-client-server-port", str(client_port), *COMMON,
            "--num-gpus", str(gpus)]
    worker = [str(RAY_CLI), "start", "--address", f"127.0.0.1:{port}", "--temp-dir", worker_dir, *COMMON,
              "--num-gpus", str(gpus)]
    # The temp dirs name almost every process of the cluster; Ray's client-server proxy names only
    # the head's address and its own port (it outlived a run once, reparented to init).
    dirs = [head_dir, worker_dir, f":{port} --", f"--port={client_port} "]
    try:
        # Each node its own disk: the worker node holds one model the head lacks.
        disks = (own_disk(Path(head_dir), "sd15.safetensors"),
                 own_disk(Path(worker_dir), "sd15.safetensors", "only-on-b.safetensors"))
        for argv, disk in zip((head, worker), disks, strict=True):
            try:
                done = subprocess.run(argv, env={**env, **disk}, capture_output=True, text=True, timeout=90, check=False)
            except subprocess.TimeoutExpired:
                pytest.skip(f"'ray start' did not finish within 90 s: {' '.join(argv[:3])}")
            if done.returncode != 0:
                pytest.skip(f"Ray cannot start here ({' '.join(argv[1:3])}): {done.stderr.strip()[-400:]}")
        yield Cluster(f"127.0.0.1:{port}", head_dir, worker_dir, env, token, dirs, gpus)
    finally:
        _kill(_cluster_pids(dirs))
        for folder in dirs:
            if folder.startswith("/tmp/cr"):
                shutil.rmtree(folder, ignore_errors=True)


def _comfyrig(cluster: Cluster, *args: str) -> list[str]:
    return [sys.executable, "-m", "comfyrig", "batch", *args, "--ray", cluster.address, "--comfyui-dir", str(FAKE_DIR),
            "--python", sys.executable]


def _driver_env(cluster: Cluster, **extra: str) -> dict[str, str]:
    # The driver is told where the token is, not the mode: comfyrig turns token mode on itself
    # (Ray does not, for an explicit address).
    env = {k: v for k, v in cluster.env.items() if k not in ("RAY_AUTH_MODE",)}
    env.update(extra)
    return env


def test_a_wrong_token_is_one_clear_paragraph(cluster: Cluster, tmp_path: Path) -> None:
    bad = tmp_path / "bad_token"
    bad.write_text("not-the-head-token\n")
    wf = write(tmp_path / "wf.json", SLEEP_WF)
    started = time.monotonic()
    done = subprocess.run(_comfyrig(cluster, str(wf), "--out", str(tmp_path / "o"), "--dry-run"),
                          env=_driver_env(cluster, RAY_AUTH_TOKEN_PATH=str(bad)), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "refused this machine's token" in done.stderr and "Start it first" not in done.stderr, done.stderr[-2000:]
    assert "Unauthenticated" not in done.stderr  # Ray's retry lines: the paragraph says it once
    assert time.monotonic() - started < 15
    started = time.monotonic()
    # No token at all on this machine (another home, no RAY_AUTH_* variables).
    env = {k: v for k, v in _driver_env(cluster).items() if not k.startswith("RAY_AUTH")}
    done = subprocess.run(_comfyrig(cluster, str(wf), "--out", str(tmp_path / "o"), "--dry-run"),
                          env={**env, "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "asks for a token and this machine has none" in done.stderr, done.stderr[-2000:]
    assert "Start it first" not in done.stderr and "Unauthenticated" not in done.stderr
    # Known at the first refusal, not after Ray's 20 s of retries.
    assert time.monotonic() - started < 30


def test_dry_run_lists_the_workers_of_both_nodes(cluster: Cluster, tmp_path: Path) -> None:
    wf = write(tmp_path / "wf.json", SLEEP_WF)
    done = subprocess.run(_comfyrig(cluster, str(wf), "--out", str(tmp_path / "o"), "--dry-run", "--json"),
                          env=_driver_env(cluster), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    plan = json.loads(done.stdout)
    assert len(plan["workers"]) == 4
    assert len({w["url"].split("/")[3] for w in plan["workers"]}) == 2  # ray://HOST/NODE/...


def _done_nodes(out: Path) -> set[str]:
    """Node ids (as in the worker URL) of the jobs done so far, read from the live journal."""
    try:
        with sqlite3.connect(f"file:{out / 'journal.sqlite'}?mode=ro", uri=True, timeout=5) as db:
            urls = [r[0] for r in db.execute("SELECT worker_url FROM jobs WHERE state = 'done'")]
    except sqlite3.Error:
        return set()
    return {u.split("/")[3] for u in urls if u and u.startswith("ray://")}


def test_batch_runs_on_both_nodes_survives_losing_one_and_uses_it_again(cluster: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "out"
    total = 160
    wf = write(tmp_path / "wf.json", SLEEP_WF)
    err = tmp_path / "stderr.txt"
    started = time.monotonic()
    marks: dict[str, float] = {}
    with open(err, "w") as stderr_file:
        proc = subprocess.Popen(
            _comfyrig(cluster, str(wf), "--out", str(out), "--sweep", f"1.color=1..{total}", "--set", "4.seconds=0.4",
                      "--json", "--plain", "--retries", "3", "--job-timeout", "30", "--ready-timeout", "120",
                      "--gone-after", "5",
                      "--comfyui-args", f"--output-directory {tmp_path / 'co'} --temp-directory {tmp_path / 'ct'}"),
            env=_driver_env(cluster), stdout=subprocess.PIPE, stderr=stderr_file, text=True,
        )
        try:
            harness.wait_until(lambda: len(_done_nodes(out)) >= 2 or proc.poll() is not None, 150, "jobs done on both nodes")
            assert proc.poll() is None, "the batch ended before both nodes had done a job: " + err.read_text()[-2000:]
            first_nodes = _done_nodes(out)
            os.kill(cluster.raylet_of_worker_node(), signal.SIGKILL)  # the second node is lost mid-run
            marks["lost"] = time.monotonic() - started
            # Ray announces the dead node on the driver's stdout; comfyrig routes it to stderr.
            harness.wait_until(lambda: "marked dead" in err.read_text() or proc.poll() is not None, 90, "node marked dead")
            marks["marked dead"] = time.monotonic() - started
            # Its workers count as gone (--gone-after 5) before the node comes back: a node that
            # rejoins after that must still be used again.
            harness.wait_until(lambda: err.read_text().count(": gone: ") >= 2 or proc.poll() is not None, 60,
                               "the lost node's workers gone")
            marks["gone"] = time.monotonic() - started
            cluster.join_node()  # the lost node comes back (with a new node id)
            marks["rejoined"] = time.monotonic() - started
            harness.wait_until(lambda: len(_done_nodes(out) - first_nodes) >= 1 or proc.poll() is not None, 90,
                               "jobs done on the node that rejoined")
            marks["used again"] = time.monotonic() - started
            assert proc.poll() is None, "the batch ended before the rejoined node did a job"
            stdout, _ = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    wall = time.monotonic() - started
    stderr = err.read_text()
    assert proc.returncode == 0, stderr[-3000:]
    report = json.loads(stdout)  # valid JSON although Ray announced the dead node meanwhile
    assert "marked dead" in stderr and "marked dead" not in stdout
    assert report["done"] == total
    counts = check_invariants(out, total=total)
    assert counts == {"done": total, "failed": 0, "pending": 0, "files": total}
    assert all(w["node_id"] and w["host"] for w in report["workers"]), report["workers"]
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    per_node: dict[str, int] = {}
    for line in lines:
        node = line["worker_url"].split("/")[3]
        per_node[node] = per_node.get(node, 0) + 1
    assert len(per_node) == 3, per_node  # the head, the lost node, the node that rejoined
    # Actors of different nodes on one checkout never share an output or temp folder.
    for folder in ("co", "ct"):
        if folder == "ct" and not (tmp_path / folder).exists():
            continue  # a ComfyUI that never wrote a temp file
        tags = {p.name for p in (tmp_path / folder).iterdir()}
        assert len(tags) == 6 and len({t.split("-")[1] for t in tags}) == 3, tags
    restarted = {a["worker"] for a in attempts(out) if a["outcome"] in ("requeued", "released")}
    summary = (f"two-node batch: {total} jobs, done per node {per_node}, requeued from {sorted(restarted)}, "
               f"{ {k: round(v, 1) for k, v in marks.items()} }, wall {wall:.1f} s, report wall_s {report['wall_s']}")
    (Path(os.environ.get("COMFYRIG_RAY_SUMMARY", tmp_path / "summary.txt"))).write_text(summary + "\n")
