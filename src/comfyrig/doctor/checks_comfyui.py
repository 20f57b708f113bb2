"""Checks of the settings, the ComfyUI checkout, its flags, node packs and a running instance."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from ..comfy.args import ArgProblem, ComfyArgs
from ..comfy.multigpu import find_multigpu_packs
from ..comfy.vram import REMOVED_FLAGS, lowvram_given, medvram_instead, vram_facts
from ..config.interpreter import not_found_text
from ..config.settings import Sourced
from .context import DoctorContext
from .result import CheckResult, Status

__all__ = [
    "check_args",
    "check_comfyui_dir",
    "check_multigpu",
    "check_python",
    "check_running",
    "check_settings",
    "check_version",
    "find_multigpu_packs",
    "missing_comfy_modules",
]

_SKIP_NO_SETTINGS = "The settings could not be resolved (see config.settings)."
_WORST: dict[Status, int] = {"pass": 0, "skip": 0, "warn": 1, "fail": 2}

# Flags of AUTOMATIC1111's web UI that people carry over; none exists in ComfyUI.
A1111_FLAGS = {
    "--medvram": "use --lowvram, or --reserve-vram GB",
    "--medvram-sdxl": "use --lowvram, or --reserve-vram GB",
    "--xformers": "ComfyUI uses xformers by itself when it is installed",
    "--no-half": "use --force-fp32",
    "--no-half-vae": "use --fp32-vae",
    "--precision": "use --force-fp32",
    "--api": "ComfyUI's API is always on",
    "--share": "ComfyUI has no tunnel; never expose it without authentication in front",
    "--opt-sdp-attention": "use --use-pytorch-cross-attention",
    "--skip-torch-cuda-test": "ComfyUI has no such test; run 'comfyrig doctor --torch' instead",
}
# The A1111 flags about VRAM: what to use instead depends on this ComfyUI (comfy.vram.medvram_instead).
_VRAM_A1111 = frozenset({"--medvram", "--medvram-sdxl"})
# ComfyUI-MultiGPU releases verified to load in a ComfyUI release (see COMFYUI-FACTS.md).
MULTIGPU_KNOWN_GOOD = {"2.5.11": "0.3.76"}
MULTIGPU_URL = "https://github.com/pollockjj/ComfyUI-MultiGPU"


def _worst(statuses: list[Status]) -> Status:
    return max(statuses, key=lambda s: _WORST[s]) if statuses else "pass"


def check_settings(ctx: DoctorContext) -> CheckResult:
    title = "Settings"
    if ctx.settings_error is not None:
        return CheckResult("config.settings", title, "fail", ctx.settings_error.message, ctx.settings_error.hint)
    assert ctx.settings is not None
    counts = Counter(_origin(v) for v in ctx.settings.table().values())
    parts = [f"{n} from {origin}" for origin, n in sorted(counts.items()) if origin != "default"]
    summary = ", ".join(parts) if parts else "all defaults"
    where = f" The .env is {ctx.settings.env_file}." if ctx.settings.env_file else ""
    return CheckResult("config.settings", title, "pass", f"Resolved: {summary}.{where} 'comfyrig config' lists them.")


def _origin(value: Sourced[object]) -> str:
    source = value.source
    return {"cli": "the command line", "env": "the environment"}.get(source, ".env" if source.startswith(".env") else "default")


def check_comfyui_dir(ctx: DoctorContext) -> CheckResult:
    title = "ComfyUI dir"
    if ctx.settings is None:
        return CheckResult("comfyui.dir", title, "skip", _SKIP_NO_SETTINGS)
    src = ctx.settings.comfyui_dir
    if src.value is None:
        return CheckResult(
            "comfyui.dir",
            title,
            "fail",
            "No ComfyUI found: none was given and the current folder has no main.py.",
            "Give the checkout with --comfyui-dir DIR or COMFYUI_DIR=DIR (environment or .env).",
        )
    return CheckResult("comfyui.dir", title, "pass", f"{src.value} (from {src.source}).")


def check_python(ctx: DoctorContext) -> CheckResult:
    title = "Interpreter"
    if ctx.settings is None:
        return CheckResult("comfyui.python", title, "skip", _SKIP_NO_SETTINGS)
    src = ctx.settings.python
    if not os.access(src.value, os.X_OK):
        return CheckResult(
            "comfyui.python", title, "fail", f"{src.value} (from {src.source}) is not executable.",
            f"Fix its permissions (chmod +x {src.value}) or give another with --python / COMFYUI_PYTHON.",
        )
    if src.source == "default":
        checkout = ctx.settings.comfyui_dir.value
        return CheckResult(
            "comfyui.python",
            title,
            "fail" if checkout is not None else "warn",
            f"{not_found_text(checkout, ctx.settings.environ)} 'comfyrig launch' refuses to start it.",
            "Set COMFYUI_PYTHON (or --python) to the interpreter that has ComfyUI's requirements and torch.",
        )
    return CheckResult("comfyui.python", title, "pass", f"{src.value} (from {src.source}).")


def check_version(ctx: DoctorContext) -> CheckResult:
    title = "ComfyUI version"
    if ctx.comfyui_dir is None:
        return CheckResult("comfyui.version", title, "skip", "No ComfyUI directory (see comfyui.dir).")
    problems = []
    if ctx.version is None:
        problems.append("comfyui_version.py is missing or has no __version__ (a ComfyUI older than 0.3?)")
    if ctx.flags is None:
        problems.append("comfy/cli_args.py cannot be read, so the flags in COMFYUI_ARGS cannot be checked")
    if problems:
        return CheckResult(
            "comfyui.version", title, "warn", f"{'; '.join(problems)}.",
            f"Check that {ctx.comfyui_dir} is a complete ComfyUI checkout; 'git pull' there updates it.",
        )
    return CheckResult(
        "comfyui.version", title, "pass", f"ComfyUI {ctx.version}; {len(ctx.flags or ())} flags in comfy/cli_args.py."
    )


def _args_source(ctx: DoctorContext) -> str:
    assert ctx.settings is not None
    src = ctx.settings.comfyui_args.source
    places = []
    if src != "default":
        places.append({"cli": "--comfyui-args", "env": "COMFYUI_ARGS (environment)"}.get(src, f"COMFYUI_ARGS ({src})"))
    if ctx.settings.extra_args:
        places.append("the flags after --")
    return " and ".join(places)


def check_args(ctx: DoctorContext) -> CheckResult:
    title = "ComfyUI flags"
    if ctx.settings is None:
        return CheckResult("comfyui.args", title, "skip", _SKIP_NO_SETTINGS)
    args = ctx.args
    parsed = ctx.comfy_args
    findings: list[tuple[Status, str, str | None]] = []
    version = f"ComfyUI {ctx.version}" if ctx.version else "This ComfyUI"
    for occurrence in parsed.user_occurrences:
        name = occurrence.written
        if name in A1111_FLAGS and occurrence.flag is None:
            instead = medvram_instead(parsed, version=ctx.version) if name in _VRAM_A1111 else A1111_FLAGS[name]
            findings.append(("fail", f"{name} is an AUTOMATIC1111 flag; ComfyUI has none such and exits with code 2",
                             f"Remove {name}: {instead}."))
        elif occurrence.status == "unknown" and name in REMOVED_FLAGS:
            findings.append(("fail", f"{version} has no {name} flag ({REMOVED_FLAGS[name]}): it would exit with code 2",
                             f"Remove {name} from {_args_source(ctx)}."))
        elif occurrence.status == "unknown":
            findings.append(("fail", f"{version} has no {name} flag (not in its comfy/cli_args.py): it would exit with code 2",
                             f"Remove {name} from {_args_source(ctx)}; 'python main.py --help' in the ComfyUI directory lists the flags."))
        elif occurrence.status == "ambiguous":
            could = ", ".join(occurrence.candidates)
            message = f"{name} could mean {could}; argparse refuses an ambiguous abbreviation, so it would exit with code 2"
            findings.append(("fail", message, "Write the flag in full."))
        elif occurrence.status == "abbrev":
            findings.append(("warn", f"{name} is taken as {occurrence.flag} (argparse accepts abbreviations)",
                             f"Write {occurrence.flag} in full; a future flag could make {name} ambiguous."))
    if parsed.user_given("--lowvram") and (note := lowvram_given(vram_facts(parsed, ctx.version))) is not None:
        findings.append(("warn", note, "Remove --lowvram, or add --disable-dynamic-vram if you want the older loading."))
    findings.extend(_problem_finding(p, parsed) for p in parsed.problems if _generic(p))
    # 'comfyrig launch' refuses any --cuda-device (launch.owned): every finding about it fails.
    findings.extend(("fail", message, fix) for _, message, fix in _cuda_device_findings(ctx, parsed))
    findings.extend(_override_findings(ctx, parsed))
    if not findings:
        found = f"{' '.join(args)}: every flag exists in {version}." if args else "No extra ComfyUI flags."
        return CheckResult("comfyui.args", title, "pass", found)
    statuses = [s for s, _, _ in findings]
    fixes = " ".join(dict.fromkeys(f for _, _, f in findings if f))
    where = f"In {_args_source(ctx)}: " if args else ""
    return CheckResult("comfyui.args", title, _worst(statuses), where + "; ".join(m for _, m, _ in findings) + ".", fixes or None)


def _generic(problem: ArgProblem) -> bool:
    """Problems without a finding of their own above or below."""
    if problem.kind in ("unknown", "ambiguous"):
        return False
    return not (problem.kind == "bad_value" and problem.flag in ("--port", "--cuda-device"))


def _problem_finding(problem: ArgProblem, parsed: ComfyArgs) -> tuple[Status, str, str | None]:
    flag = problem.flag or problem.token
    fixes = {
        "missing_value": f"Give {flag} its value, as {flag}=VALUE.",
        "unexpected_value": f"Write {flag} without a value.",
        "bad_value": "'python main.py --help' in the ComfyUI directory says what each flag takes.",
        "conflict": "Keep only one of them.",
        "stray": "Put each value right after its flag, and quote values that contain spaces.",
    }
    fix = fixes.get(problem.kind)
    if problem.kind == "conflict" and "--cpu" in parsed.tokens[: parsed.own]:
        fix = f"comfyrig adds --cpu in CPU mode: remove {problem.token}, or choose GPUs."
    return "fail", f"{problem.detail}: it would exit with code 2", fix


def _cuda_device_findings(ctx: DoctorContext, parsed: ComfyArgs) -> list[tuple[Status, str, str | None]]:
    value = parsed.value("--cuda-device")
    if value is None:
        return []
    fix = ("Remove --cuda-device ('comfyrig launch' refuses it): comfyrig chooses the GPUs (--single N, --gpus LIST) "
           "through CUDA_VISIBLE_DEVICES.")
    # An int before ComfyUI 0.24, a comma-separated list since: this checkout's cli_args.py says which.
    spec = parsed.table.spec("--cuda-device") if parsed.checked else None
    is_list = spec is not None and spec.type != "int"
    if is_list and value == "all":
        return [("warn", "--cuda-device all leaves the GPU choice to CUDA_VISIBLE_DEVICES, which comfyrig sets anyway", fix)]
    parts = value.split(",") if is_list else [value]
    if not all(p.strip().isdigit() for p in parts):
        what = "GPU numbers separated by commas" if is_list else "one integer"
        return [("fail", f"--cuda-device {value!r}: this ComfyUI takes {what} there", fix)]
    selection = ctx.selection
    # main.py overwrites CUDA_VISIBLE_DEVICES with the value, so it picks physical GPUs whatever comfyrig chose.
    if selection is None:
        return []
    if selection.is_cpu:
        return [("warn", f"--cuda-device {value} exposes GPU {value} again in CPU mode", fix)]
    given = [int(p) for p in parts]
    chosen = [g.index for g in selection.gpus]
    if given == chosen:
        return [("warn", f"--cuda-device {value} repeats what the selection already does", fix)]
    if len(chosen) > 1 and len(given) == 1:
        hiding = f"hiding the other GPUs of {selection.mode} mode ({selection.cuda_visible_devices})"
        return [("fail", f"--cuda-device {value} makes ComfyUI rewrite CUDA_VISIBLE_DEVICES to {value}, {hiding}", fix)]
    if len(chosen) == 1 and len(given) == 1:
        return [("fail", f"--cuda-device {value} makes ComfyUI use GPU {value}, not the selected GPU {chosen[0]}", fix)]
    chosen_text = selection.cuda_visible_devices
    return [("fail", f"--cuda-device {value} makes ComfyUI use GPUs {value}, not the selected {chosen_text}", fix)]


def _override_findings(ctx: DoctorContext, parsed: ComfyArgs) -> list[tuple[Status, str, str | None]]:
    assert ctx.settings is not None
    found: list[tuple[Status, str, str | None]] = []
    for flag, setting, configured in (
        ("--port", "COMFYUI_PORT", ctx.settings.port.value),
        ("--listen", "COMFYUI_LISTEN", ctx.settings.listen.value),
    ):
        value = parsed.value(flag)
        if value is None:
            continue
        if flag == "--port" and not value.isdigit():
            found.append(("fail", f"--port {value!r} is not a port number", f"Set the port with --port or {setting}."))
            continue
        own = ctx.settings.port if flag == "--port" else ctx.settings.listen
        if own.source != "default" and str(configured) != value:
            # launch.owned refuses an owned flag given twice with different values.
            found.append(("fail", (f"{flag} {value} among ComfyUI's flags and {setting} ({configured}) disagree: "
                          "'comfyrig launch' refuses it"), f"Give {flag} once, with comfyrig's --{flag[2:]} or {setting}."))
            continue
        found.append(("warn", f"{flag} {value} among ComfyUI's flags: 'comfyrig launch' takes it as its own {flag}",
                      f"Give it to comfyrig instead (--{flag[2:]} or {setting}), where it belongs."))
    if ctx.settings.enable_manager.value and ctx.flags is not None and "--enable-manager" not in ctx.flags:
        found.append(("warn", f"ENABLE_COMFYUI_MANAGER is on, but ComfyUI {ctx.version or ''} has no --enable-manager "
                      "(it came with 0.3.76), so comfyrig leaves it out".replace("  ", " "),
                      "Install ComfyUI-Manager into custom_nodes instead, or update ComfyUI."))
    if parsed.user_given("--cpu") and ctx.selection is not None and not ctx.selection.is_cpu:
        found.append(("warn", f"--cpu leaves the selected GPUs ({ctx.selection.cuda_visible_devices}) unused",
                      "Use comfyrig's --cpu mode instead, or remove --cpu."))
    return found


def _pyproject_field(path: Path, key: str) -> str | None:
    try:
        text = (path / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(rf'^{key}\s*=\s*"([^"]+)"', text, re.MULTILINE)
    return match.group(1) if match else None


_TOP_IMPORT = re.compile(r"^(?:import|from)\s+(comfy(?:\.\w+)+)", re.MULTILINE)


def missing_comfy_modules(pack: Path, comfyui_dir: Path) -> list[str]:
    """``comfy.*`` modules a node pack imports at module level that this ComfyUI lacks.

    Only column-0 imports count: those run when ComfyUI loads the pack, so a
    missing one makes the whole pack fail (IMPORT FAILED); imports inside
    functions or try blocks are the pack's own business.
    """
    missing: set[str] = set()
    for source in sorted(pack.glob("*.py")):
        try:
            text = source.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for module in _TOP_IMPORT.findall(text):
            path = comfyui_dir.joinpath(*module.split("."))
            if not (path.with_suffix(".py").is_file() or path.is_dir()):
                missing.add(module)
    return sorted(missing)


def check_multigpu(ctx: DoctorContext) -> CheckResult:
    title = "Multi-GPU pack"
    selection = ctx.selection
    if selection is None or len(selection.gpus) < 2:
        return CheckResult("multigpu.pack", title, "skip", "Not dual/multi mode: one GPU needs no multi-GPU node pack.")
    if ctx.comfyui_dir is None:
        return CheckResult("multigpu.pack", title, "skip", "No ComfyUI directory (see comfyui.dir).")
    native = ctx.checkout is not None and ctx.checkout.native
    other = ", ".join(f"cuda:{n} (GPU {g.index})" for n, g in enumerate(selection.gpus) if n)
    if native:
        ui_note = (
            f"ComfyUI computes on cuda:0 (GPU {selection.gpus[0].index}); {other} works only through multi-GPU nodes, "
            "and this ComfyUI's /system_stats lists every GPU it sees"
        )
    else:  # before 0.23
        ui_note = (
            f"ComfyUI itself computes on cuda:0 (GPU {selection.gpus[0].index}) and its UI and /system_stats show only that "
            f"device, so 'only one GPU showing' is expected; {other} is used only through a multi-GPU node pack"
        )
    packs = find_multigpu_packs(ctx.comfyui_dir)
    enabled = [p for p, on in packs if on]
    install = (
        f"git clone {MULTIGPU_URL} {ctx.comfyui_dir / 'custom_nodes' / 'ComfyUI-MultiGPU'} (or 'comfyrig nodes add "
        "multigpu'), then use its ...MultiGPU / ...DisTorch2MultiGPU loader nodes (device input); for throughput on "
        "many jobs, 'comfyrig launch --workers' runs one ComfyUI per GPU instead."
    )
    if not enabled and native:
        state = f"{packs[0][0].name} is disabled" if packs else "ComfyUI-MultiGPU is not in custom_nodes"
        who = ctx.checkout.who if ctx.checkout is not None else "this ComfyUI"
        return CheckResult(
            "multigpu.pack", title, "pass",
            f"{state}; not needed: {who}'s own nodes put models on the other GPUs (see multigpu.native). It would add "
            "DisTorch2 (one model's layers spread over several GPUs, for memory).",
        )
    if not enabled:
        state = f"{packs[0][0].name} is disabled" if packs else "no multi-GPU node pack (ComfyUI-MultiGPU) in custom_nodes"
        return CheckResult("multigpu.pack", title, "warn", f"{selection.mode} mode, but {state}: {ui_note}.",
                           "Enable it again in ComfyUI-Manager." if packs else install)
    pack = enabled[0]
    version = _pyproject_field(pack, "version")
    label = f"{pack.name} {version}" if version else pack.name
    missing = missing_comfy_modules(pack, ctx.comfyui_dir)
    if missing:
        known = "; ".join(f"v{v} is known to load in ComfyUI {c}" for v, c in MULTIGPU_KNOWN_GOOD.items())
        return CheckResult(
            "multigpu.pack",
            title,
            "fail",
            f"{label} imports {', '.join(missing)}, which ComfyUI {ctx.version or '(unknown version)'} does not have: "
            "it fails to load (IMPORT FAILED in ComfyUI's log) and its nodes are missing.",
            f"Update ComfyUI (git pull in {ctx.comfyui_dir}), or check out an older ComfyUI-MultiGPU release ({known}).",
        )
    order = ""
    if any(n != g.index for n, g in enumerate(selection.gpus)):
        order = f" Its cuda:N are numbered after CUDA_VISIBLE_DEVICES={selection.cuda_visible_devices}."
    return CheckResult(
        "multigpu.pack", title, "pass",
        f"{label} in custom_nodes; every comfy module it imports exists here. {ui_note}.{order}",
    )


def check_running(ctx: DoctorContext) -> CheckResult:
    title = "Running ComfyUI"
    http = ctx.http
    if http is None:
        return CheckResult("comfyui.running", title, "skip", _SKIP_NO_SETTINGS)
    if http.stats is not None:
        system = http.stats.get("system", {})
        devices = http.stats.get("devices") or [{}]
        device = str(devices[0].get("name", "?"))
        return CheckResult(
            "comfyui.running", title, "pass",
            f"ComfyUI {system.get('comfyui_version', '?')} answers at {http.url} "
            f"(torch {system.get('pytorch_version', '?')}, device {device}).",
        )
    if http.reachable:
        return CheckResult(
            "comfyui.running", title, "warn", f"Something answers at {http.url}, but not as ComfyUI: {http.error}",
            "A ComfyUI still importing custom nodes does not answer yet; otherwise another program has the port.",
        )
    return CheckResult("comfyui.running", title, "pass", f"No ComfyUI answers at {http.url} (none running there).")
