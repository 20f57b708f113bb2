"""Everything the doctor's checks look at, gathered once.

``gather`` does all the probing (settings, GPUs, the ComfyUI checkout, the
torch child, the port, one HTTP request); the checks are then pure functions
of the resulting ``DoctorContext``, so tests build contexts directly. A
failure while gathering is kept in the context for the check that reports
it, never raised: the doctor has to work on exactly the machines where
something is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..comfy.args import ComfyArgs, FlagTable, comfy_args, effective_listen, effective_port, parse_comfy_args, user_args
from ..comfy.catalog import Catalog, catalog_of
from ..comfy.checkout import comfyui_version, flag_table
from ..comfy.client import ComfyClient, probe_http_client
from ..comfy.multigpu import CheckoutMultiGpu, MultiGpuFinding, finding_from, read_checkout
from ..comfy.urls import local_url
from ..config.modes import Selection, select_gpus
from ..config.settings import DEFAULT_PORT, CliOverrides, Settings, env_file_candidates, resolve_settings
from ..errors import ComfyAPIError, ComfyrigError, ComfyUnreachable, ConfigError
from ..host.cpus import available_cpus
from ..host.gpus.inventory import Inventory
from ..host.gpus.probe import probe_inventory
from ..host.gpus.torchcheck import run_torch_check
from ..host.ports import PortHolder, port_is_free, who_holds
from ..launch.compose import HostFacts, LaunchRequest, PortPicker, compose
from ..launch.plan import own_flags
from .envscan import EnvScan, scan_env_file

__all__ = ["DoctorContext", "GatewayState", "HttpState", "PortState", "Probes", "gather"]


@dataclass(frozen=True)
class PortState:
    port: int | None  # None: "auto" (the next free one is taken at launch)
    host: str
    free: bool
    holder: PortHolder | None = None


@dataclass(frozen=True)
class HttpState:
    url: str
    stats: Mapping[str, Any] | None = None  # GET /system_stats, when ComfyUI answered
    error: str | None = None
    reachable: bool = False  # something answered HTTP, even if not as ComfyUI
    # dual/multi mode and ComfyUI answered: its multi-GPU nodes and torch devices (None: not asked or no answer)
    multigpu: MultiGpuFinding | None = None
    multigpu_error: str | None = None  # why /object_info could not be read


@dataclass(frozen=True)
class GatewayState:
    """A gateway comfyrig started (from the instance records) and what it and its workers say."""

    url: str
    view: Mapping[str, Any] | None = None  # GET /comfyrig/fleet
    error: str | None = None
    catalogs: Mapping[str, Catalog | None] = field(default_factory=dict)  # worker -> its node types and models


@dataclass(frozen=True)
class DoctorContext:
    environ: Mapping[str, str]
    env_candidates: tuple[Path, ...] = ()  # where a .env is looked for, in order
    settings: Settings | None = None
    settings_error: ComfyrigError | None = None
    inventory: Inventory | None = None
    inventory_error: ComfyrigError | None = None
    selection: Selection | None = None
    selection_error: ComfyrigError | None = None
    flags: FlagTable | None = None  # ComfyUI's own flags, from comfy/cli_args.py
    version: str | None = None  # ComfyUI's, from comfyui_version.py
    checkout: CheckoutMultiGpu | None = None  # its native multi-GPU nodes and ComfyUI-MultiGPU folders
    torch: Mapping[str, Any] | None = None  # the torch child's JSON; None when not run
    torch_note: str = ""  # why the torch check ran, or why not
    port: PortState | None = None
    http: HttpState | None = None
    env_file: Path | None = None  # the .env comfyrig reads (the first candidate that exists)
    env_scan: EnvScan | None = None  # its lines, when it could be read
    env_error: str | None = None  # why it could not
    gateways: tuple[GatewayState, ...] = ()  # running gateways comfyrig started

    @property
    def comfyui_dir(self) -> Path | None:
        return self.settings.comfyui_dir.value if self.settings is not None else None

    @property
    def args(self) -> tuple[str, ...]:
        """The ComfyUI flags the user added (COMFYUI_ARGS, then those after --)."""
        return user_args(self.settings) if self.settings is not None else ()

    @property
    def comfy_args(self) -> ComfyArgs:
        """The user's ComfyUI flags as this checkout's parser reads them, after the flags
        comfyrig adds (--cpu in CPU mode), so that clashes with those show too."""
        if self.settings is None:
            return parse_comfy_args((), self.flags)
        own = own_flags(self.settings, self.selection, self.flags) if self.selection is not None else []
        return comfy_args(self.settings, self.flags, own=own)


@dataclass(frozen=True)
class Probes:
    """The side-effecting collaborators, replaceable in tests."""

    inventory: Callable[[str | None], Inventory] = probe_inventory
    torch: Callable[..., dict[str, Any]] = run_torch_check
    port_is_free: Callable[[int, str], bool] = port_is_free
    who_holds: Callable[[int], PortHolder | None] = who_holds
    http_client: Callable[[str], httpx.Client] = probe_http_client  # tests pass one over httpx.MockTransport


def gather(
    cli: CliOverrides, environ: Mapping[str, str], cwd: Path, *, torch: bool | None, probes: Probes = Probes()
) -> DoctorContext:
    """Probe everything once. ``torch`` None means: on when a ComfyUI interpreter was found."""
    dir_hint = cli.comfyui_dir if cli.comfyui_dir is not None else environ.get("COMFYUI_DIR")
    candidates = env_file_candidates(cli.env_file, dir_hint, cwd)
    found: dict[str, Any] = {"environ": environ, "env_candidates": candidates, **_env_scan(candidates)}
    try:
        settings = resolve_settings(cli, environ, cwd)
    except ComfyrigError as exc:
        settings = None
        found["settings_error"] = exc
    found["settings"] = settings
    fake = settings.fake_gpus if settings is not None else environ.get("COMFYRIG_FAKE_GPUS")
    try:
        inventory = probes.inventory(fake)
    except ComfyrigError as exc:
        inventory = None
        found["inventory_error"] = exc
    found["inventory"] = inventory
    if settings is None:
        found["torch_note"] = "skipped: the settings could not be resolved"
        return DoctorContext(**found)

    selection = None
    if inventory is not None:
        try:
            selection = select_gpus(settings.gpu_request.value, inventory)
        except ComfyrigError as exc:
            found["selection_error"] = exc
    found["selection"] = selection
    comfyui_dir = settings.comfyui_dir.value
    if comfyui_dir is not None:
        found["flags"] = flag_table(comfyui_dir)
        found["version"] = comfyui_version(comfyui_dir)
        found["checkout"] = read_checkout(comfyui_dir, found["version"])
    args = comfy_args(settings, found.get("flags"))
    port = effective_port(settings, args)
    child_env: Mapping[str, str] = {}
    if selection is not None and inventory is not None:
        # The exact variables ComfyUI would get (through the one composition root), so
        # the torch child sees what ComfyUI will.
        facts = HostFacts(inventory=inventory, cpus=available_cpus(), flags=found.get("flags"), checkout=found.get("checkout"))
        plan = compose(settings, facts, LaunchRequest(look_only=True), ports=_LookOnly(port or DEFAULT_PORT))
        child_env = plan.instances[0].env
    simulated = inventory is not None and inventory.source == "simulated"
    found.update(_torch(settings, selection, child_env, torch, simulated, probes))
    host = effective_listen(settings, args)
    found["port"] = _port_state(port, host, probes)
    several = selection is not None and len(selection.gpus) > 1
    found["http"] = _http_state(local_url(host, port or DEFAULT_PORT), probes, multigpu=several)
    found["gateways"] = _gateways(environ, probes)
    return DoctorContext(**found)


def _gateways(environ: Mapping[str, str], probes: Probes) -> tuple[GatewayState, ...]:
    """Each running gateway's fleet view (local workers', and a Ray cluster's), and every
    worker's node types and models behind it, read from each worker directly (to name what
    some workers lack: a prompt using it fails only where it is routed)."""
    from ..gateway.token import client_headers
    from ..launch.ray_record import ray_records
    from ..launch.registry import state_dir

    try:
        state = state_dir(environ)
        urls: dict[str, dict[str, str]] = {r.gateway: {} for r in state.records() if r.gateway and r.matches_process()}
        for ray in ray_records(state):
            urls[ray.url] = client_headers(environ, state, ray.auth)
    except ComfyrigError:
        return ()
    found = []
    for url, headers in urls.items():
        try:
            with probes.http_client(url) as http:
                view = http.get(url + "/comfyrig/fleet", headers=headers).raise_for_status().json()
        except (httpx.HTTPError, ValueError) as exc:
            found.append(GatewayState(url, error=str(exc) or type(exc).__name__))
            continue
        catalogs: dict[str, Catalog | None] = {}
        for backend in view.get("backends") or []:
            try:
                with probes.http_client(backend["url"]) as http:
                    info = http.get(backend["url"] + "/object_info").raise_for_status().json()
                catalogs[backend["name"]] = catalog_of(info) if isinstance(info, dict) else None
            except (httpx.HTTPError, ValueError, TypeError):
                catalogs[backend["name"]] = None
        found.append(GatewayState(url, view=view, catalogs=catalogs))
    return tuple(found)


class _LookOnly(PortPicker):
    """Ports for a plan that is only looked at: the configured one, nothing bound."""

    def __init__(self, port: int) -> None:
        self.port = port

    def free(self, base: int, count: int, host: str) -> list[int]:
        return list(range(self.port, self.port + count))

    def ephemeral(self, host: str) -> int:
        return self.port


def _env_scan(candidates: tuple[Path, ...]) -> dict[str, Any]:
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        return {}
    try:
        return {"env_file": path, "env_scan": scan_env_file(path)}
    except ConfigError as exc:
        return {"env_file": path, "env_error": exc.message}


def _torch(
    settings: Settings,
    selection: Selection | None,
    child_env: Mapping[str, str],
    wanted: bool | None,
    simulated: bool,
    probes: Probes,
) -> dict[str, Any]:
    python = settings.python.value
    found_interpreter = settings.python.source != "default"
    if wanted is False:
        return {"torch_note": "skipped (--no-torch)"}
    if wanted is None and simulated:
        # Real torch against made-up GPUs would only report mismatches.
        return {"torch_note": "skipped: the GPUs are simulated (COMFYRIG_FAKE_GPUS); --torch asks anyway"}
    if wanted is None and not found_interpreter:
        return {
            "torch_note": "skipped: no ComfyUI interpreter was found (set COMFYUI_PYTHON or --python), "
            "so torch was not asked; --torch asks comfyrig's own interpreter"
        }
    if selection is None:
        return {"torch_note": "skipped: the GPU selection is invalid (see gpu.mode)"}
    why = "--torch" if wanted else f"on by default: ComfyUI's interpreter {python} was found"
    try:
        answer = probes.torch(python, child_env, settings.environ)
    except OSError as exc:  # e.g. not executable; FileNotFoundError is answered by run_torch_check itself
        answer = {"error": f"the interpreter {python} cannot be run: {exc.strerror or exc}"}
    return {"torch": answer, "torch_note": why}


def _port_state(port: int | None, host: str, probes: Probes) -> PortState:
    if port is None:
        return PortState(port=None, host=host, free=True)
    bind_host = host.split(",")[0].strip()
    if probes.port_is_free(port, bind_host):
        return PortState(port=port, host=host, free=True)
    return PortState(port=port, host=host, free=False, holder=probes.who_holds(port))


def _http_state(url: str, probes: Probes, *, multigpu: bool = False) -> HttpState:
    """``GET /system_stats``; with ``multigpu`` (dual/multi mode) and an answer, ``/object_info``
    too, for the multi-GPU nodes it registered."""
    try:
        client = ComfyClient(url, http=probes.http_client(url))
    except ConfigError as exc:  # a proxy variable that cannot be used for this URL
        return HttpState(url=url, error=str(exc))
    with client:
        try:
            stats = client.system_stats()
        except ComfyUnreachable as exc:
            return HttpState(url=url, error=exc.message)
        except ComfyAPIError as exc:
            return HttpState(url=url, error=exc.message, reachable=True)
        if not multigpu:
            return HttpState(url=url, stats=stats, reachable=True)
        try:
            finding = finding_from(client.object_info(), stats)
        except ComfyAPIError as exc:
            return HttpState(url=url, stats=stats, reachable=True, multigpu_error=exc.message)
        return HttpState(url=url, stats=stats, reachable=True, multigpu=finding)
