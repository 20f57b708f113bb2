"""``comfyrig gateway --url A --url B``: one ComfyUI URL in front of servers already running.

``launch --workers`` starts workers and this gateway together; this command is the
gateway alone, for ComfyUIs started some other way (another machine, a container,
an older comfyrig). Runs in the foreground until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer
from rich.text import Text

from ..errors import ConfigError
from ..ui.console import make_console
from . import options as o
from .app import command

__all__: list[str] = []


@command("gateway", help="Serve one ComfyUI URL in front of ComfyUI servers that are already running (Ctrl-C stops it).")
def gateway_cmd(
    urls: Annotated[list[str] | None, typer.Option("--url", help="A ComfyUI server behind the gateway, http://HOST:PORT. Repeat for each.", show_default=False)] = None,
    port: Annotated[int, typer.Option("--port", callback=o.bounded("--port", o.PORT), help="The gateway's port.")] = 8188,
    listen: Annotated[str, typer.Option("--listen", help="Where the gateway listens. Beyond loopback a token is required (COMFYRIG_AUTH_TOKEN, or a file comfyrig makes in its state folder).")] = "127.0.0.1",
    shared_input: Annotated[bool, typer.Option("--shared-input", help="The servers read one input folder (same machine or a shared disk): write each upload once.")] = False,
    auth: Annotated[bool, typer.Option("--auth", help="Ask every client for a token (COMFYRIG_AUTH_TOKEN, or one comfyrig keeps in its state folder); required beyond loopback.")] = False,
    insecure_no_auth: Annotated[bool, typer.Option("--insecure-no-auth", help="Beyond loopback without a token (anyone who reaches it can run code on the servers).")] = False,
    env_file: o.EnvFile = None,
) -> int:
    from ..gateway.server import GatewayOptions, GatewayServer
    from ..gateway.service import backend_specs, gateway_token
    from ..launch.plan import is_loopback
    from ..launch.registry import state_dir
    from ..ui.gateway_view import describe_gateway

    if not urls:
        raise ConfigError("comfyrig gateway needs at least one --url http://HOST:PORT of a running ComfyUI.",
                          hint="To start ComfyUI on every GPU behind one URL, run 'comfyrig --workers' instead.")
    settings = o.settings_from(o.overrides(env_file=env_file))
    console = make_console(settings.environ)
    specs = backend_specs([], urls)
    if shared_input:
        specs = [type(s)(s.name, s.url, "shared") for s in specs]
    if auth and insecure_no_auth:
        raise ConfigError("--auth and --insecure-no-auth contradict each other: choose one.")
    if not is_loopback(listen) and not auth and not insecure_no_auth:
        raise ConfigError(
            f"The gateway would listen on {listen}, and ComfyUI has no authentication of its own: anyone who reaches "
            "that address could run code on the servers behind it.",
            hint="Add --auth (clients then send a token), or --insecure-no-auth on a network you trust, or keep 127.0.0.1.")
    token = None
    if auth:
        token, source = gateway_token(settings.environ, state_dir(settings.environ))
        console.print(Text(f"Clients need the gateway's token, from {source}.", style="yellow"))
    elif not is_loopback(listen):
        console.print(Text(f"⚠ The gateway listens on {listen} without a token: anyone who reaches it can run code "
                           "on the servers behind it.", style="bold yellow"))

    def report(event: object) -> None:
        console.print(Text(f"comfyrig: {describe_gateway(event)}"), soft_wrap=True)  # type: ignore[arg-type]

    async def serve() -> None:
        server = GatewayServer(specs, GatewayOptions(host=listen, port=port, token=token), reporter=report)
        try:
            await server.start()
        except OSError as err:
            raise ConfigError(f"The gateway cannot listen on {listen}:{port}: {err.strerror or err}.",
                              hint="Choose another port with --port N.") from None
        console.print(Text(f"comfyrig: gateway at http://{listen.split(',')[0]}:{port} in front of "
                           f"{', '.join(s.url for s in specs)}; Ctrl-C stops it."), soft_wrap=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        finally:
            await server.stop()

    asyncio.run(serve())
    return 0
