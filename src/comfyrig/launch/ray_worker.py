"""One Ray actor = one supervised ComfyUI on one GPU of one node.

The piece every "workers on Ray" path shares (``batch --ray`` today, the gateway
on Ray next): ``connect`` joins a cluster (token authentication included),
``cluster_gpus`` lists the GPUs per node without starting anything (dry runs),
and ``ComfyWorker`` is the plain class that a caller wraps with
``ray.remote(num_gpus=1, ...)``: its constructor starts ComfyUI through the one
composition root (``launch/compose.py``: placement, ports, restart policy,
instance records) and ``place()`` says where it runs: node id, host, GPU and
its current URL. A restarted actor is a new ``ComfyWorker`` (a new port, maybe
another node), so a caller asks ``place()`` again after any actor failure.

Usage (the gateway would pass ``listen=`` the node's address)::

    ray = require_ray(); connect(ray, "HEAD:6379", environ)
    Actor = ray.remote(num_gpus=1, max_restarts=-1)(ComfyWorker)
    a = Actor.remote(comfyui_dir, python, args)
    where = WorkerPlace(**ray.get(a.place.remote()))   # where.url, where.node_id, where.host

Ray is an optional extra: ``pip install 'comfyrig[ray]'``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import sys
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LaunchError
from .supervisor import SupervisorOptions

__all__ = [
    "RAY_HINT", "RAY_SUPERVISOR", "ComfyWorker", "NodeGpus", "WorkerPlace", "cluster_gpus", "connect", "node_python",
    "require_ray", "token_available",
]

RAY_HINT = "pip install 'comfyrig[ray]'"
# A worker on a cluster has nobody watching its console: its ComfyUI restarts when it fails,
# unless the command says otherwise (launch's --restart).
RAY_SUPERVISOR = SupervisorOptions(restart="on-failure", restart_delay_s=0.5)
TOKEN_FILE = Path.home() / ".ray" / "auth_token"


def require_ray() -> Any:
    """The ray module, or ConfigError with the install command."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray, which is not installed here.", hint=f"Install it: {RAY_HINT}") from None
    return ray


def token_available(environ: Mapping[str, str], home: Path | None = None) -> str | None:
    """Where this machine holds a Ray auth token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, or
    ~/.ray/auth_token), or None."""
    if environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = environ.get("RAY_AUTH_TOKEN_PATH")
    if path and Path(path).is_file():
        return path
    default = (home / ".ray" / "auth_token") if home is not None else TOKEN_FILE
    return str(default) if default.is_file() else None


def connect(ray: Any, address: str | None, environ: Mapping[str, str]) -> None:
    """Join the running cluster at ``address`` ('auto' or None: the one on this machine).

    Ray (>= 2.60) sends its auth token only when RAY_AUTH_MODE=token, and for an explicit
    address it does not turn that on by itself even when a token file exists: so when the
    mode is unset and a token is here, token mode is turned on (in this process, where Ray
    reads it). Raises LaunchError with one paragraph saying what is wrong."""
    target = address or "auto"
    mode = environ.get("RAY_AUTH_MODE")
    token = token_available(environ)
    if mode is None and token is not None:
        _token_mode()
        mode = "token"
    with _quiet_retries():
        # Only where the head's port answers: against a black-holed address the probe would
        # wait out GCS's own connect timeout before ray.init's retries even start.
        if target != "auto" and _answers(target):
            _refused_token(ray, target, mode, token)
        try:
            ray.init(address=target, log_to_driver=False, configure_logging=False)
        except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, AuthenticationError...
            answers = target != "auto" and _answers(target)
            raise LaunchError(connect_error(target, exc, mode, token, answers=answers)) from None


def _refused_token(ray: Any, target: str, mode: str | None, token: str | None) -> None:
    """One attempt to reach the head's GCS with this machine's token: a refusal is known in a
    fraction of a second, where ``ray.init`` would retry it for about 20. Anything else (an
    older Ray without the client class, the GCS busy) is left to ``ray.init``."""
    try:
        gcs_client = ray._raylet.GcsClient
    except AttributeError:
        return
    try:
        gcs_client(address=target)
    except Exception as exc:  # noqa: BLE001 - AuthenticationError is the one that counts here
        if _is_auth_error(exc):
            raise LaunchError(connect_error(target, exc, mode, token, answers=True)) from None


