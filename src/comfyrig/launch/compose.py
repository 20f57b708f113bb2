"""The composition root: (settings, host facts, request) -> the plan of every ComfyUI to start.

Every command that starts ComfyUI builds its plan here: ``launch`` (one
instance or one per GPU), the batch's own fleet, a Ray actor (whose GPU is
the ``CUDA_VISIBLE_DEVICES`` Ray assigned, read through the settings like any
other), and ``doctor``'s dry look at what ComfyUI would get. Two places that
composed the same thing drifted before (the batch fleet wrote no instance
records; the Ray actor made up a GPU).

``compose`` is pure but for the ports seam: the facts it needs (GPUs, CPUs,
the checkout's flags) are gathered once by ``gather_facts``, and free ports
come from an injectable picker, so tests compose plans for simulated machines
without binding anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..comfy.args import FlagTable
from ..comfy.checkout import comfyui_version, flag_table
from ..comfy.multigpu import CheckoutMultiGpu, read_checkout
from ..config.interpreter import not_found_text
from ..config.modes import select_gpus
from ..config.settings import Settings
from ..errors import ComfyUINotFoundError, ConfigError
from ..host.cpus import available_cpus, cgroup_cpu_quota, cpu_cores
from ..host.gpus.inventory import Gpu, Inventory
from ..host.gpus.probe import probe_inventory
from ..host.ports import ephemeral_port, free_ports
from .owned import TakenOver, take_over
from .placement import CpuPlacement, PlacementMode, placement_for_gpu, plan_placement
from .plan import GatewayPlan, LaunchPlan, is_loopback, plan_launch

__all__ = ["HostFacts", "LaunchRequest", "Owner", "PortPicker", "compose", "gather_facts", "pick_ports", "plan_gateway"]

# Which command started an instance; kept in its registry record so 'status' can say.
Owner = Literal["launch", "batch", "ray"]
DEFAULT_BASE_PORT = 8188


@dataclass(frozen=True)
class HostFacts:
    """What composing a plan needs to know about this machine and the checkout."""

    inventory: Inventory
    cpus: frozenset[int]  # the CPUs comfyrig may use (affinity mask)
    cpu_quota: float | None = None  # a cgroup limit, in CPUs
    cores: tuple[tuple[int, ...], ...] | None = None  # hyperthread siblings per physical core
    flags: FlagTable | None = None  # the checkout's ComfyUI flags (comfy/cli_args.py); None: unknown
    checkout: CheckoutMultiGpu | None = None  # its version and multi-GPU nodes; None: no checkout


@dataclass(frozen=True)
class LaunchRequest:
    """What the command asks for, beyond the settings.

    ``placement`` None means: ``auto`` for a fleet of two or more workers,
    ``none`` otherwise. ``share_node`` marks one of several workers started
    independently on this node, one per GPU (Ray actors): its CPU placement is
    its GPU's share of the whole node's plan, so they never overlap.
    """

    workers: bool = False
    placement: PlacementMode | None = None
    cpus_per_worker: int | None = None
    threads_per_worker: int | None = None
    ports: Literal["settings", "ephemeral"] = "settings"
    log_dir: Path | None = None  # default: the checkout's user/ folder
    owner: Owner = "launch"
    share_node: bool = False
    notes: tuple[str, ...] = field(default=())
    gateway: bool = False  # one URL in front of the workers (only with workers on GPUs)
    urls: tuple[str, ...] = ()  # servers comfyrig did not start, also behind the gateway
    auth: bool = False  # the gateway asks every client for a token (required beyond loopback)
    insecure_no_auth: bool = False  # a gateway beyond loopback without a token (warned)
    look_only: bool = False  # nothing is started (doctor): an interpreter that was not found is no error
    # The name of a worker's own output/temp folders and database (default "gpuN", N its GPU's
    # index). A Ray actor passes its node and GPU: every actor sees its GPU as index 0, so
    # "gpu0" would be one folder and one database for actors of nodes sharing a checkout (NFS).
    worker_tag: str | None = None


class PortPicker:
    """Free ports, by binding (the production seam); tests pass their own."""

    def free(self, base: int, count: int, host: str) -> list[int]:
        """Raises ConfigError when ports run out: they end at 65535, so a fleet (or the workers
        behind a gateway) from --port 65535 has nowhere to go."""
        try:
            return free_ports(base, count, host)
        except OSError:
            raise ConfigError(
                f"{count} free port(s) are needed from {base} upwards, and there are not that many up to 65535.",
                hint="Choose a lower --port (COMFYUI_PORT), or 'auto'.",
            ) from None

    def ephemeral(self, host: str) -> int:
        return ephemeral_port(host)


def gather_facts(settings: Settings, *, probe: Callable[[str | None], Inventory] = probe_inventory) -> HostFacts:
    """Probe the machine once (NVML or the simulated GPUs, CPU affinity, cgroup quota,
    topology) and read the checkout's flags. Raises ConfigError / GpuProbeError."""
    cpus = available_cpus()
    cores = cpu_cores(cpus)
    comfyui_dir = settings.comfyui_dir.value
    return HostFacts(
        inventory=probe(settings.fake_gpus),
        cpus=cpus,
        cpu_quota=cgroup_cpu_quota(),
        cores=tuple(cores) if cores is not None else None,
        flags=flag_table(comfyui_dir) if comfyui_dir is not None else None,
        checkout=read_checkout(comfyui_dir, comfyui_version(comfyui_dir)) if comfyui_dir is not None else None,
    )


