"""The servers the client tests talk to: one ``ClientTarget`` each, started once per session (per xdist worker).

A target is anything that answers like ComfyUI at one URL: the fake ComfyUI (always there), each
real checkout of ``COMFYUI_DIRS`` (tests/real_comfyui.py), and later the gateway. To add one, write
a factory that returns ``ClientTarget`` objects and append it to ``FACTORIES``::

    class GatewayTarget:
        id = "gateway-2fakes"
        marks = ()
        capabilities = frozenset({"upload"})     # what this target serves beyond the core API
        @contextmanager
        def start(self, workdir: Path) -> Iterator[Running]:
            ... start the workers and the gateway ...
            yield Running(url="http://127.0.0.1:PORT", capabilities=self.capabilities)
            ... stop them ...

    FACTORIES.append(lambda: [GatewayTarget()])

The core API every target must serve: ``POST /prompt`` (also with the client's own prompt_id),
``GET /history[/{id}]``, ``GET /view``, ``GET /object_info``, ``GET /system_stats``, ``GET /queue``,
and ``/ws?clientId=`` with ComfyUI's execution events for that client. Anything beyond that is a
capability (``CAPABILITIES``); a test needing one skips, with the reason, on a target without it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from ..real_comfyui import REAL, SKIP, Checkout

FAKE_DIR = Path(__file__).resolve().parents[1] / "fake_comfyui"

CAPABILITIES = {
    "frontend": "ComfyUI's web frontend at /",
    "upload": "POST /upload/image",
    "ws_images": "the SaveImageWebsocket node (images as binary websocket frames)",
    "jobs": "GET /api/jobs (ComfyUI 0.4+)",
}


@dataclass(frozen=True)
class Running:
    """A started target."""

    url: str  # http://HOST:PORT, no trailing slash
    capabilities: frozenset[str] = frozenset()
    checkout: Path | None = None  # the real ComfyUI checkout behind it, if one
    version: str = ""  # ComfyUI version it claims, if known
    log: Path | None = None  # its output, for failure messages

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def require(self, capability: str) -> None:
        """Skip the calling test when this target lacks ``capability``."""
        if capability not in self.capabilities:
            pytest.skip(f"this target does not serve {CAPABILITIES.get(capability, capability)}")


class ClientTarget(Protocol):
    """Something the client tests can start and talk to at one URL."""

    id: str  # pytest id: fake, real-0.24.0, gateway-...
    marks: Sequence[Any]  # extra pytest marks (xdist_group, skip with a reason, ...)

    def start(self, workdir: Path) -> AbstractContextManager[Running]:
        """Start it (files under ``workdir``), yield when it answers, stop it on exit."""
        ...


# --- processes ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/prompt", timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def serving(argv: Sequence[str], cwd: Path, log: Path, url: str, ready_timeout: float,
            env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` in its own process group until ``url`` answers ``GET /prompt``; stop the group
    on exit (SIGINT, 10 s, SIGKILL). RuntimeError with the log's tail if it exits or never answers."""
    with log.open("wb") as out:
        proc = subprocess.Popen(list(argv), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + ready_timeout
        while not answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{argv[1:3]} did not answer at {url} (exit code {proc.poll()}):\n{tail(log)}")
            time.sleep(0.25)
        yield proc
    finally:
        for sig, wait in ((signal.SIGINT, 10.0), (signal.SIGKILL, 5.0)):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=wait)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever it left in its group


def _dirs(workdir: Path) -> list[str]:
    args = []
    for name in ("output", "input", "temp", "user"):
        (workdir / name).mkdir(parents=True, exist_ok=True)
        args += [f"--{name}-directory", str(workdir / name)]
    return args


# --- the fake ComfyUI ---------------------------------------------------------------------------

@dataclass
class FakeTarget:
    id: str = "fake"
    marks: Sequence[Any] = ()
    env: dict[str, str] = field(default_factory=dict)  # FAKE_COMFYUI_* knobs

    @contextlib.contextmanager
    def start(self, workdir: Path) -> Iterator[Running]:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_COMFYUI_")} | self.env
        argv = [sys.executable, "main.py", "--listen", "127.0.0.1", "--port", str(port), "--cpu", *_dirs(workdir)]
        log = workdir / "fake.log"
        with serving(argv, FAKE_DIR, log, url, ready_timeout=30.0, env=env):
            yield Running(url, frozenset({"jobs", "upload", "ws_images"}), None, "fake", log)


# --- a real ComfyUI checkout --------------------------------------------------------------------

@dataclass
class RealTarget:
    checkout: Checkout
    marks: Sequence[Any] = (pytest.mark.comfyui, pytest.mark.xdist_group("comfyui-real"))
    ready_timeout: float = 240.0  # s; ~20 s alone on 2 cores, far more when the suite runs beside it

    @property
    def id(self) -> str:
        return f"real-{self.checkout.version}"

    @contextlib.contextmanager
    def start(self, workdir: Path) -> Iterator[Running]:
        if self.checkout.problem:
            pytest.fail(self.checkout.problem)
        root = Path(self.checkout.dir)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        # Own output/input/temp/user folders: the checkout stays clean and 0.24's database
        # (under the user directory) is not shared with another test's server.
        argv = [self.checkout.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
                "--disable-auto-launch", *_dirs(workdir)]
        log = workdir / "comfyui.log"
        caps = {"upload", "frontend"}
        if (root / "custom_nodes" / "websocket_image_save.py").is_file():
            caps.add("ws_images")
        if version_at_least(self.checkout.version, (0, 4)):
            caps.add("jobs")
        with serving(argv, root, log, url, self.ready_timeout):
            yield Running(url, frozenset(caps), root, self.checkout.version, log)