def _is_auth_error(exc: BaseException) -> bool:
    text = str(exc)
    return exc.__class__.__name__ == "AuthenticationError" or "nauthenticated" in text or "InvalidAuthToken" in text


RETRY_NOISE = ("Failed to get cluster ID from GCS server", "Unauthenticated")


@contextlib.contextmanager
def _quiet_retries() -> Iterator[None]:
    """Ray's C++ core writes a line per refused attempt to file descriptor 2 while it joins
    (one a second, for many seconds): held here and passed on without those lines, which the
    one paragraph of the error replaces."""
    import tempfile

    sys.stderr.flush()
    with tempfile.TemporaryFile() as held:
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read().decode(errors="replace")
            kept = "".join(line for line in text.splitlines(keepends=True) if not any(n in line for n in RETRY_NOISE))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def _token_mode() -> None:
    os.environ["RAY_AUTH_MODE"] = "token"
    # Ray caches its config (the auth mode with it) at import: refresh it, as Ray does itself
    # when 'ray.init()' turns token mode on.
    with contextlib.suppress(Exception):
        from ray._raylet import Config  # type: ignore[attr-defined]

        Config.initialize("")


def _answers(target: str) -> bool:
    """Whether something accepts TCP connections at HOST:PORT (the head's GCS port)."""
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=3):
            return True
    except (OSError, ValueError):
        return False


def connect_error(target: str, exc: BaseException, mode: str | None, token: str | None, *, answers: bool = False) -> str:
    """The one paragraph for a failed ``ray.init``: no cluster, a wrong address, or a token problem."""
    text = str(exc)
    auth = _is_auth_error(exc)
    first = text.strip().splitlines()[0] if text.strip() else exc.__class__.__name__
    if auth or (answers and mode == "token"):
        if token is None:
            return (f"The Ray cluster at {target} asks for a token and this machine has none: copy the head's "
                    "token (its ~/.ray/auth_token, or 'ray get-auth-token' there) to ~/.ray/auth_token here "
                    "(or set RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH).")
        return (f"The Ray cluster at {target} answers but refused this machine's token ({token}, "
                "RAY_AUTH_MODE=token): it is not the head's. Copy the head's ~/.ray/auth_token here "
                "(or set RAY_AUTH_TOKEN to it).")
    if answers:
        return (f"The Ray cluster at {target} answers but did not let this machine join ({first}). If it uses "
                "token authentication (Ray >= 2.60 turns it on where ~/.ray/auth_token exists), copy the head's "
                "~/.ray/auth_token here (or set RAY_AUTH_TOKEN) and RAY_AUTH_MODE=token; also check that this "
                "machine runs the same Ray and Python versions as the cluster.")
    if target == "auto":
        return (f"No Ray cluster runs on this machine ({first}). Start one first: 'ray start --head' on the head "
                "node, 'ray start --address HEAD:6379' on the others, or pass --ray HEAD:6379.")
    return (f"Nothing answers at {target} ({first}). Check the address (the head's 'ray start --head --port' "
            "port, 6379 by default) and that the port is open from here.")


def node_python(python: str) -> str:
    """The interpreter as every node should find it: a path (``.venv/bin/python``) made absolute
    from where the command runs, as the user meant it (an actor's working folder is Ray's, and a
    relative path there named another file, or none); a bare name (``python3``) is looked up on
    each node's PATH."""
    return str(Path(python).absolute()) if os.sep in python else python


@dataclass(frozen=True)
class NodeGpus:
    node_id: str
    host: str
    hostname: str
    gpus: int


def cluster_gpus(ray: Any) -> list[NodeGpus]:
    """The live nodes with GPUs, as the cluster's resources list them (no actor is started)."""
    found = []
    for node in ray.nodes():
        gpus = int(node.get("Resources", {}).get("GPU", 0))
        if node.get("Alive") and gpus > 0:
            found.append(NodeGpus(node["NodeID"], node.get("NodeManagerAddress", "?"),
                                  node.get("NodeManagerHostname", "?"), gpus))
    return found


