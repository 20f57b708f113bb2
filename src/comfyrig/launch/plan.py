"""Pure launch planning: settings + GPU selection -> the ComfyUI processes to start.

``comfyrig launch --dry-run`` prints exactly what ``plan_launch`` returns, and
the supervisor starts exactly that: an argv list (no shell) and the variables
comfyrig sets on top of the inherited environment.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..comfy.args import ArgProblem, ComfyArgs, FlagTable, comfy_args, effective_listen
from ..comfy.multigpu import CheckoutMultiGpu
from ..comfy.urls import local_url
from ..comfy.vram import REMOVED_FLAGS, lowvram_given, medvram_instead, oom_advice, speed_advice, vram_facts
from ..config.modes import ModeLabel, Selection
from ..config.settings import Settings
from ..secrets import mask_argv, mask_env
from .placement import CpuPlacement, format_cpus, thread_env

__all__ = ["GatewayPlan", "InstanceSpec", "LaunchPlan", "is_loopback", "own_flags", "plan_launch"]


@dataclass(frozen=True)
class GatewayPlan:
    """One ComfyUI-compatible URL in front of the workers (``comfyrig.gateway``): it listens
    where the user asked ComfyUI to listen; the workers move to loopback ports behind it."""

    listen: str
    port: int
    urls: tuple[str, ...] = ()  # servers comfyrig did not start, also behind it (--url)
    auth: bool = False  # every client must send a token (--auth; required beyond loopback)

    @property
    def url(self) -> str:
        return local_url(self.listen, self.port)

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "listen": self.listen, "port": self.port, "urls": list(self.urls), "auth": self.auth}


@dataclass(frozen=True)
class InstanceSpec:
    """One ComfyUI process: where it listens, which GPUs it sees, how it starts."""

    name: str
    port: int
    listen: str
    cuda_visible_devices: str
    gpu_indices: tuple[int, ...]  # physical (NVML) indices, in CUDA order
    argv: tuple[str, ...]
    env: Mapping[str, str]  # only what comfyrig sets or passes through
    cwd: Path | None
    placement: CpuPlacement | None = None  # CPUs and thread budget, when placed
    log_file: Path | None = None  # where its whole output goes

    @property
    def cpus(self) -> tuple[int, ...] | None:
        return self.placement.cpus if self.placement else None

    @property
    def url(self) -> str:
        return local_url(self.listen, self.port)

    def child_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The complete environment of the child: inherited, then ours on top."""
        return {**environ, **self.env}

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "port": self.port,
            "listen": self.listen,
            "url": self.url,
            "cuda_visible_devices": self.cuda_visible_devices,
            "gpus": list(self.gpu_indices),
            "cwd": str(self.cwd) if self.cwd else None,
            # What is shown is masked (the one rule of config.secrets); the plan keeps the values.
            "argv": mask_argv(self.argv),
            "env": mask_env(self.env),
            "cpus": format_cpus(self.placement.cpus) if self.placement else None,
            "threads": self.placement.threads if self.placement else None,
            "log_file": str(self.log_file) if self.log_file else None,
        }


@dataclass(frozen=True)
class LaunchPlan:
    mode: ModeLabel
    selection: Selection
    instances: tuple[InstanceSpec, ...]
    comfyui_dir: Path | None
    python: str
    workers: bool
    warnings: tuple[str, ...]
    owner: str = "launch"  # the command that starts it: launch, batch or ray
    # What the checkout says about multi-GPU before it starts (version, native nodes, packs); None: no checkout.
    checkout: CheckoutMultiGpu | None = None
    # What helps against "CUDA out of memory" in this ComfyUI with these flags (comfy.vram.oom_advice), and
    # the same for a run whose log says dynamic VRAM could not be used (no comfy-aimdo, old torch, WSL).
    oom_advice: str = ""
    oom_advice_without_dynamic: str = ""
    gateway: GatewayPlan | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "workers": self.workers,
            "gateway": self.gateway.to_json() if self.gateway else None,
            "comfyui_dir": str(self.comfyui_dir) if self.comfyui_dir else None,
            "python": self.python,
            "instances": [i.to_json() for i in self.instances],
            "warnings": list(self.warnings),
        }