def version_at_least(version: str, floor: tuple[int, ...]) -> bool:
    parts = version.split(".")
    try:
        return tuple(int(p) for p in parts[:len(floor)]) >= floor
    except ValueError:
        return False


# --- the gateway: comfyrig --workers, two workers behind one URL ---------------------------------

@dataclass
class GatewayTarget:
    """``comfyrig launch --workers`` on two simulated GPUs, the real command: two workers (the fake
    ComfyUI, or a real checkout told ``--cpu``) behind the gateway's one URL."""

    checkout: Checkout | None = None  # None: the fake ComfyUI
    marks: Sequence[Any] = ()
    ready_timeout: float = 300.0

    @property
    def id(self) -> str:
        return f"gateway-{'fake' if self.checkout is None else self.checkout.version}"

    @contextlib.contextmanager
    def start(self, workdir: Path) -> Iterator[Running]:
        if self.checkout is not None and self.checkout.problem:
            pytest.fail(self.checkout.problem)
        comfy_dir = Path(self.checkout.dir) if self.checkout else FAKE_DIR
        python = self.checkout.python if self.checkout else sys.executable
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        gpus = [{"name": "NVIDIA GeForce RTX 3090", "memory_total_mib": 24576, "memory_used_mib": 300,
                 "uuid": f"GPU-{i:08x}-1111-2222-3333-444444444444", "pci_bus_id": f"00000000:{0x17 + i:02X}:00.0"}
                for i in range(2)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_COMFYUI_")}
        env |= {"COMFYRIG_FAKE_GPUS": json.dumps(gpus), "COMFYRIG_STATE_DIR": str(workdir / "state")}
        exe = [sys.executable, "-m", "comfyrig"]
        # Each worker gets its own output and temp folders from comfyrig; input and user are shared.
        folders = []
        for name in ("input", "user"):
            (workdir / name).mkdir(parents=True, exist_ok=True)
            folders += [f"--{name}-directory", str(workdir / name)]
        argv = [*exe, "launch", "--plain", "--workers", "--comfyui-dir", str(comfy_dir), "--python", python,
                "--port", str(port), "--log-dir", str(workdir), "--", *folders,
                *(["--cpu"] if self.checkout else [])]
        log = workdir / "launch.log"
        with serving(argv, workdir, log, url, self.ready_timeout, env=env):
            deadline = time.monotonic() + self.ready_timeout
            while True:
                try:
                    backends = get_json(url + "/comfyrig/fleet")["backends"]
                    if all(b["live"] for b in backends):
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the gateway's workers did not come up:\n{tail(log)}")
                time.sleep(0.25)
            caps = {"upload", "ws_images"} | ({"frontend"} if self.checkout else set())
            if self.checkout is not None and version_at_least(self.checkout.version, (0, 4)):
                caps.add("jobs")
            yield Running(url, frozenset(caps), Path(self.checkout.dir) if self.checkout else None,
                          self.checkout.version if self.checkout else "fake", log)


def gateway_targets() -> list[ClientTarget]:
    """The gateway in front of fake workers, and of real workers of the newest real checkout."""
    targets: list[ClientTarget] = [GatewayTarget()]
    usable = [c for c in REAL if not c.problem]
    if usable:
        newest = max(usable, key=lambda c: tuple(int(p) if p.isdigit() else 0 for p in c.version.split(".")))
        targets.append(GatewayTarget(newest, marks=(pytest.mark.comfyui, pytest.mark.xdist_group("comfyui-real"))))
    return targets


# --- the list of targets ------------------------------------------------------------------------

def fake_targets() -> list[ClientTarget]:
    return [FakeTarget()]


def real_targets() -> list[ClientTarget]:
    return [RealTarget(c) for c in REAL]


FACTORIES: list[Callable[[], list[ClientTarget]]] = [fake_targets, real_targets, gateway_targets]


def target_params() -> list[Any]:
    """``pytest.param`` for each target of each factory, for a fixture's params; with no real
    checkout configured, one more that skips and says how to configure one."""
    targets = [t for factory in FACTORIES for t in factory()]
    params = [pytest.param(t, id=t.id, marks=list(t.marks)) for t in targets]
    if not any(isinstance(t, RealTarget) for t in targets):
        params.append(pytest.param(None, id="real", marks=[pytest.mark.comfyui, pytest.mark.skip(reason=SKIP)]))
    return params


def real_checkout_for_scripts(running: Running) -> Path | None:
    """The checkout whose script_examples a test runs: the target's own, else the first configured."""
    if running.checkout is not None:
        return running.checkout
    return next((Path(c.dir) for c in REAL if not c.problem), None)


def module_available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def get_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def post_json(url: str, body: object, timeout: float = 10.0) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as response:
        raw = response.read()
    return json.loads(raw) if raw else None