@dataclass(frozen=True)
class WorkerPlace:
    """Where one actor's ComfyUI runs now. ``url`` answers on ``host`` (127.0.0.1 unless the
    worker listens on the node's address); ``gpu`` is Ray's id of the GPU on its node."""

    node_id: str
    host: str
    hostname: str
    gpu: str
    url: str
    pid: int

    @property
    def tag(self) -> str:
        return f"{self.node_id[:12]}-gpu{self.gpu}"


class ComfyWorker:
    """Runs inside a Ray actor that holds one GPU: a supervised ComfyUI (restart on failure).

    Plain class (no Ray import): wrap it with ``ray.remote``. ``listen``: the address ComfyUI
    binds (127.0.0.1: reachable on its node only)."""

    def __init__(self, comfyui_dir: str, python: str, comfyui_args: list[str], *, listen: str = "127.0.0.1",
                 supervisor: SupervisorOptions | None = None, log_dir: str | None = None) -> None:
        import ray

        from ..config.settings import CliOverrides, resolve_settings
        from .compose import LaunchRequest, compose, gather_facts
        from .fleet import Fleet
        from .placement import THREAD_VARIABLES

        context = ray.get_runtime_context()
        gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        node_id = context.get_node_id()
        gpu = "-".join(gpu_ids) or "cpu"
        self.tag = f"{node_id[:12]}-gpu{gpu}"
        host: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        self._where = (node_id, host, os.uname().nodename, gpu)
        # Ray sets OMP_NUM_THREADS (to the actor's num_cpus, 1 by default) in its
        # workers; ComfyUI must not inherit that: it gets the placement's budget.
        environ = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
        cvd = environ.get("CUDA_VISIBLE_DEVICES", "")
        self.listen = listen
        root = Path(comfyui_dir)
        # The GPU Ray assigned arrives as CUDA_VISIBLE_DEVICES, which the settings read as a
        # selection like any other; the node's NVML names it (or refuses a GPU it lacks).
        settings = resolve_settings(
            # Flags the command was given (or this machine's COMFYUI_ARGS) go to every worker; with
            # none, each node's own COMFYUI_ARGS (its raylet's environment) applies there.
            CliOverrides(comfyui_dir=root, python=python, comfyui_args=shlex.join(comfyui_args) if comfyui_args else None,
                         listen=listen),
            environ, root,
        )
        # Several actors share a node: the kernel picks each port, and each takes its GPU's
        # share of the node's CPU placement, as 'launch --workers' would place them. Logs are
        # per node id and GPU, never shared by actors of nodes on one NFS checkout; so are its
        # output and temp folders and its database (worker_tag: every actor's GPU is "gpu0").
        request = LaunchRequest(
            workers=True, ports="ephemeral", share_node=bool(cvd), owner="ray",
            log_dir=(Path(log_dir) if log_dir else root / "user" / "comfyrig-ray") / self.tag, worker_tag=f"ray-{self.tag}" if cvd else None,
        )
        plan = compose(settings, gather_facts(settings), request)
        self.instance = plan.instances[0]
        self.fleet = Fleet(plan, environ, supervisor or RAY_SUPERVISOR)
        self.fleet.start()

    @property
    def url(self) -> str:
        """Its ComfyUI's URL: on the node's loopback, or, listening beyond it, at the node's
        address as Ray reports it (what a gateway on another node connects to)."""
        if self.listen in ("127.0.0.1", "localhost", "::1"):
            return self.instance.url
        from urllib.parse import urlsplit

        port = urlsplit(self.instance.url).port
        host = self._where[1]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def place(self) -> dict[str, Any]:
        """``WorkerPlace`` as a dict (``WorkerPlace(**d)``): plain data crosses Ray's boundary."""
        node_id, host, hostname, gpu = self._where
        return asdict(WorkerPlace(node_id, host, hostname, gpu, self.url, os.getpid()))

    def is_ready(self) -> bool:
        return self.fleet.is_ready(self.instance.name)

    def is_gone(self) -> bool:
        return self.fleet.is_gone(self.instance.name)

    def restart(self) -> None:
        self.fleet.restart(self.instance.name)

    def shutdown(self) -> None:
        self.fleet.stop()