def is_loopback(listen: str) -> bool:
    """True when every address in a ComfyUI ``--listen`` value is loopback."""
    for host in listen.split(","):
        host = host.strip().strip("[]")
        if host == "localhost":
            continue
        try:
            if not ipaddress.ip_address(host).is_loopback:
                return False
        except ValueError:
            return False  # a host name: may resolve anywhere
    return True


def _child_env(settings: Settings, cuda_visible_devices: str) -> dict[str, str]:
    env = {key: str(value.value) for key, value in settings.passthrough.items()}
    for key, src in (
        ("PYTORCH_ALLOC_CONF", settings.pytorch_alloc_conf),
        ("PYTORCH_CUDA_ALLOC_CONF", settings.pytorch_cuda_alloc_conf),
    ):
        if src.value is not None:
            env[key] = str(src.value)
    # PCI bus order makes CUDA's indices equal nvidia-smi's and NVML's.
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    env["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices
    # ComfyUI prints with print() too; unbuffered, its lines reach us as they happen.
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _gpu_tag(indices: tuple[int, ...]) -> str:
    return "gpu" + "-".join(str(i) for i in indices)


def _worker_dirs(tag: str, args: ComfyArgs, comfyui_dir: Path | None, parents: Mapping[str, str]) -> list[str]:
    """Own output and temp folders per worker, and its own database.

    Two ComfyUIs writing to one output folder race for file names (each picks
    "the next free counter" on its own) and overwrite each other's images,
    and every ComfyUI empties its temp folder when it starts: so a folder the
    user gave for all (``parents``, taken over from their flags) becomes the
    parent of one folder per worker. Temp folders stay out of the checkout's
    ``temp/``, which any other ComfyUI started from the same checkout empties
    (ComfyUI uses ``<--temp-directory>/temp`` and removes it at start).
    Everything goes under ``--base-directory`` when the user gave one (ComfyUI
    reads its output, temp and user folders there), resolved from ComfyUI's
    folder, where it runs.

    ComfyUI keeps a SQLite database (default ``user/comfyui.db``); 0.24 locks it, so every
    worker after the first logged "Could not acquire lock on database ... Use
    --database-url" and ran without one (0.3.x shared it unlocked). ``--database-url``
    takes an absolute path: under ``--user-directory`` or the base's ``user/`` when given.
    """
    extra: list[str] = []
    base = args.value("--base-directory")
    root = Path(base) if base else Path()
    for flag, default_parent in (("--output-directory", root / "output"), ("--temp-directory", root / "comfyrig-temp")):
        if flag in parents:
            extra += [flag, str(Path(parents[flag]) / tag)]
        elif not args.given(flag) and (not args.checked or args.table.has(flag)):
            extra += [flag, str(default_parent / tag)]
    if comfyui_dir is not None and args.checked and args.table.has("--database-url") and not args.given("--database-url"):
        user = args.value("--user-directory")
        folder = comfyui_dir / (Path(user) if user else root / "user")
        extra += ["--database-url", f"sqlite:///{folder.absolute() / f'comfyui-{tag}.db'}"]
    return extra


def _with_threads(env: dict[str, str], placed: CpuPlacement | None, environ: Mapping[str, str]) -> dict[str, str]:
    if placed is None:
        return env
    for key, value in thread_env(placed.threads).items():
        if key not in env and key not in environ:  # a budget the user set (env or .env) wins
            env[key] = value
    return env


def plan_launch(
    settings: Settings,
    selection: Selection,
    ports: Sequence[int],
    *,
    workers: bool = False,
    flags: FlagTable | None = None,
    placements: Sequence[CpuPlacement] | None = None,
    placement_notes: Sequence[str] = (),
    log_dir: Path | None = None,
    owner: str = "launch",
    checkout: CheckoutMultiGpu | None = None,
    gateway: GatewayPlan | None = None,
    fleet_dirs: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
    worker_tag: str | None = None,
) -> LaunchPlan:
    """Plan the processes. ``ports`` are the concrete ports, one per instance.

    With ``workers`` there is one ComfyUI per selected GPU, each seeing only
    its own GPU; otherwise one ComfyUI sees the whole selection. Logs go to
    ``log_dir`` (default: the checkout's ``user/``) as ``comfyrig-PORT.log``.
    ``flags`` is the checkout's flag table (None: unknown), against which the
    user's ComfyUI flags are read; ``checkout`` what the checkout says about multi-GPU
    (its version too), which the panel and the advice use. With a ``gateway`` the
    instances listen on loopback only: the gateway is their one way in. ``fleet_dirs``:
    folders the user gave for every worker (``owned.take_over``), each worker's own goes
    under them; ``notes`` are shown with the warnings. ``worker_tag`` names a lone worker's
    own folders and database instead of its GPU index (a Ray actor: node and GPU).
    """
    groups: list[tuple[str, tuple[int, ...], str]]
    if workers and not selection.is_cpu:
        names = selection.cuda_visible_devices.split(",")
        groups = [(f"worker-{n}", (g.index,), names[n]) for n, g in enumerate(selection.gpus)]
        if worker_tag is not None and len(groups) != 1:
            raise ValueError(f"worker_tag names one worker's folders, and this plan has {len(groups)}")
    else:
        groups = [("comfyui", tuple(g.index for g in selection.gpus), selection.cuda_visible_devices)]
    if len(ports) != len(groups):
        raise ValueError(f"need {len(groups)} ports, got {len(ports)}")

    if placements is not None and len(placements) != len(groups):
        raise ValueError(f"need {len(groups)} placements, got {len(placements)}")
    per_instance: list[CpuPlacement | None] = list(placements) if placements is not None else [None] * len(groups)
    warnings = [*selection.notes, *notes, *(f"CPU placement: {note}" for note in placement_notes)]
    args = comfy_args(settings, flags, own=own_flags(settings, selection, flags))
    version = checkout.version if checkout is not None else None
    _flag_warnings(settings, selection, args, len(groups), warnings, version)
    listen = "127.0.0.1" if gateway is not None else str(settings.listen.value)
    comfyui_dir = settings.comfyui_dir.value
    logs = log_dir or _user_dir(args, comfyui_dir)
    bound = effective_listen(settings, args)  # a --listen in ComfyUI's flags wins: argparse keeps the last
    if gateway is not None and not args.user_given("--listen"):
        bound = listen
    if not is_loopback(bound):
        warnings.append(
            f"ComfyUI will listen on {bound}: it has no authentication, so anyone who can reach "
            "that address can run code on this machine. Keep it behind a firewall or VPN."
        )
    instances = tuple(
        InstanceSpec(
            name=name,
            port=port,
            listen=listen,
            cuda_visible_devices=cvd,
            gpu_indices=indices,
            argv=(settings.python.value, "main.py", "--listen", listen, "--port", str(port), *args.tokens,
                  *(_worker_dirs(worker_tag or _gpu_tag(indices), args, comfyui_dir, fleet_dirs or {}) if workers and not selection.is_cpu else ())),
            env=_with_threads(_child_env(settings, cvd), placed, settings.environ),
            cwd=comfyui_dir,
            placement=placed,
            log_file=logs / f"comfyrig-{port}.log" if logs is not None else None,
        )
        for (name, indices, cvd), port, placed in zip(groups, ports, per_instance, strict=True)
    )
    advice = functools.partial(oom_advice, args, version=version, several_gpus=len(selection.gpus) > 1 and not workers,
                               native_multigpu=checkout.native if checkout is not None else None)
    return LaunchPlan(
        mode=selection.mode,
        selection=selection,
        instances=instances,
        comfyui_dir=settings.comfyui_dir.value,
        python=settings.python.value,
        workers=workers and not selection.is_cpu,
        warnings=tuple(warnings),
        owner=owner,
        checkout=checkout,
        oom_advice=advice(dynamic_vram=None),
        oom_advice_without_dynamic=advice(dynamic_vram=False),
        gateway=gateway,
    )


def own_flags(settings: Settings, selection: Selection, table: FlagTable | None) -> list[str]:
    """The ComfyUI flags comfyrig adds before the user's: --cpu in CPU mode (unless the
    user gave it), --enable-manager when asked for and this ComfyUI has it."""
    flags: list[str] = []
    if selection.is_cpu and not comfy_args(settings, table).given("--cpu"):
        flags.append("--cpu")
    if settings.enable_manager.value and (table is None or not table.complete or table.has("--enable-manager")):
        flags.append("--enable-manager")
    return flags


def _flag_warnings(
    settings: Settings, selection: Selection, args: ComfyArgs, instances: int, warnings: list[str], version: str | None
) -> None:
    if settings.enable_manager.value and args.checked and not args.table.has("--enable-manager"):
        warnings.append(
            "ENABLE_COMFYUI_MANAGER is on, but this ComfyUI has no --enable-manager flag "
            "(added in 0.3.76); it was left out. Install ComfyUI-Manager into custom_nodes instead."
        )
    if not selection.is_cpu and args.user_given("--cpu"):
        warnings.append(f"--cpu is in ComfyUI's arguments, so the selected GPUs ({selection.mode} mode) stay unused.")
    # comfyrig passes --listen and --port first; ComfyUI keeps the last, so the user's win unseen.
    for flag, setting, configured in (("--port", "COMFYUI_PORT", settings.port.value),
                                      ("--listen", "COMFYUI_LISTEN", settings.listen.value)):
        value = args.value(flag)
        several = flag == "--port" and instances > 1
        if not args.user_given(flag) or value is None or (value == str(configured) and not several):
            continue
        what = "the port comfyrig gives each instance" if several else f"{setting} ({configured})"
        warnings.append(
            f"{flag} {value} in ComfyUI's arguments overrides {what}, since ComfyUI keeps the last value: "
            f"comfyrig would look for ComfyUI at the wrong address. Set it with comfyrig's {flag} or {setting} instead."
        )
    if args.user_given("--cuda-device") and len(selection.gpus) > 1:
        value = args.value("--cuda-device") or ""
        to = f"{value}, in place of the GPUs" if "," in value else "one GPU and hides the others"
        warnings.append(
            f"--cuda-device is in ComfyUI's arguments: ComfyUI then rewrites CUDA_VISIBLE_DEVICES to {to} "
            f"comfyrig selected ({selection.cuda_visible_devices}). Remove it."
        )
    if args.user_given("--enable-cors-header"):
        warnings.append("--enable-cors-header replaces ComfyUI's only CSRF protection; use it only on a trusted network.")
    if args.user_given("--lowvram") and not selection.is_cpu:
        note = lowvram_given(vram_facts(args, version))
        if note is not None:
            warnings.append(f"{note}.")
    if not selection.is_cpu and version is not None:  # measured: docs/performance.md, issue #17
        tip = speed_advice(vram_facts(args, version))
        if tip is not None:
            warnings.append(f"Speed: {tip}.")
    warnings.extend(_problem_text(p, args, version) for p in args.problems)


def _problem_text(problem: ArgProblem, args: ComfyArgs, version: str | None = None) -> str:
    if problem.kind == "unknown":
        extra = ""
        if problem.token in ("--medvram", "--medvram-sdxl"):
            extra = f" (it is an AUTOMATIC1111 flag; {medvram_instead(args, version=version)})"
        elif problem.token in REMOVED_FLAGS:
            extra = f" ({REMOVED_FLAGS[problem.token]})"
        return f"ComfyUI has no {problem.token} flag{extra}: it will exit with code 2."
    text = f"{problem.detail[0].upper()}{problem.detail[1:]}: ComfyUI will exit with code 2."
    if problem.kind == "conflict" and "--cpu" in args.tokens[: args.own]:
        text += f" comfyrig adds --cpu in CPU mode: remove {problem.token}, or choose GPUs."
    return text


def _user_dir(args: ComfyArgs, comfyui_dir: Path | None) -> Path | None:
    """ComfyUI's user folder, where comfyrig's log goes unless --log-dir says otherwise: the one
    ComfyUI itself uses (--user-directory, else --base-directory/user, else the checkout's user/),
    so the log sits with the rest of that ComfyUI's state, not in a checkout it never writes."""
    for flag, below in (("--user-directory", None), ("--base-directory", "user")):
        value = args.value(flag)
        if value:
            path = Path(value).expanduser()
            if not path.is_absolute() and comfyui_dir is not None:
                path = comfyui_dir / path  # ComfyUI runs in its checkout: relative paths start there
            return path / below if below else path
    return comfyui_dir / "user" if comfyui_dir is not None else None