def pick_ports(settings: Settings, request: LaunchRequest, count: int, picker: PortPicker) -> list[int]:
    """The concrete ports: the configured one (one instance), free ones from it upwards
    (a fleet, or 'auto' from 8188), or kernel-chosen ones (``ports="ephemeral"``)."""
    host = settings.listen.value.split(",")[0]
    if request.ports == "ephemeral":
        return [picker.ephemeral(host) for _ in range(count)]
    value = settings.port.value
    if value == "auto":
        return picker.free(DEFAULT_BASE_PORT, count, host)
    if request.workers:
        return picker.free(int(value), count, host)
    return [int(value)]


def plan_gateway(settings: Settings, request: LaunchRequest, count: int, picker: PortPicker) -> tuple[GatewayPlan, list[int]]:
    """The gateway on the configured port (or the first free one from 8188 for 'auto'), where
    the user asked ComfyUI to listen; the workers on free loopback ports after it."""
    listen = str(settings.listen.value)
    host = listen.split(",")[0]
    value = settings.port.value
    port = picker.free(DEFAULT_BASE_PORT, 1, host)[0] if value == "auto" else int(value)
    workers = picker.free(port + 1, count, "127.0.0.1") if request.ports == "settings" else \
        [picker.ephemeral("127.0.0.1") for _ in range(count)]
    if not is_loopback(listen) and not request.auth and not request.insecure_no_auth:
        raise ConfigError(
            f"The gateway would listen on {listen}, and ComfyUI has no authentication of its own: anyone who "
            "reaches that address could run code on this machine.",
            hint="Add --auth (clients then send a token: COMFYRIG_AUTH_TOKEN, or the one comfyrig keeps in its state "
            "folder), or --insecure-no-auth on a network you trust, or keep the default 127.0.0.1.",
        )
    auth = request.auth
    return GatewayPlan(listen=listen, port=port, urls=request.urls, auth=auth), workers


def compose(settings: Settings, facts: HostFacts, request: LaunchRequest, *, ports: PortPicker | None = None) -> LaunchPlan:
    """The plan of every ComfyUI this request starts. Raises SelectionError for a GPU
    selection that does not fit ``facts.inventory``, ComfyUINotFoundError when ComfyUI's
    interpreter was not found for a checkout (``look_only`` plans, doctor's, are composed
    anyway; without a checkout the command says how to get one)."""
    if settings.python.source == "default" and settings.comfyui_dir.value is not None and not request.look_only:
        raise ComfyUINotFoundError(
            not_found_text(settings.comfyui_dir.value, settings.environ),
            hint="Name ComfyUI's interpreter with --python PATH or COMFYUI_PYTHON=PATH (e.g. ComfyUI/venv/bin/python), "
            "or create its environment with 'comfyrig install'.",
        )
    selection = select_gpus(settings.gpu_request.value, facts.inventory)
    workers = request.workers and not selection.is_cpu
    count = len(selection.gpus) if workers else 1
    placements, notes = _placements(selection.gpus, facts, request, workers)
    try:
        # Before the ports are picked: a --port among ComfyUI's flags is comfyrig's.
        # A tagged worker is one of a fleet started one by one (Ray actors).
        owned = take_over(settings, facts.flags, fleet=workers and (count > 1 or request.worker_tag is not None))
    except ConfigError:
        if not request.look_only:
            raise
        owned = TakenOver(settings, {}, ())  # doctor's look: its own checks name the flag
    settings = owned.settings
    picker = ports or PortPicker()
    gateway: GatewayPlan | None = None
    if request.gateway and workers:
        gateway, chosen = plan_gateway(settings, request, count, picker)
    else:
        chosen = pick_ports(settings, request, count, picker)
    return plan_launch(
        settings,
        selection,
        chosen,
        workers=request.workers,
        flags=facts.flags,
        placements=placements,
        placement_notes=(*request.notes, *notes),
        log_dir=request.log_dir,
        owner=request.owner,
        checkout=facts.checkout,
        gateway=gateway,
        fleet_dirs=owned.dirs,
        worker_tag=request.worker_tag,
        notes=owned.notes,
    )


def _placements(
    gpus: tuple[Gpu, ...], facts: HostFacts, request: LaunchRequest, workers: bool
) -> tuple[list[CpuPlacement] | None, list[str]]:
    explicit = request.cpus_per_worker is not None or request.threads_per_worker is not None
    mode = request.placement or ("auto" if (workers and len(gpus) > 1) or explicit or request.share_node else "none")
    if mode == "none":
        return None, []
    cores = list(facts.cores) if facts.cores is not None else None
    if request.share_node and len(gpus) == 1:
        # One of the node's one-per-GPU workers: its share of the plan for every GPU here.
        mine = gpus[0]
        inventory = facts.inventory.gpus
        placed, notes = placement_for_gpu(
            str(mine.index),
            [g.cpu_affinity for g in inventory],
            [(str(g.index), g.uuid, *g.mig_uuids) for g in inventory],
            facts.cpus,
            cpu_quota=facts.cpu_quota,
            cores=cores,
        )
        return ([placed] if placed is not None else None), notes
    affinities = [g.cpu_affinity for g in gpus] if workers else [None]
    return plan_placement(
        affinities,
        facts.cpus,
        cpus_per_worker=request.cpus_per_worker,
        threads_per_worker=request.threads_per_worker,
        cpu_quota=facts.cpu_quota,
        cores=cores,
    )
