"""Checks of the port, the listen address and CORS: who can reach ComfyUI."""

from __future__ import annotations

from ..comfy.args import effective_listen
from ..comfy.catalog import CatalogDiff
from ..launch.plan import is_loopback
from .context import DoctorContext
from .result import CheckResult

__all__ = ["check_cors", "check_gateway", "check_listen", "check_port"]

_SKIP = "The settings could not be resolved (see config.settings)."


def check_port(ctx: DoctorContext) -> CheckResult:
    title = "Port"
    state = ctx.port
    if state is None:
        return CheckResult("net.port", title, "skip", _SKIP)
    if state.port is None:
        return CheckResult("net.port", title, "pass", "COMFYUI_PORT is 'auto': launch takes the first free port from 8188.")
    if state.free:
        return CheckResult("net.port", title, "pass", f"Port {state.port} is free on {state.host}.")
    holder = f"pid {state.holder.pid} ({state.holder.command})" if state.holder else "a process comfyrig cannot see (another user's?)"
    choose = "choose another port (--port N, COMFYUI_PORT, or --port auto)"
    if ctx.http is not None and ctx.http.stats is not None:
        return CheckResult(
            "net.port", title, "warn",
            f"Port {state.port} is held by a running ComfyUI, {holder}: a second launch there would fail.",
            f"Watch it with 'comfyrig monitor', stop it first, or {choose}.",
        )
    return CheckResult("net.port", title, "fail", f"Port {state.port} is in use by {holder}.", f"Stop that process or {choose}.")


def check_listen(ctx: DoctorContext) -> CheckResult:
    title = "Listen address"
    if ctx.settings is None:
        return CheckResult("net.listen", title, "skip", _SKIP)
    listen = effective_listen(ctx.settings, ctx.comfy_args)
    if is_loopback(listen):
        return CheckResult("net.listen", title, "pass", f"ComfyUI listens on {listen}: reachable from this machine only.")
    return CheckResult(
        "net.listen", title, "warn",
        f"ComfyUI will listen on {listen}. ComfyUI has no authentication: anyone who can reach that address can "
        "run workflows and, through custom nodes, code on this machine; exposed instances have been taken over.",
        "Keep the default 127.0.0.1 and reach it through an SSH tunnel (ssh -L 8188:127.0.0.1:8188 host), "
        "or put it behind a VPN or an authenticating reverse proxy and a firewall.",
    )


def check_cors(ctx: DoctorContext) -> CheckResult:
    title = "CORS"
    if ctx.settings is None:
        return CheckResult("net.cors", title, "skip", _SKIP)
    if not ctx.comfy_args.user_given("--enable-cors-header"):
        return CheckResult("net.cors", title, "pass", "--enable-cors-header is not set: ComfyUI's origin check stays on.")
    return CheckResult(
        "net.cors", title, "warn",
        "--enable-cors-header is set: it replaces ComfyUI's origin check, its only protection against other web "
        "pages in your browser sending it workflows (CSRF).",
        "Remove it unless a web front end on another origin needs it; then give that origin (--enable-cors-header "
        "https://your.app), not '*'.",
    )


def check_gateway(ctx: DoctorContext) -> CheckResult:
    """The gateways comfyrig runs: every worker routable, and the same node types on each."""
    title = "Gateway"
    if not ctx.gateways:
        return CheckResult("net.gateway", title, "skip", "No gateway comfyrig started is running ('comfyrig --workers' starts one).")
    problems, passes = [], []
    for gw in ctx.gateways:
        if gw.view is None:
            problems.append(f"{gw.url} does not answer /comfyrig/fleet ({gw.error}).")
            continue
        backends = gw.view.get("backends") or []
        down = [b["name"] for b in backends if not b.get("live")]
        if down:
            problems.append(f"{gw.url}: {', '.join(down)} not routable (starting, restarting or lost).")
        known = {name: catalog for name, catalog in gw.catalogs.items() if catalog is not None}
        if len(known) > 1:
            reference_name, reference = next(iter(known.items()))
            for name, catalog in known.items():
                if diff := CatalogDiff.between(reference, catalog):
                    problems.append(f"{gw.url}: {name} {diff.describe(reference_name)}.")
        if not down:
            passes.append(f"{gw.url}: {len(backends)} worker(s) routable, queue {gw.view.get('queue_remaining')}")
    if problems:
        return CheckResult("net.gateway", title, "warn", " ".join(problems),
                           "A prompt that uses a node or model some workers lack fails only where it is routed: install "
                           "the same custom nodes and models on every worker (on a cluster without a shared disk, on "
                           "every node). 'comfyrig status' shows each worker and its node.")
    return CheckResult("net.gateway", title, "pass", "; ".join(passes) + "; every worker has the same node types and models.")
